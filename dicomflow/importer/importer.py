"""Import DICOM files from disk into the spool, through the platform's intake.

Every file goes through :class:`~dicomflow.intake.session.IntakeSession`, the path of every
door: the same admission, the same UID checks, the same problem area for rejected instances,
the same batches. Each batch that closes (by its size limits, or at the end) joins the spool's
outbox, from where the dispatcher hands it to Airflow's ``service-process-incoming-dcm``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import pydicom

from dicomflow.config import Settings
from dicomflow.dicom.instance import Instance, dataset_digest
from dicomflow.importer.archives import ArchiveError, UnpackBudget, is_zip, unpack_zip
from dicomflow.importer.report import (
    FailedInput,
    FailureKind,
    IgnoredFile,
    IgnoreReason,
    ImportedInstance,
    ImportReport,
    SeriesSummary,
)
from dicomflow.intake.admission import (
    KNOWN_PROJECTS_FILE,
    Admission,
    AdmissionRefusedError,
    ProjectLookupError,
    ProjectNames,
)
from dicomflow.intake.checks import InstanceRejectedError, StoreStatus
from dicomflow.intake.session import IntakeSession
from dicomflow.spool.records import CloseReason, Door, Origin
from dicomflow.spool.store import Spool, new_id, utc_now

__all__ = [
    "ImportProgress",
    "ImportRefusedError",
    "Importer",
    "import_paths",
    "normalize_extension",
    "project_directory",
]

LOGGER = logging.getLogger(__name__)
_DICM_OFFSET = 128
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


class ImportRefusedError(ValueError):
    """The import cannot start: unknown project, invalid dataset name or extension."""


class ImportProgress(Protocol):
    """Receives progress in bytes of input read (e.g. a progress bar)."""

    def start(self, total_bytes: int) -> None:
        """The total of the inputs, before the first file."""

    def advance(self, nbytes: int, name: str) -> None:
        """``nbytes`` more of the inputs were handled; ``name`` is the current file."""


def project_directory(settings: Settings, projects: ProjectNames | None) -> ProjectNames:
    """The project directory an import checks against: ``projects`` when given.

    Parameters
    ----------
    settings
        The platform settings (its platform database is the default directory).
    projects
        A directory of the caller's (e.g. a test's); ``None`` for the default.

    Returns
    -------
    ProjectNames
        ``projects``, or a :class:`~dicomflow.db.projects.ProjectStore` on the platform
        database (an engine is only made when no directory was given).
    """
    if projects is not None:
        return projects
    from dicomflow.db.projects import ProjectStore
    from dicomflow.db.session import make_engine

    return ProjectStore(make_engine(settings.platform_db_url))


def normalize_extension(extension: str | None) -> str:
    """``"dcm"`` -> ``".dcm"``; empty or ``None`` means any name (DICOM detected by content).

    Raises
    ------
    ImportRefusedError
        When the extension holds a path separator or whitespace.
    """
    ext = (extension or "").strip()
    if not ext:
        return ""
    if not ext.startswith("."):
        ext = "." + ext
    if "/" in ext or "\\" in ext or any(c.isspace() for c in ext) or ext == ".":
        raise ImportRefusedError(
            f"extension {extension!r} is not a file name extension like '.dcm' "
            "(leave it empty to detect DICOM by content)"
        )
    return ext.lower()


class Importer:
    """One import: files in, instances into batches (each closed batch to the outbox), a report.

    Use :meth:`add` per input file (an archive is unpacked), then :meth:`finish`.

    Parameters
    ----------
    settings
        Spool location, batch limits, archive bounds, scratch directory.
    project, dataset
        Where the instances go; the project must exist, the dataset is created on first use.
    projects
        The project directory (platform database).
    door
        How the files came in (``Door.IMPORT`` for the CLI, ``Door.UPLOAD`` for the page).
    peer
        Who imports (recorded in each batch's origin).
    extension
        Only names ending with it are candidates; empty: every file, DICOM by content.
    progress
        Progress receiver.
    series
        Only instances of these Series Instance UIDs (a reviewed selection); ``None``: all.

    Raises
    ------
    ImportRefusedError
        When the project does not exist or the dataset name or extension is invalid.
    """

    def __init__(
        self,
        settings: Settings,
        project: str,
        dataset: str,
        projects: ProjectNames,
        *,
        door: Door = Door.IMPORT,
        peer: str = "",
        extension: str | None = ".dcm",
        progress: ImportProgress | None = None,
        series: Collection[str] | None = None,
    ) -> None:
        self.spool = Spool.from_settings(settings)
        admission = Admission(projects, self.spool.root / KNOWN_PROJECTS_FILE)
        try:
            destination = admission.destination(project, dataset)
        except (AdmissionRefusedError, ProjectLookupError) as exc:
            raise ImportRefusedError(str(exc)) from None
        self.settings = settings
        self.extension = normalize_extension(extension)
        self.progress = progress
        self.report = ImportReport(
            destination.project, dataset, self.extension, started_at=utc_now()
        )
        self._closed: list[str] = []
        self.spool.add_close_listener(self._closed.append)
        origin = Origin(door, peer or f"{door.value}@{os.uname().nodename}", dataset, project)
        self.intake = IntakeSession(self.spool, destination, origin)
        self.scratch = settings.imports_dir / new_id()
        self.scratch.mkdir(parents=True, exist_ok=False)
        self._series: dict[str, SeriesSummary] = {}
        self._uploads = settings.uploads
        self._selection = frozenset(series) if series is not None else None
        if self._selection is not None:
            self.report.selection = sorted(self._selection)

    # -- inputs ---------------------------------------------------------------------------

    def start(self, total_bytes: int) -> None:
        """Tell the progress receiver how many input bytes will come."""
        if self.progress is not None:
            self.progress.start(total_bytes)

    def add(self, path: Path, name: str, *, owned: bool = False) -> None:
        """Import one input file: an instance, another file, or a zip archive to unpack.

        Parameters
        ----------
        path
            The file.
        name
            Its name in the report (a relative path).
        owned
            The file is the importer's to take (moved into the spool instead of copied).
        """
        try:
            size = path.stat().st_size
        except OSError as exc:
            self.report.failures.append(
                FailedInput(name, FailureKind.MISSING, f"cannot read: {exc.strerror or exc}")
            )
            return
        if is_zip(path):
            limits = self._uploads
            budget = UnpackBudget(limits.max_unpacked_bytes, limits.max_archive_entries)
            done = self._add_archive(path, name, budget, depth=1, top_size=size)
            self._advance(size - done, name)
        else:
            self._add_file(path, name, owned=owned)
            self._advance(size, name)
        self._note_closed()

    def add_paths(self, paths: Sequence[Path]) -> None:
        """Import files and folders (recursively), named relative to their parent folder."""
        inputs: list[tuple[Path, str]] = []
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                base = path.resolve().parent
                for child in sorted(p for p in path.resolve().rglob("*") if p.is_file()):
                    inputs.append((child, str(child.relative_to(base))))
            elif path.exists():
                inputs.append((path, path.name))
            else:
                self.report.failures.append(
                    FailedInput(str(path), FailureKind.MISSING, "no such file or folder")
                )
        self.start(sum(_size(p) for p, _ in inputs))
        for path, name in inputs:
            self.add(path, name)

    def _advance(self, nbytes: int, name: str) -> None:
        if self.progress is not None and nbytes > 0:
            self.progress.advance(nbytes, name)

    def _add_archive(
        self, path: Path, name: str, budget: UnpackBudget, *, depth: int, top_size: int = 0
    ) -> int:
        """Unpack and import an archive; return the compressed bytes reported as progress."""
        advanced = 0
        try:
            for entry_path, entry_name, packed in unpack_zip(path, name, self.scratch, budget):
                if is_zip(entry_path):
                    if depth > self._uploads.nested_zip_depth:
                        self.report.found += 1
                        self._ignore(
                            entry_name,
                            IgnoreReason.NESTED_TOO_DEEP,
                            f"uploads.nested_zip_depth = {self._uploads.nested_zip_depth}",
                        )
                    else:
                        self._add_archive(entry_path, entry_name, budget, depth=depth + 1)
                else:
                    self._add_file(entry_path, entry_name, owned=True)
                if top_size:
                    # Progress follows the compressed bytes of the outer archive.
                    step = min(top_size - advanced, packed)
                    self._advance(step, entry_name)
                    advanced += step
                self._note_closed()
        except ArchiveError as exc:
            LOGGER.error("import: %s", exc)
            self.report.failures.append(FailedInput(name, exc.kind, str(exc)))
        return advanced

    def _add_file(self, path: Path, name: str, *, owned: bool) -> None:
        self.report.found += 1
        base = name.replace("\\", "/").rsplit("/", 1)[-1].rsplit("!", 1)[-1]
        if base.upper() == "DICOMDIR":
            self._ignore(name, IgnoreReason.DICOMDIR, "a media directory, not an instance")
            return
        if self.extension and not base.lower().endswith(self.extension):
            self._ignore(name, IgnoreReason.WRONG_EXTENSION, f"not *{self.extension}")
            return
        try:
            with open(path, "rb") as fh:
                head = fh.read(_DICM_OFFSET + 4)
        except OSError as exc:
            self._ignore(name, IgnoreReason.UNREADABLE, f"cannot read: {exc.strerror or exc}")
            return
        if head[_DICM_OFFSET:] != b"DICM":
            self._ignore(
                name, IgnoreReason.NOT_DICOM, "no DICM prefix at byte 128 (not DICOM Part 10)"
            )
            return
        if self._selection is not None:
            series_uid = _series_uid(path)
            if series_uid not in self._selection:
                self._ignore(
                    name, IgnoreReason.NOT_SELECTED, f"series {series_uid or '?'} not selected"
                )
                return
        try:
            entry = self.intake.store(path, move=owned)
        except InstanceRejectedError as exc:
            reason = (
                IgnoreReason.BAD_UID
                if exc.status is StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
                else IgnoreReason.UNREADABLE
            )
            if reason is IgnoreReason.BAD_UID and _is_dicomdir(path, owned):
                # keep_problem took a copy; a DICOMDIR is not an instance to complain about.
                self._ignore(name, IgnoreReason.DICOMDIR, "a media directory, not an instance")
                return
            self._ignore(name, reason, f"{exc.reason}; kept in the spool's problem area")
            return
        self.report.imported += 1
        self.report.imported_bytes += entry.size
        self._count_series(entry)
        self._remember(entry)

    def _remember(self, entry: Instance) -> None:
        """Keep the instance's identity and digest for the verification in the PACS."""
        try:
            digest = dataset_digest(entry.path.read_bytes())
        except OSError as exc:  # durable in the spool, so readable; verification will say
            LOGGER.warning("no digest of %s: %s", entry.path, exc)
            digest = ""
        self.report.instances.append(
            ImportedInstance(
                entry.sop_instance_uid,
                entry.series_instance_uid,
                entry.study_instance_uid,
                digest,
            )
        )

    def _ignore(self, name: str, reason: IgnoreReason, detail: str) -> None:
        self.report.ignored.append(IgnoredFile(name, reason, detail))

    def _count_series(self, entry: Instance) -> None:
        summary = self._series.get(entry.series_instance_uid)
        if summary is None:
            summary = SeriesSummary(entry.series_instance_uid, entry.study_instance_uid)
            summary.modality = entry.modality or ""
            try:
                ds = pydicom.dcmread(
                    entry.path, stop_before_pixels=True, specific_tags=["SeriesDescription"]
                )
                summary.description = str(ds.get("SeriesDescription", "") or "")
            except Exception as exc:  # the instance passed the checks; labels are a nicety
                LOGGER.debug("no series labels for %s: %s", entry.series_instance_uid, exc)
            self._series[entry.series_instance_uid] = summary
            self.report.series.append(summary)
        summary.instances += 1

    # -- batches --------------------------------------------------------------------------

    def _note_closed(self) -> None:
        self.report.batches.extend(self._closed)
        self._closed.clear()

    def finish(self) -> ImportReport:
        """Close the last batch (to the outbox), remove scratch files; return the report."""
        try:
            self.intake.close(CloseReason.IMPORT_END)
            self._note_closed()
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.report.finished_at = utc_now()
        return self.report


def _is_dicomdir(path: Path, owned: bool) -> bool:
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS


def _series_uid(path: Path) -> str:
    """The Series Instance UID of a DICOM file, or empty when it cannot be read."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    except Exception:  # intake judges unreadable files; here it is just not selected
        return ""
    return str(ds.get("SeriesInstanceUID", "") or "").strip()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def import_paths(
    settings: Settings,
    paths: Iterable[Path],
    project: str,
    dataset: str,
    *,
    extension: str | None = ".dcm",
    projects: ProjectNames | None = None,
    progress: ImportProgress | None = None,
    door: Door = Door.IMPORT,
    peer: str = "",
    on_report: Callable[[ImportReport], None] | None = None,
    series: Collection[str] | None = None,
) -> ImportReport:
    """Import files, folders (recursively) and zip archives into ``project``/``dataset``.

    The NIfTI import converts into a scratch folder and calls this on it.

    Parameters
    ----------
    settings
        The platform settings.
    paths
        Files, folders and zip archives; nothing given is modified or deleted.
    project, dataset
        Where the instances go (the project must exist; the dataset is created).
    extension
        Only names ending with it are candidates (default ``.dcm``); empty or ``None``:
        every file, DICOM detected by content.
    projects
        The project directory; default: the platform database of ``settings``.
    progress
        Progress receiver (bytes of input).
    door, peer
        Recorded as the batches' origin.
    on_report
        Called with the finished report (e.g. to store it) before it is returned.
    series
        Only these Series Instance UIDs (a reviewed selection); ``None``: everything found.

    Returns
    -------
    ImportReport
        Found, imported, ignored with reasons, failed inputs, series, batches.

    Raises
    ------
    ImportRefusedError
        When the import cannot start (unknown project, invalid dataset or extension).
    """
    importer = Importer(
        settings,
        project,
        dataset,
        project_directory(settings, projects),
        door=door,
        peer=peer,
        extension=extension,
        progress=progress,
        series=series,
    )
    try:
        importer.add_paths([Path(p) for p in paths])
    finally:
        report = importer.finish()
    if on_report is not None:
        on_report(report)
    return report
