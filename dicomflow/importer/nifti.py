"""Import NIfTI: convert folders (basic or nnU-Net layout) to DICOM, then import that DICOM.

The inputs (folders, ``.nii``/``.nii.gz`` files, zip archives, or the files of uploads) are
searched for import folders: a folder with NIfTI files at its top level (basic layout) or
an nnU-Net dataset (``dataset.json`` or ``imagesTr/``). Zips are unpacked with the DICOM
import's safe extraction (:func:`~dicomflow.importer.archives.unpack_zip`, same bounds).
Each folder is converted with :func:`~dicomflow.nifti.convert_folder`, case by case, into
the import's scratch space; each converted case goes straight into the spool through the
DICOM import's :class:`~dicomflow.importer.importer.Importer` (the receiver's checks, its
batches, one ``service-process-incoming-dcm`` run per batch) and is deleted before the next
case is written, so the scratch space holds one case at a time.

One bad case or folder does not stop the others: each is named in the report with its reason.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dicomflow.config import Settings
from dicomflow.importer.archives import ArchiveError, UnpackBudget, is_zip, unpack_zip
from dicomflow.importer.importer import (
    Importer,
    ImportProgress,
    project_directory,
)
from dicomflow.importer.nifti_report import (
    NIFTI_REPORT_KIND,
    NiftiCase,
    NiftiImportOutcome,
    NiftiImportReport,
    NiftiSource,
)
from dicomflow.importer.uploads import (
    delete_uploads_if_imported,
    report_key,
    store_report,
    upload_area,
    upload_importer,
)
from dicomflow.intake.admission import ProjectNames
from dicomflow.nifti import (
    CaseResult,
    LayoutError,
    NiftiImportError,
    NiftiImportOptions,
    convert_folder,
    detect_layout,
)
from dicomflow.spool.records import Door
from dicomflow.spool.store import utc_now
from dicomflow.storage.client import ObjectNotFoundError, ObjectStore

__all__ = [
    "NIFTI_UPLOAD_IMPORT_DAG_ID",
    "delete_imported_nifti_uploads",
    "import_nifti",
    "import_nifti_uploads",
    "read_nifti_report",
]

LOGGER = logging.getLogger(__name__)

#: The DAG that imports uploaded NIfTI.
NIFTI_UPLOAD_IMPORT_DAG_ID = "import-niftis-from-data-upload"
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Folders that archivers and operating systems add and that never hold an import.
_SKIPPED_DIRS = ("__MACOSX",)


def _is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_NIFTI_SUFFIXES)


@dataclass(frozen=True)
class _Place:
    """A local folder and the name the user knows it by (``<upload>/<path>``, ``a.zip!``)."""

    local: Path
    name: str
    separator: str = "/"

    def display(self, path: Path) -> str:
        rel = path.relative_to(self.local).as_posix()
        if rel == ".":
            return self.name
        return f"{self.name}{self.separator}{rel}" if self.name else rel


class _NiftiImport:
    """One NIfTI import: inputs in, folders found and converted, cases fed to the importer."""

    def __init__(
        self,
        importer: Importer,
        settings: Settings,
        options: NiftiImportOptions,
        progress: ImportProgress | None,
    ) -> None:
        self.importer = importer
        self.options = options
        self.progress = progress
        self.nested_depth = settings.uploads.nested_zip_depth
        self.budget = UnpackBudget(
            settings.uploads.max_unpacked_bytes, settings.uploads.max_archive_entries
        )
        self.work = importer.scratch / "nifti"
        self.unpacked = self.work / "unpacked"
        self.converted = self.work / "converted"
        self.places: list[_Place] = []
        self.roots: list[tuple[Path, _Place]] = []
        self.sources: list[NiftiSource] = []
        self.cases: list[NiftiCase] = []

    # -- finding import folders -----------------------------------------------------------

    def add_input(self, path: Path, name: str, *, owned: bool = False) -> None:
        """Look for import folders in a folder, a NIfTI file or a zip archive."""
        if is_zip(path):
            self._add_archive(path, name, depth=1, owned=owned)
        elif path.is_dir():
            place = _Place(path, name)
            self.places.append(place)
            self._search(path, place, depth=0)
        elif _is_nifti(path):
            place = _Place(path.parent, str(Path(name).parent) if "/" in name else "")
            self.places.append(place)
            self.roots.append((path, place))
        elif path.exists():
            self._fail(name, "not a folder, a .nii/.nii.gz file or a zip archive", "LayoutError")
        else:
            self._fail(name, "no such file or folder", "MissingFileError")

    def _add_archive(self, path: Path, name: str, *, depth: int, owned: bool) -> None:
        target = self.unpacked / str(len(self.places))
        target.mkdir(parents=True)
        place = _Place(target, name, "!")
        self.places.append(place)
        try:
            for entry_path, entry_name, _packed in unpack_zip(path, name, target, self.budget):
                # unpack_zip checked every entry name (no absolute paths, no '..').
                dest = target / entry_name[len(name) + 1 :]
                dest.parent.mkdir(parents=True, exist_ok=True)
                entry_path.replace(dest)
        except ArchiveError as exc:
            LOGGER.error("NIfTI import: %s", exc)
            self._fail(name, str(exc), type(exc).__name__)
            shutil.rmtree(target, ignore_errors=True)
            return
        finally:
            if owned:
                path.unlink(missing_ok=True)
        self._search(target, place, depth=depth)

    def _search(self, folder: Path, place: _Place, *, depth: int) -> None:
        """Find import folders under ``folder`` (not below one) and zips to unpack."""
        roots, sources = len(self.roots), len(self.sources)
        self._walk(folder, place, depth)
        if len(self.roots) == roots and len(self.sources) == sources:
            self._fail(
                place.display(folder),
                "no NIfTI import folder found: no .nii/.nii.gz files at a folder's top level "
                "and no nnU-Net dataset (dataset.json, imagesTr/)",
                "LayoutError",
            )

    def _walk(self, folder: Path, place: _Place, depth: int) -> None:
        try:
            detect_layout(folder)
            self.roots.append((folder, place))
            is_root = True
        except LayoutError:
            is_root = False
        for child in sorted(folder.iterdir()):
            if child.name.startswith(".") or child.name in _SKIPPED_DIRS:
                continue
            if child.is_dir():
                # An import folder's sub-folders are its own (segs/, imagesTr/...).
                if not is_root:
                    self._walk(child, place, depth)
            elif is_zip(child):
                # depth 0 is a plain folder, so its zips are never "nested".
                if depth > self.nested_depth:
                    self._fail(
                        place.display(child),
                        f"archive nested deeper than uploads.nested_zip_depth = "
                        f"{self.nested_depth}: not unpacked",
                        "ArchiveError",
                    )
                    continue
                owned = place.local.is_relative_to(self.work)
                self._add_archive(child, place.display(child), depth=depth + 1, owned=owned)

    def _fail(self, name: str, error: str, error_type: str) -> None:
        self.sources.append(NiftiSource(name, error=error, error_type=error_type))

    # -- converting and importing ---------------------------------------------------------

    def run(self) -> None:
        """Convert every import folder found, handing each case to the importer."""
        total = sum(self._nifti_bytes(root) for root, _ in self.roots)
        if self.progress is not None:
            self.progress.start(total)
        for number, (root, place) in enumerate(self.roots):
            self._convert(root, place, self.converted / str(number))

    @staticmethod
    def _nifti_bytes(root: Path) -> int:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if _is_nifti(p)]
        return sum(p.stat().st_size for p in files)

    def _convert(self, root: Path, place: _Place, out: Path) -> None:
        source = NiftiSource(place.display(root))
        self.sources.append(source)

        def feed(result: CaseResult) -> None:
            self._feed(source, place, out, result)

        try:
            report = convert_folder(root, out, options=self.options, on_case=feed)
        except NiftiImportError as exc:
            source.error, source.error_type = self._local_to_names(str(exc)), type(exc).__name__
            LOGGER.warning("NIfTI import: %s failed: %s", source.name, source.error)
            return
        except Exception as exc:
            # Not a bad input we know of; logged with its traceback, the other folders go on.
            LOGGER.exception("NIfTI import: converting %s failed", source.name)
            source.error, source.error_type = f"{type(exc).__name__}: {exc}", type(exc).__name__
            return
        finally:
            shutil.rmtree(out, ignore_errors=True)
        source.layout = report.layout.value
        source.warnings = [self._local_to_names(w) for w in report.warnings]

    def _feed(self, source: NiftiSource, place: _Place, out: Path, result: CaseResult) -> None:
        case = NiftiCase(
            source.name,
            result.case_id,
            result.ok,
            reason=self._local_to_names(result.reason or ""),
            error_type=result.error_type or "",
            series=[s.series_uid for s in result.series],
            seg_series=result.segmentation.series_uid if result.segmentation else "",
            warnings=[self._local_to_names(w) for w in result.warnings],
        )
        self.cases.append(case)
        # Image slices first, then the SEG: a batch holding both lets the thumbnail step
        # draw the segments over their image without asking the PACS.
        for path in result.files:
            name = f"{source.name}/{path.relative_to(out).as_posix()}"
            self.importer.add(path, name, owned=True)
        if result.output_dir is not None:
            shutil.rmtree(result.output_dir, ignore_errors=True)
        if self.progress is not None:
            done = sum(p.stat().st_size for p in result.sources if p.is_file())
            self.progress.advance(done, case.name)

    def _local_to_names(self, text: str) -> str:
        """Replace scratch paths in a message by the names the user knows."""
        for place in sorted(self.places, key=lambda p: len(str(p.local)), reverse=True):
            if not place.local.is_relative_to(self.work) and place.name == str(place.local):
                continue
            prefix = str(place.local)
            if prefix in text:
                shown = place.name + (place.separator if place.name else "")
                text = text.replace(prefix + "/", shown).replace(prefix, place.name)
        return text


def _options_for(options: NiftiImportOptions, project: str, dataset: str) -> NiftiImportOptions:
    # The same files imported into two datasets stay apart; imported again into the same
    # dataset they get the same UIDs, so a re-run duplicates nothing.
    if options.uid_namespace:
        return options
    return replace(options, uid_namespace=f"{project}/{dataset}")


def _describe(options: NiftiImportOptions) -> dict[str, str]:
    return {
        "default modality": options.default_modality.value,
        "unknown labels": options.unknown_labels.value,
        "4D": options.four_d.value,
    }


def _run(
    importer: Importer,
    settings: Settings,
    options: NiftiImportOptions,
    progress: ImportProgress | None,
    add_inputs: Callable[[_NiftiImport], None],
) -> NiftiImportReport:
    started = utc_now()
    job = _NiftiImport(importer, settings, options, progress)
    try:
        add_inputs(job)
        job.run()
    finally:
        dicom = importer.finish()
    return NiftiImportReport(
        project=dicom.project,
        dataset=dicom.dataset,
        options=_describe(options),
        dicom=dicom,
        sources=job.sources,
        cases=job.cases,
        started_at=started,
        finished_at=utc_now(),
    )


def import_nifti(
    settings: Settings,
    paths: Iterable[Path],
    project: str,
    dataset: str,
    *,
    options: NiftiImportOptions | None = None,
    projects: ProjectNames | None = None,
    progress: ImportProgress | None = None,
    door: Door = Door.IMPORT,
    peer: str = "",
) -> NiftiImportReport:
    """Convert NIfTI folders, files and zips to DICOM and import it into ``project``/``dataset``.

    Parameters
    ----------
    settings
        The platform settings (scratch space, archive bounds, spool).
    paths
        Folders (basic layout, nnU-Net dataset, or folders holding them), ``.nii``/
        ``.nii.gz`` files and zip archives; nothing given is modified.
    project, dataset
        Where the series go (the project must exist; the dataset is created).
    options
        Conversion switches; an empty ``uid_namespace`` becomes ``"<project>/<dataset>"``.
    projects
        The project directory; default: the platform database of ``settings``.
    progress
        Receives the bytes of NIfTI input converted and imported.
    door, peer
        Recorded as the batches' origin.

    Returns
    -------
    NiftiImportReport
        Per folder and per case: imported or failed with the reason; the DICOM import.

    Raises
    ------
    ImportRefusedError
        When the import cannot start (unknown project, invalid dataset name).
    """
    options = _options_for(options or NiftiImportOptions(), project, dataset)
    importer = Importer(
        settings,
        project,
        dataset,
        project_directory(settings, projects),
        door=door,
        peer=peer,
        extension="",
    )

    def add_inputs(job: _NiftiImport) -> None:
        for raw in paths:
            path = Path(raw)
            job.add_input(path.resolve() if path.exists() else path, str(raw))

    return _run(importer, settings, options, progress, add_inputs)


def import_nifti_uploads(
    settings: Settings,
    project: str,
    dataset: str,
    names: Sequence[str],
    *,
    options: NiftiImportOptions | None = None,
    run_id: str = "",
    projects: ProjectNames | None = None,
    progress: ImportProgress | None = None,
    store: ObjectStore | None = None,
) -> NiftiImportReport:
    """Import uploaded NIfTI (folders, files, zips) of ``project``; store and return the report.

    Unlike DICOM, whose files stand alone, a NIfTI case needs its side files
    (``meta_data.json``, ``seg_info.json``, ``dataset.json``): every selected file is
    downloaded first, keeping the upload's folder structure, then searched like
    :func:`import_nifti` searches a folder. Names in the report are ``<upload id>/<path>``.

    Parameters
    ----------
    settings, project, dataset, names, run_id, projects, store
        As for :func:`~dicomflow.importer.uploads.import_uploads` (the report is stored
        under ``import-reports/<run id>.json`` too).
    options
        As for :func:`import_nifti`.
    progress
        Receives the bytes of NIfTI input converted and imported.

    Raises
    ------
    ImportRefusedError
        When the project does not exist or the dataset name is invalid.
    UnknownUploadError
        When a name matches nothing in the uploads area.
    """
    store = store or ObjectStore.from_settings(settings)
    area = upload_area(settings, store)
    options = _options_for(options or NiftiImportOptions(), project, dataset)
    # Progress goes to the conversion (bytes of NIfTI), not to the importer.
    importer = upload_importer(
        settings, project, dataset, run_id=run_id, extension="", projects=projects
    )

    def add_inputs(job: _NiftiImport) -> None:
        entries = area.select(project, names)
        downloads = job.work / "downloads"
        for entry in entries:
            area.download(project, entry, downloads)
        for upload_id in sorted({e.upload_id for e in entries}):
            job.add_input(downloads / upload_id, upload_id, owned=True)

    report = _run(importer, settings, options, progress, add_inputs)
    store_report(store, project, run_id, report)
    return report


def read_nifti_report(store: ObjectStore, project: str, run_id: str) -> NiftiImportReport | None:
    """The stored report of a NIfTI import run, or ``None`` while there is none.

    Raises
    ------
    ValueError
        When the report stored under the run id is not a NIfTI import's.
    """
    try:
        raw = store.get_bytes(project, report_key(run_id))
    except ObjectNotFoundError:
        return None
    data = json.loads(raw)
    if data.get("kind") != NIFTI_REPORT_KIND:
        raise ValueError(f"the report of run {run_id!r} is not a NIfTI import's")
    return NiftiImportReport.from_dict(data)


def delete_imported_nifti_uploads(
    settings: Settings, project: str, names: Sequence[str], report: NiftiImportReport
) -> list[str]:
    """Delete the imported uploads, only when every case was imported; return the names deleted.

    A partial import keeps the uploads: the user fixes the failed cases from them.
    """
    return delete_uploads_if_imported(
        settings, project, names, report.outcome.value, NiftiImportOutcome.IMPORTED.value
    )
