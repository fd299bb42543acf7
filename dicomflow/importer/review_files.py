"""Reading a review from files, folders and zip archives: headers only, nothing kept.

Each candidate file's header is read with pydicom up to the pixel data and only for
:data:`REVIEW_TAGS`; archives unpack into a scratch folder, one member at a time, each removed
as soon as it was read. The references between series are resolved once every file was read
(a dose may come before its plan).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicomflow.config import Settings
from dicomflow.dicom.uids import uid_problem
from dicomflow.importer.archives import ArchiveError, UnpackBudget, is_zip, unpack_zip
from dicomflow.importer.report import FailedInput, FailureKind, IgnoredFile, IgnoreReason
from dicomflow.importer.review import (
    ExpectedSubject,
    Flag,
    FlagKind,
    Review,
    ReviewedPatient,
    ReviewedSeries,
    ReviewedStudy,
)

__all__ = ["REVIEW_TAGS", "review_paths"]

LOGGER = logging.getLogger(__name__)
_DICM_OFFSET = 128

#: The only elements a review reads (sequences are read whole, the rest of the file skipped).
REVIEW_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyDate",
    "SeriesDate",
    "AccessionNumber",
    "Modality",
    "StudyDescription",
    "SeriesDescription",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "FrameOfReferenceUID",
    "ReferencedSeriesSequence",
    "ReferencedFrameOfReferenceSequence",
    "ReferencedStructureSetSequence",
    "ReferencedRTPlanSequence",
    "CurrentRequestedProcedureEvidenceSequence",
    "PertinentOtherEvidenceSequence",
]
_MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
#: Modalities whose series annotate others: a frame of reference alone does not make them
#: the image series an RTSTRUCT is drawn on.
_NOT_IMAGES = frozenset({"RTSTRUCT", "RTPLAN", "RTDOSE", "RTIMAGE", "RTRECORD", "SEG", "SR", "KO"})


# -- reading files --------------------------------------------------------------------------


@dataclass(slots=True)
class _Header:
    """The few header values of one file a review keeps."""

    name: str
    size: int
    ds: Dataset


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


class _Reader:
    """Walks inputs (files, folders, zips) and reads each candidate's headers."""

    def __init__(self, settings: Settings, extension: str, scratch: Path) -> None:
        self.limits = settings.uploads
        self.extension = extension
        self.scratch = scratch
        self.analysed = 0
        self.ignored: list[IgnoredFile] = []
        self.failures: list[FailedInput] = []

    def paths(self, paths: Sequence[Path]) -> Iterator[_Header]:
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                base = path.resolve().parent
                for child in sorted(p for p in path.resolve().rglob("*") if p.is_file()):
                    yield from self.file(child, str(child.relative_to(base)))
            elif path.exists():
                yield from self.file(path, path.name)
            else:
                self.failures.append(
                    FailedInput(str(path), FailureKind.MISSING, "no such file or folder")
                )

    def file(self, path: Path, name: str) -> Iterator[_Header]:
        if is_zip(path):
            limits = self.limits
            budget = UnpackBudget(limits.max_unpacked_bytes, limits.max_archive_entries)
            yield from self._archive(path, name, budget, depth=1)
        else:
            header = self._header(path, name)
            if header is not None:
                yield header

    def _archive(
        self, path: Path, name: str, budget: UnpackBudget, depth: int
    ) -> Iterator[_Header]:
        try:
            for entry_path, entry_name, _ in unpack_zip(path, name, self.scratch, budget):
                try:
                    if is_zip(entry_path):
                        if depth > self.limits.nested_zip_depth:
                            self.analysed += 1
                            self._ignore(
                                entry_name,
                                IgnoreReason.NESTED_TOO_DEEP,
                                f"uploads.nested_zip_depth = {self.limits.nested_zip_depth}",
                            )
                        else:
                            yield from self._archive(entry_path, entry_name, budget, depth + 1)
                    else:
                        header = self._header(entry_path, entry_name)
                        if header is not None:
                            yield header
                finally:
                    # A review keeps nothing: each member goes as soon as it was read.
                    entry_path.unlink(missing_ok=True)
        except ArchiveError as exc:
            self.failures.append(FailedInput(name, exc.kind, str(exc)))

    def _ignore(self, name: str, reason: IgnoreReason, detail: str) -> None:
        self.ignored.append(IgnoredFile(name, reason, detail))

    def _header(self, path: Path, name: str) -> _Header | None:
        self.analysed += 1
        base = name.replace("\\", "/").rsplit("/", 1)[-1].rsplit("!", 1)[-1]
        if base.upper() == "DICOMDIR":
            self._ignore(name, IgnoreReason.DICOMDIR, "a media directory, not an instance")
            return None
        if self.extension and not base.lower().endswith(self.extension):
            self._ignore(name, IgnoreReason.WRONG_EXTENSION, f"not *{self.extension}")
            return None
        try:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                head = fh.read(_DICM_OFFSET + 4)
        except OSError as exc:
            self._ignore(name, IgnoreReason.UNREADABLE, f"cannot read: {exc.strerror or exc}")
            return None
        if head[_DICM_OFFSET:] != b"DICM":
            self._ignore(
                name, IgnoreReason.NOT_DICOM, "no DICM prefix at byte 128 (not DICOM Part 10)"
            )
            return None
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=REVIEW_TAGS)
        except (InvalidDicomError, ValueError, TypeError, EOFError, OSError, KeyError) as exc:
            self._ignore(name, IgnoreReason.UNREADABLE, f"the header cannot be parsed: {exc}")
            return None
        media_class = str(getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", ""))
        if media_class == _MEDIA_DIRECTORY:
            self._ignore(name, IgnoreReason.DICOMDIR, "a media directory, not an instance")
            return None
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            problem = uid_problem(ds.get(keyword), keyword)
            if problem:
                self._ignore(name, IgnoreReason.BAD_UID, problem)
                return None
        return _Header(name, size, ds)


# -- references ------------------------------------------------------------------------------


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    value = ds.get(keyword)
    return list(value) if value is not None else []


def _references(ds: Dataset) -> tuple[set[str], set[str], set[str]]:
    """What an instance refers to: ``(series UIDs, SOP Instance UIDs, frames of reference)``."""
    series: set[str] = set()
    sops: set[str] = set()
    frames: set[str] = set()
    # SEG (and others) at the top level; SR evidence lists each cited series.
    for item in _items(ds, "ReferencedSeriesSequence"):
        series.add(_text(item, "SeriesInstanceUID"))
        instances = _items(item, "ReferencedInstanceSequence")
        sops.update(_text(i, "ReferencedSOPInstanceUID") for i in instances)
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in _items(ds, keyword):
            for item in _items(study, "ReferencedSeriesSequence"):
                series.add(_text(item, "SeriesInstanceUID"))
    # RTSTRUCT: the frame of reference, the image series and the contoured images.
    for frame in _items(ds, "ReferencedFrameOfReferenceSequence"):
        frames.add(_text(frame, "FrameOfReferenceUID"))
        for study in _items(frame, "RTReferencedStudySequence"):
            for item in _items(study, "RTReferencedSeriesSequence"):
                series.add(_text(item, "SeriesInstanceUID"))
                sops.update(
                    _text(i, "ReferencedSOPInstanceUID")
                    for i in _items(item, "ContourImageSequence")
                )
    # RTPLAN -> its structure set; RTDOSE / RTIMAGE -> their plan.
    for keyword in ("ReferencedStructureSetSequence", "ReferencedRTPlanSequence"):
        sops.update(_text(i, "ReferencedSOPInstanceUID") for i in _items(ds, keyword))
    return series - {""}, sops - {""}, frames - {""}


# -- the review -----------------------------------------------------------------------------


def _date_text(value: str) -> str:
    return value[:8] if len(value) >= 8 else value


class _Builder:
    def __init__(self, today: dt.date) -> None:
        self.today = today
        self.patients: dict[str, ReviewedPatient] = {}
        self.studies: dict[str, ReviewedStudy] = {}
        self.series: dict[str, ReviewedSeries] = {}
        self.sop_series: dict[str, str] = {}
        self.refs: dict[str, tuple[set[str], set[str], set[str]]] = {}

    def add(self, header: _Header) -> None:
        ds = header.ds
        pid = _text(ds, "PatientID")
        study_uid = _text(ds, "StudyInstanceUID")
        series_uid = _text(ds, "SeriesInstanceUID")
        patient = self.patients.get(pid)
        if patient is None:
            patient = ReviewedPatient(
                pid,
                _text(ds, "PatientName"),
                _text(ds, "PatientSex").upper(),
                _date_text(_text(ds, "PatientBirthDate")),
            )
            self.patients[pid] = patient
        study = self.studies.get(study_uid)
        if study is None:
            study = ReviewedStudy(
                study_uid,
                _date_text(_text(ds, "StudyDate")),
                _text(ds, "StudyDescription"),
                _text(ds, "AccessionNumber"),
            )
            self.studies[study_uid] = study
            patient.studies.append(study)
        series = self.series.get(series_uid)
        if series is None:
            series = ReviewedSeries(
                series_uid,
                study_uid,
                pid,
                modality=_text(ds, "Modality").upper(),
                description=_text(ds, "SeriesDescription"),
                series_number=_text(ds, "SeriesNumber"),
                series_date=_date_text(_text(ds, "SeriesDate")),
                sop_class_uid=_text(ds, "SOPClassUID"),
                frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
                patient_sex=_text(ds, "PatientSex").upper(),
                patient_birth_date=_date_text(_text(ds, "PatientBirthDate")),
            )
            self.series[series_uid] = series
            study.series.append(series)
            self.refs[series_uid] = (set(), set(), set())
        series.instances += 1
        series.bytes += header.size
        series.files.append(header.name)
        self.sop_series[_text(ds, "SOPInstanceUID")] = series_uid
        found = _references(ds)
        for mine, theirs in zip(self.refs[series_uid], found, strict=True):
            mine.update(theirs)

    def resolve(self) -> None:
        images_by_frame: dict[str, list[str]] = {}
        for s in self.series.values():
            if s.frame_of_reference_uid and s.modality not in _NOT_IMAGES:
                images_by_frame.setdefault(s.frame_of_reference_uid, []).append(s.series_uid)
        for uid, (series_refs, sop_refs, frames) in self.refs.items():
            s = self.series[uid]
            targets: set[str] = set()
            unresolved: set[str] = set()
            for ref in series_refs:
                (targets if ref in self.series else unresolved).add(
                    ref if ref in self.series else f"series {ref}"
                )
            for sop in sop_refs:
                if sop in self.sop_series:
                    targets.add(self.sop_series[sop])
                else:
                    unresolved.add(f"instance {sop}")
            if not targets:
                # An RTSTRUCT naming only its frame of reference: the image series in it.
                for frame in frames:
                    targets.update(images_by_frame.get(frame, []))
            targets.discard(uid)
            s.references = sorted(targets)
            s.unresolved = sorted(unresolved)

    def flags(self, expected: ExpectedSubject | None) -> list[Flag]:
        flags: list[Flag] = []
        if len(self.patients) > 1:
            ids = ", ".join(repr(p) for p in self.patients)
            flags.append(
                Flag(
                    FlagKind.SEVERAL_PATIENTS,
                    "",
                    "PatientID",
                    "",
                    ids,
                    f"the files hold {len(self.patients)} patients: {ids}",
                )
            )
        today = self.today.strftime("%Y%m%d")
        for s in self.series.values():
            study = self.studies[s.study_uid]
            if not s.patient_id:
                flags.append(
                    Flag(
                        FlagKind.EMPTY_PATIENT_ID,
                        s.series_uid,
                        "PatientID",
                        "",
                        "",
                        f"series {s.series_uid} ({s.modality}) has an empty Patient ID",
                    )
                )
            if study.study_date and study.study_date > today:
                flags.append(
                    Flag(
                        FlagKind.FUTURE_DATE,
                        s.series_uid,
                        "StudyDate",
                        f"on or before {today}",
                        study.study_date,
                        f"series {s.series_uid} ({s.modality}): study date {study.study_date} "
                        f"is after today ({today})",
                    )
                )
            for keyword, want in expected.fields() if expected else []:
                found = {
                    "PatientID": s.patient_id,
                    "PatientSex": s.patient_sex,
                    "PatientBirthDate": s.patient_birth_date,
                }[keyword]
                if found != want:
                    flags.append(
                        Flag(
                            FlagKind.SUBJECT_MISMATCH,
                            s.series_uid,
                            keyword,
                            want,
                            found,
                            f"series {s.series_uid} ({s.modality}): {keyword} is "
                            f"{found or '(empty)'!r}, expected {want!r}",
                        )
                    )
        return flags


def review_paths(
    settings: Settings,
    paths: Sequence[Path],
    *,
    extension: str = ".dcm",
    expected: ExpectedSubject | None = None,
    held: Callable[[str], bool] | None = None,
    names: Sequence[str] | None = None,
    today: dt.date | None = None,
) -> Review:
    """Review files, folders (recursively) and zip archives: headers only, nothing imported.

    Parameters
    ----------
    settings
        Archive bounds (``uploads.*``) and the scratch directory archives unpack into.
    paths
        What to review; nothing given is modified.
    extension
        As for the import: only names ending with it are candidates; empty: every file.
    expected
        The expected subject; series that disagree are flagged.
    held
        Whether the project already holds a Series Instance UID (e.g. its index).
    names
        How the inputs are named in the review (default: the paths).
    today
        The date study dates are compared with (default: today, UTC).

    Returns
    -------
    Review
        The tree, ignored files, failed inputs and flags.
    """
    settings.imports_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="review-", dir=settings.imports_dir))
    reader = _Reader(settings, extension, scratch)
    builder = _Builder(today or dt.datetime.now(dt.UTC).date())
    try:
        for header in reader.paths(paths):
            builder.add(header)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    builder.resolve()
    if held is not None:
        for s in builder.series.values():
            s.in_project = held(s.series_uid)
    return Review(
        inputs=list(names) if names is not None else [str(p) for p in paths],
        analysed=reader.analysed,
        ignored=reader.ignored,
        failures=reader.failures,
        patients=list(builder.patients.values()),
        flags=builder.flags(expected),
        expected=expected if expected else None,
    )
