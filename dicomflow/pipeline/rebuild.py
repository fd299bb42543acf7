"""Rebuild series documents from the PACS and the platform database.

After a switch of index backend, or when the index was lost, the documents can be made again
from what outlives the index: the platform database says which series exist and where they
belong (``series_projects``, ``dataset_series``), the PACS holds their headers (WADO-RS
metadata: DICOM JSON without pixel data, one request per series), and the object store holds
their thumbnails and validation reports.

Each rebuilt series is rewritten whole by the pipeline's document writer
(:mod:`dicomflow.pipeline.documents`), in every project it belongs to and in ``admin``, so the
copies agree. What the PACS cannot know (batches, sender, AE titles, receipt times) comes from
the series' records in the platform database; a series without records (indexed before they
were kept, or whose records were lost) is recorded from the PACS's instances, with the
receipt time of its first mapping. The validation comes from the stored document, else from
the stored report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dicomflow.db.models import Dataset as DatasetRow
from dicomflow.db.models import DatasetSeries, SeriesProject
from dicomflow.db.projects import ADMIN_PROJECT
from dicomflow.db.series import BatchOrigin
from dicomflow.dicom.document import header_fields
from dicomflow.dicom.headers import SeriesGroup, instance_from_header
from dicomflow.dicom.instance import Instance
from dicomflow.pacs.client import PacsError, PacsUnavailableError, study_uid_of
from dicomflow.pipeline.documents import DocumentWriter
from dicomflow.platform import Platform
from dicomflow.storage.client import ObjectNotFoundError, ObjectStoreError
from dicomflow.storage.keys import report_key, thumbnail_key
from dicomflow.validation.report import read_report_summary

__all__ = [
    "MappedSeries",
    "RebuildProgress",
    "RebuildReport",
    "mapped_series",
    "rebuild_index",
    "series_group_from_metadata",
]

log = logging.getLogger(__name__)

#: The batch id under which a rebuild records a series it finds only in the PACS.
REBUILD_BATCH = "rebuild"


class RebuildProgress(Protocol):
    """Receives the rebuild's progress (e.g. a progress bar)."""

    def start(self, total: int) -> None:
        """The number of series to rebuild, before the first."""

    def advance(self, series_uid: str) -> None:
        """One more series handled (rebuilt, missing or failed)."""


@dataclass(frozen=True)
class MappedSeries:
    """A series as the platform database knows it.

    Attributes
    ----------
    series_uid, study_uid
        Its UIDs (``study_uid`` empty when the mapping did not record it).
    projects
        Every project it is mapped to, ``admin`` included when mapped there.
    datasets
        Names of its datasets, over all its projects.
    first_mapped
        When it was first mapped: the best guess at its receipt when no document is left.
    """

    series_uid: str
    study_uid: str
    projects: tuple[str, ...]
    datasets: tuple[str, ...]
    first_mapped: datetime | None

    @property
    def index_projects(self) -> list[str]:
        """The projects to write its document to (each write also reaches ``admin``)."""
        own = [p for p in self.projects if p != ADMIN_PROJECT]
        return own or [ADMIN_PROJECT]


@dataclass
class RebuildReport:
    """What a rebuild did.

    Attributes
    ----------
    project
        The project whose series were rebuilt (``None``: every series).
    rebuilt
        Series UID -> number of instances indexed.
    missing
        Series mapped in the platform database that the PACS does not hold (left untouched).
    failed
        Series UID -> why it could not be rebuilt (its stored document is left untouched).
    """

    project: str | None
    rebuilt: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every mapped series was rebuilt."""
        return not self.missing and not self.failed

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "project": self.project,
            "rebuilt": self.rebuilt,
            "instances": sum(self.rebuilt.values()),
            "missing": self.missing,
            "failed": self.failed,
        }

    def lines(self) -> list[str]:
        """A summary for people."""
        scope = f"project {self.project}" if self.project else "every project"
        out = [
            f"rebuilt {len(self.rebuilt)} series ({sum(self.rebuilt.values())} instances) "
            f"of {scope}"
        ]
        out += [f"missing in the PACS (left as is): {uid}" for uid in self.missing]
        out += [f"failed: {uid}: {why}" for uid, why in self.failed.items()]
        return out


def mapped_series(engine: Engine, project: str | None = None) -> list[MappedSeries]:
    """The series the platform database maps, with all their projects and datasets.

    Parameters
    ----------
    engine
        The platform database.
    project
        Only series mapped to this project (``None`` or ``admin``: every series). Their
        other projects and datasets are listed too.
    """
    with Session(engine) as session:
        stmt = select(
            SeriesProject.series_uid,
            SeriesProject.project,
            SeriesProject.study_uid,
            SeriesProject.created_at,
        )
        if project is not None and project != ADMIN_PROJECT:
            wanted = select(SeriesProject.series_uid).where(SeriesProject.project == project)
            stmt = stmt.where(SeriesProject.series_uid.in_(wanted))
        rows = session.execute(stmt).all()
        uids = {row.series_uid for row in rows}
        datasets: dict[str, set[str]] = {}
        dataset_rows = session.execute(
            select(DatasetSeries.series_uid, DatasetRow.name).join(
                DatasetRow, DatasetRow.id == DatasetSeries.dataset_id
            )
        )
        for uid, name in dataset_rows:
            if uid in uids:
                datasets.setdefault(uid, set()).add(name)
    by_uid: dict[str, list[Any]] = {}
    for row in rows:
        by_uid.setdefault(row.series_uid, []).append(row)
    out = []
    for uid in sorted(by_uid):
        entries = by_uid[uid]
        out.append(
            MappedSeries(
                series_uid=uid,
                study_uid=next((e.study_uid for e in entries if e.study_uid), ""),
                projects=tuple(sorted({e.project for e in entries})),
                datasets=tuple(sorted(datasets.get(uid, ()))),
                first_mapped=min((e.created_at for e in entries if e.created_at), default=None),
            )
        )
    return out


def _no_bulk_data(tag: str, vr: str, uri: str) -> bytes:
    # Bulk data (pixels, big binaries) never goes into a document: do not fetch it.
    return b""


def series_group_from_metadata(items: Iterable[dict[str, Any]]) -> tuple[SeriesGroup, Dataset]:
    """A series group and its representative header from WADO-RS metadata (DICOM JSON).

    Each instance's "path" is ``pacs/<SOP Instance UID>``: nothing is on disk, the name only
    identifies it. The representative header is that of the lowest Instance Number, as for
    documents built from files.

    Raises
    ------
    ValueError
        When there is no usable instance, or instances disagree on the series or study.
    """
    group: SeriesGroup | None = None
    headers: dict[str, Dataset] = {}
    for item in items:
        ds = Dataset.from_json(item, bulk_data_uri_handler=_no_bulk_data)
        # File meta is not part of a stored file's dataset; some PACSs include it here.
        for tag in [elem.tag for elem in ds if elem.tag.group == 0x0002]:
            del ds[tag]
        instance = instance_from_header(ds, Path("pacs") / str(ds.get("SOPInstanceUID", "")))
        series_uid, study_uid = instance.series_instance_uid, instance.study_instance_uid
        if instance.sop_instance_uid in headers:
            continue
        if group is None:
            group = SeriesGroup(series_uid, study_uid, instance.modality, instance.sop_class_uid)
        elif (series_uid, study_uid) != (group.series_instance_uid, group.study_instance_uid):
            raise ValueError(
                f"instance {instance.sop_instance_uid} is of series {series_uid} in study "
                f"{study_uid}, not {group.series_instance_uid} in {group.study_instance_uid}"
            )
        group.instances.append(instance)
        headers[instance.sop_instance_uid] = ds
    if group is None:
        raise ValueError("no instance in the metadata")
    first = min(group.instances, key=Instance.sort_key)
    return group, headers[first.sop_instance_uid]


class _Rebuilder:
    """The per-series work, with the connections it shares across series."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.index = platform.index
        self.pacs = platform.pacs
        self.store = platform.objects
        self.writer = DocumentWriter(platform)

    def study_of(self, series: MappedSeries, stored: dict[str, Any] | None) -> str | None:
        if series.study_uid:
            return series.study_uid
        if stored and stored.get("0020000D StudyInstanceUID_keyword"):
            return str(stored["0020000D StudyInstanceUID_keyword"])
        for record in self.pacs.find_series(series.series_uid):
            found = study_uid_of(record)
            if found:
                return found
        return None

    def object_in(self, projects: Iterable[str], key: str) -> str | None:
        """The first of ``projects`` whose bucket holds ``key``."""
        for project in projects:
            try:
                if self.store.exists(project, key):
                    return project
            except ObjectStoreError as exc:
                log.warning("object store: cannot check %s in %s: %s", key, project, exc)
        return None

    def stored_validation(self, project: str, uid: str) -> dict[str, Any] | None:
        try:
            page = self.store.get_bytes(project, report_key(uid)).decode("utf-8", "replace")
        except (ObjectNotFoundError, ObjectStoreError):
            return None
        summary = read_report_summary(page)
        return {**summary, "report_key": report_key(uid)} if summary else None

    def _record_from_pacs(self, series: MappedSeries, group: SeriesGroup) -> None:
        """Record a series the platform database knows only by its mapping."""
        records = self.writer.records
        received = series.first_mapped or datetime.now(UTC)
        for project in series.index_projects:
            for dataset in series.datasets or ("unknown",):
                origin = BatchOrigin(REBUILD_BATCH, project, dataset, received)
                records.record(series.series_uid, origin, group.instances, archived=True)

    def rebuild(self, series: MappedSeries) -> int | None:
        """Rewrite one series' documents; the instance count, or ``None`` if not in the PACS."""
        uid = series.series_uid
        stored = self.index.get(ADMIN_PROJECT, uid)
        study = self.study_of(series, stored)
        if study is None:
            return None
        items = self.pacs.series_metadata(study, uid)
        if not items:
            return None
        group, header = series_group_from_metadata(items)
        records = self.writer.records
        if not records.known(uid) and not (stored and records.adopt_document(stored)):
            self._record_from_pacs(series, group)
        buckets = [ADMIN_PROJECT, *series.index_projects]
        thumb = thumbnail_key(uid) if self.object_in(buckets, thumbnail_key(uid)) else None
        validation = (stored or {}).get("validation")
        report_home = self.object_in(buckets, report_key(uid))
        if validation is None and report_home is not None:
            validation = self.stored_validation(report_home, uid)
        # Copies in projects the series no longer belongs to go with the old admin copy.
        self.index.delete_series(ADMIN_PROJECT, uid)
        document = self.writer.write_series(
            uid,
            read_header=lambda: header_fields(group, header),
            thumbnail_key=thumb,
            validation=validation,
            fresh_header=True,
        )
        return int(document["instance_count"])


def rebuild_index(
    platform: Platform,
    project: str | None = None,
    progress: RebuildProgress | None = None,
) -> RebuildReport:
    """Rebuild the documents of the series the platform database maps.

    Parameters
    ----------
    platform
        The platform's connections (index backend, PACS, object store, platform database).
    project
        Only the series of this project (``None`` or ``admin``: every series). Each is
        rewritten in all of its projects, so the copies stay the same.
    progress
        Told the number of series, then each series handled.

    Returns
    -------
    RebuildReport
        Rebuilt series with their instance counts, series the PACS does not hold, failures.

    Raises
    ------
    PacsUnavailableError
        When the PACS cannot be reached at all (nothing further is tried).
    """
    report = RebuildReport(project=project)
    todo = mapped_series(platform.engine, project)
    if progress is not None:
        progress.start(len(todo))
    worker = _Rebuilder(platform)
    for series in todo:
        try:
            count = worker.rebuild(series)
        except PacsUnavailableError:
            raise
        except (PacsError, ValueError) as exc:
            report.failed[series.series_uid] = str(exc)
            log.warning("series %s not rebuilt: %s", series.series_uid, exc)
        else:
            if count is None:
                report.missing.append(series.series_uid)
            else:
                report.rebuilt[series.series_uid] = count
        if progress is not None:
            progress.advance(series.series_uid)
    return report
