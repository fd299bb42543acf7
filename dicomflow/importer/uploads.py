"""Import files from the uploads area (the DAG ``import-dicoms-from-data-upload``).

Each selected file is downloaded next to the spool, imported and removed before the next, so
the scratch space never holds more than one uploaded file (and the instances it unpacks to).
The report is stored in the project's bucket under ``import-reports/<run id>.json`` for the
Data Upload page.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from dicomflow.config import Settings
from dicomflow.importer.importer import (
    Importer,
    ImportProgress,
    project_directory,
)
from dicomflow.importer.report import ImportOutcome, ImportReport
from dicomflow.intake.admission import ProjectNames
from dicomflow.spool.records import Door
from dicomflow.storage.client import ObjectNotFoundError, ObjectStore
from dicomflow.uploads.area import UploadArea
from dicomflow.uploads.limits import UploadLimits

__all__ = [
    "REPORTS_PREFIX",
    "UPLOAD_IMPORT_DAG_ID",
    "delete_imported_uploads",
    "delete_uploads_if_imported",
    "import_uploads",
    "read_report",
    "report_key",
    "store_report",
    "upload_area",
    "upload_importer",
]

LOGGER = logging.getLogger(__name__)

#: The DAG that imports uploaded files.
UPLOAD_IMPORT_DAG_ID = "import-dicoms-from-data-upload"
REPORTS_PREFIX = "import-reports/"
_RUN_ID_SAFE = re.compile(r"[^A-Za-z0-9._+:-]")


def report_key(run_id: str) -> str:
    """The object key of an import run's report."""
    return f"{REPORTS_PREFIX}{_RUN_ID_SAFE.sub('_', run_id)}.json"


def upload_area(settings: Settings, store: ObjectStore | None = None) -> UploadArea:
    """The uploads area of the settings' object store."""
    return UploadArea(
        store or ObjectStore.from_settings(settings), UploadLimits.from_settings(settings.uploads)
    )


def upload_importer(
    settings: Settings,
    project: str,
    dataset: str,
    *,
    run_id: str,
    extension: str | None,
    projects: ProjectNames | None = None,
    progress: ImportProgress | None = None,
    series: Collection[str] | None = None,
) -> Importer:
    """The importer of an import from the uploads area (DICOM or NIfTI).

    Its batches record the door ``upload`` and the peer ``upload:<run id>`` (``direct``
    without a DAG run), whatever the uploads hold.

    Parameters
    ----------
    settings, project, dataset, run_id, extension, projects, progress, series
        As for :func:`import_uploads`.

    Returns
    -------
    Importer
        Not started yet.

    Raises
    ------
    ImportRefusedError
        When the project does not exist or dataset or extension are invalid.
    """
    return Importer(
        settings,
        project,
        dataset,
        project_directory(settings, projects),
        door=Door.UPLOAD,
        peer=f"upload:{run_id or 'direct'}",
        extension=extension,
        progress=progress,
        series=series,
    )


class StoredReport(Protocol):
    """A report the Data Upload page reads: a DICOM or a NIfTI import's."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON-able mapping that is stored."""
        ...


def store_report(store: ObjectStore, project: str, run_id: str, report: StoredReport) -> None:
    """Store an import run's report under :func:`report_key` in the project's bucket.

    Parameters
    ----------
    store
        The object store.
    project
        Whose bucket.
    run_id
        The DAG run; an empty one stores nothing (a direct call has no page to show it).
    report
        The report, stored as JSON.
    """
    if run_id:
        store.put_bytes(
            project, report_key(run_id), json.dumps(report.as_dict()).encode(), "application/json"
        )


def import_uploads(
    settings: Settings,
    project: str,
    dataset: str,
    names: Sequence[str],
    *,
    extension: str | None = ".dcm",
    run_id: str = "",
    projects: ProjectNames | None = None,
    progress: ImportProgress | None = None,
    store: ObjectStore | None = None,
    series: Collection[str] | None = None,
    overrides: Sequence[str] = (),
) -> ImportReport:
    """Import uploaded files of ``project`` into ``dataset``; store and return the report.

    Parameters
    ----------
    settings
        The platform settings.
    project, dataset
        Whose uploads, and where the instances go.
    names
        Upload ids (every file of the upload) or ``<upload id>/<path>``.
    extension
        As for :func:`~dicomflow.importer.importer.import_paths`.
    run_id
        The DAG run; names the stored report (none stored when empty).
    projects, progress, store
        Collaborators; defaults come from ``settings``.
    series
        Only these Series Instance UIDs (the selection of a review); ``None``: everything.
    overrides
        The flags the user overrode for this selection (kept in the report).

    Raises
    ------
    ImportRefusedError
        When the project does not exist or dataset or extension are invalid.
    UnknownUploadError
        When a name matches nothing in the uploads area.
    """
    store = store or ObjectStore.from_settings(settings)
    area = upload_area(settings, store)
    importer = upload_importer(
        settings,
        project,
        dataset,
        run_id=run_id,
        extension=extension,
        projects=projects,
        progress=progress,
        series=series,
    )
    importer.report.overrides = list(overrides)
    try:
        entries = area.select(project, names)
        importer.report.uploaded = len(entries)
        importer.start(sum(e.size for e in entries))
        downloads = importer.scratch / "downloads"
        for entry in entries:
            local = area.download(project, entry, downloads)
            try:
                importer.add(local, entry.name, owned=True)
            finally:
                local.unlink(missing_ok=True)
    finally:
        report = importer.finish()
    store_report(store, project, run_id, report)
    return report


def read_report(store: ObjectStore, project: str, run_id: str) -> ImportReport | None:
    """The stored report of an import run, or ``None`` while there is none."""
    try:
        raw = store.get_bytes(project, report_key(run_id))
    except ObjectNotFoundError:
        return None
    return ImportReport.from_dict(json.loads(raw))


def delete_imported_uploads(
    settings: Settings, project: str, names: Sequence[str], report: ImportReport
) -> list[str]:
    """Delete the imported uploads, only when the import succeeded; return the names deleted.

    An import that failed, or found no DICOM, deletes nothing: what the user uploaded stays
    until an import of it succeeds.
    """
    return delete_uploads_if_imported(
        settings, project, names, report.outcome.value, ImportOutcome.IMPORTED.value
    )


def delete_uploads_if_imported(
    settings: Settings, project: str, names: Sequence[str], outcome: str, imported: str
) -> list[str]:
    """Delete the uploads an import read when its ``outcome`` is ``imported``; else keep them.

    Returns
    -------
    list of str
        The names deleted (none when the uploads were kept).
    """
    if outcome != imported:
        LOGGER.warning("uploads kept: the import's outcome is %r, not %r", outcome, imported)
        return []
    deleted = upload_area(settings).delete(project, names)
    LOGGER.info("deleted %d uploaded files: %s", len(deleted), ", ".join(deleted))
    return deleted
