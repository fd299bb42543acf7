"""Where a series is: its document, its instances in the PACS, its thumbnail and report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dicomflow.config import Settings
from dicomflow.index import open_index
from dicomflow.index.base import STUDY_UID, SeriesIndex
from dicomflow.pacs.client import DicomWebClient, PacsError
from dicomflow.storage.client import ObjectNotFoundError, ObjectStore, ObjectStoreError
from dicomflow.storage.keys import report_key, thumbnail_key


class SeriesNotFoundError(LookupError):
    """The series is not indexed in the project."""


def series_document(settings: Settings, series_uid: str, project: str) -> dict[str, Any]:
    """The indexed document of a series.

    Raises
    ------
    SeriesNotFoundError
        When the project's index does not hold the series.
    """
    index = open_index(settings)
    try:
        doc = index.get(project, series_uid)
    finally:
        index.close()
    if doc is None:
        raise SeriesNotFoundError(f"series {series_uid} is not in project {project!r}")
    return doc


def describe_series(settings: Settings, series_uid: str, project: str) -> dict[str, Any]:
    """The document plus where its parts are: PACS instances, thumbnail, validation report.

    A PACS or object store that does not answer is reported in the result, not raised: the
    document is still worth showing.
    """
    doc = series_document(settings, series_uid, project)
    pacs_info: dict[str, Any] = {"url": settings.pacs.base_url, "instances": None}
    try:
        pacs = DicomWebClient.from_settings(settings, attempts=1)
        with pacs:
            pacs_info["instances"] = len(
                pacs.series_instances(str(doc.get(STUDY_UID, "")), series_uid)
            )
    except PacsError as exc:
        pacs_info["error"] = str(exc)
    described: dict[str, Any] = {"document": doc, "pacs": pacs_info}
    store = ObjectStore.from_settings(settings)
    for name, key in (
        ("thumbnail", thumbnail_key(series_uid)),
        ("validation_report", report_key(series_uid)),
    ):
        try:
            found = store.exists(project, key)
        except ObjectStoreError as exc:
            described[name] = None
            described[f"{name}_error"] = str(exc)
            continue
        described[name] = f"s3://{store.bucket(project)}/{key}" if found else None
    return described


def thumbnail_png(settings: Settings, series_uid: str, project: str) -> bytes:
    """The thumbnail of a series (``ObjectNotFoundError`` when it has none)."""
    series_document(settings, series_uid, project)
    return ObjectStore.from_settings(settings).get_bytes(project, thumbnail_key(series_uid))


def validation_report(settings: Settings, series_uid: str, project: str) -> bytes:
    """The HTML validation report of a series (``ObjectNotFoundError`` when there is none)."""
    series_document(settings, series_uid, project)
    return ObjectStore.from_settings(settings).get_bytes(project, report_key(series_uid))


def export_series(settings: Settings, series_uid: str, project: str, out_dir: Path) -> list[Path]:
    """Write the series' instances as the PACS holds them into ``out_dir``, one file each.

    Files are named ``<SOP Instance UID>.dcm``; their bytes are the PACS's, untouched.
    """
    doc = series_document(settings, series_uid, project)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with DicomWebClient.from_settings(settings) as pacs:
        study = str(doc.get(STUDY_UID, ""))
        for sop_uid in pacs.series_instances(study, series_uid):
            path = out_dir / f"{sop_uid}.dcm"
            path.write_bytes(pacs.retrieve_instance(study, series_uid, sop_uid))
            written.append(path)
    if not written:
        raise ObjectNotFoundError(
            f"the PACS at {settings.pacs.base_url} holds no instance of series {series_uid}"
        )
    return written


def remove_project_data(
    index: SeriesIndex, store: ObjectStore, project: str, series_uids: list[str]
) -> tuple[int, int]:
    """Remove a project's copy of its series from the index, and its bucket's objects.

    What a project deletion removes outside the platform database: the instances stay in the
    PACS, and a series also in other projects stays in theirs (and in ``admin``).

    Returns
    -------
    tuple
        ``(series removed from the index, objects removed from the bucket)``.
    """
    removed = sum(1 for uid in series_uids if index.delete_series(project, uid))
    keys = [o.key for o in store.list_objects(project)]  # none when it has no bucket
    return removed, store.remove(project, keys)
