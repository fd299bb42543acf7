"""Look before importing: read the headers of files, folders and zips, and show what is there.

A review reads only the headers (no pixel data) of every candidate file and gives a tree
patient -> study -> series, the files it ignored with the reason, the references between
series (an RTSTRUCT to its image series, an RTPLAN to its RTSTRUCT, an RTDOSE or RTIMAGE to its
RTPLAN, a SEG to its source series, an SR to what it cites), the series the project already
holds, and flags: series that disagree with the expected subject, several patients, an empty
Patient ID, study dates in the future. :meth:`Review.closure` is the selection rule: a selected
series brings what it references. Nothing is written anywhere; only the selection is imported
afterwards (:class:`~dicomflow.importer.importer.Importer` with ``series``).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicomflow.config import Settings
from dicomflow.dicom.uids import uid_problem
from dicomflow.importer.archives import ArchiveError, UnpackBudget, is_zip, unpack_zip
from dicomflow.importer.report import FailedInput, FailureKind, IgnoredFile, IgnoreReason

__all__ = [
    "REVIEW_TAGS",
    "ExpectedSubject",
    "Flag",
    "FlagKind",
    "Review",
    "ReviewedPatient",
    "ReviewedSeries",
    "ReviewedStudy",
    "SubjectMismatchError",
    "review_paths",
]

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


class FlagKind(StrEnum):
    """What a review flags."""

    #: A subject field of the series disagrees with the expected subject (needs an override).
    SUBJECT_MISMATCH = "subject mismatch"
    #: The series has no Patient ID (needs an override).
    EMPTY_PATIENT_ID = "empty Patient ID"
    #: The files hold more than one patient.
    SEVERAL_PATIENTS = "several patients"
    #: A study date lies after today.
    FUTURE_DATE = "study date in the future"

    @property
    def needs_override(self) -> bool:
        """Whether importing a series with this flag needs an explicit override."""
        return self in (FlagKind.SUBJECT_MISMATCH, FlagKind.EMPTY_PATIENT_ID)


@dataclass(frozen=True, slots=True)
class Flag:
    """One thing a person should look at before importing.

    Attributes
    ----------
    kind
        What is wrong.
    series_uid
        The series concerned (empty for the whole review, e.g. several patients).
    field
        The DICOM keyword concerned (``PatientSex``), empty when none.
    expected, found
        The expected and the found values (subject mismatches), else empty.
    message
        One sentence for a person.
    """

    kind: FlagKind
    series_uid: str
    field: str
    expected: str
    found: str
    message: str

    @property
    def needs_override(self) -> bool:
        """Whether importing the series needs an explicit override."""
        return self.kind.needs_override


@dataclass(frozen=True, slots=True)
class ExpectedSubject:
    """Who the data should be about; an empty field is not checked.

    Attributes
    ----------
    patient_id
        Patient ID (0010,0020), compared exactly (surrounding spaces ignored).
    sex
        Patient's Sex (0010,0040): ``M``, ``F`` or ``O``.
    birth_date
        Patient's Birth Date (0010,0030) as ``YYYYMMDD`` (``YYYY-MM-DD`` is accepted).
    """

    patient_id: str = ""
    sex: str = ""
    birth_date: str = ""

    def __post_init__(self) -> None:
        sex = self.sex.strip().upper()
        if sex and sex not in ("M", "F", "O"):
            raise ValueError(f"expected sex {self.sex!r}: give M, F or O")
        birth = self.birth_date.strip().replace("-", "")
        if birth:
            try:
                dt.datetime.strptime(birth, "%Y%m%d")
            except ValueError:
                raise ValueError(
                    f"expected birth date {self.birth_date!r}: give YYYYMMDD or YYYY-MM-DD"
                ) from None
        object.__setattr__(self, "sex", sex)
        object.__setattr__(self, "birth_date", birth)
        object.__setattr__(self, "patient_id", self.patient_id.strip())

    def __bool__(self) -> bool:
        return bool(self.patient_id or self.sex or self.birth_date)

    def fields(self) -> list[tuple[str, str]]:
        """``(DICOM keyword, expected value)`` of each field given."""
        pairs = [
            ("PatientID", self.patient_id),
            ("PatientSex", self.sex),
            ("PatientBirthDate", self.birth_date),
        ]
        return [(k, v) for k, v in pairs if v]

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ExpectedSubject:
        """The subject of a series document of the index (a patient the project holds).

        Documents name fields ``"00100040 PatientSex_keyword"``; dates may read
        ``1970-01-01`` or ``1970-01-01T00:00:00``.
        """
        values: dict[str, str] = {}
        for name, value in document.items():
            keyword = name.split(" ", 1)[-1].rsplit("_", 1)[0]
            if keyword in ("PatientID", "PatientSex", "PatientBirthDate") and value:
                values[keyword] = str(value[0] if isinstance(value, list) else value)
        birth = values.get("PatientBirthDate", "").replace("-", "")[:8]
        return cls(values.get("PatientID", ""), values.get("PatientSex", ""), birth)


class SubjectMismatchError(ValueError):
    """Selected series carry flags that need an explicit override.

    Attributes
    ----------
    flags
        The flags in question.
    """

    def __init__(self, flags: Sequence[Flag]) -> None:
        self.flags = list(flags)
        lines = "; ".join(f.message for f in self.flags[:10])
        more = f" (and {len(self.flags) - 10} more)" if len(self.flags) > 10 else ""
        super().__init__(
            f"{len(self.flags)} flag(s) need an explicit override before importing: "
            f"{lines}{more}. Untick those series, or override (CLI: --override-subject; "
            "page: the override checkbox); the override is recorded in the audit trail"
        )


@dataclass(slots=True)
class ReviewedSeries:
    """One series as the headers describe it.

    Attributes
    ----------
    references
        Series Instance UIDs this series refers to (found in the reviewed files).
    unresolved
        References to instances or series not among the reviewed files (``what: UID``).
    in_project
        The project already holds this series.
    files
        Names of its files (relative paths, ``archive.zip!entry`` inside archives).
    """

    series_uid: str
    study_uid: str
    patient_id: str
    modality: str = ""
    description: str = ""
    series_number: str = ""
    series_date: str = ""
    sop_class_uid: str = ""
    frame_of_reference_uid: str = ""
    instances: int = 0
    bytes: int = 0
    references: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    in_project: bool = False
    patient_sex: str = ""
    patient_birth_date: str = ""
    files: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ReviewedStudy:
    """One study: its labels and its series."""

    study_uid: str
    study_date: str = ""
    description: str = ""
    accession_number: str = ""
    series: list[ReviewedSeries] = field(default_factory=list)


@dataclass(slots=True)
class ReviewedPatient:
    """One patient (by Patient ID) and the studies of the reviewed files."""

    patient_id: str
    patient_name: str = ""
    sex: str = ""
    birth_date: str = ""
    studies: list[ReviewedStudy] = field(default_factory=list)


@dataclass
class Review:
    """What a set of files holds, before any of it is imported.

    Attributes
    ----------
    inputs
        What was reviewed (paths or upload names).
    analysed
        Files whose first bytes or headers were read (archive members count, archives not).
    ignored
        Files not importable, with the reason for each.
    failures
        Inputs that could not be read to the end (a corrupt or unsafe archive).
    patients
        The tree patient -> study -> series.
    flags
        Subject mismatches, empty Patient IDs, several patients, future study dates.
    expected
        The expected subject the series were checked against (``None``: none given).
    """

    inputs: list[str]
    analysed: int = 0
    ignored: list[IgnoredFile] = field(default_factory=list)
    failures: list[FailedInput] = field(default_factory=list)
    patients: list[ReviewedPatient] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    expected: ExpectedSubject | None = None

    # -- reading the tree -----------------------------------------------------------------

    def series(self) -> list[ReviewedSeries]:
        """Every series, in tree order."""
        return [s for p in self.patients for st in p.studies for s in st.series]

    def series_by_uid(self) -> dict[str, ReviewedSeries]:
        """Every series by its Series Instance UID."""
        return {s.series_uid: s for s in self.series()}

    def closure(self, selected: Iterable[str]) -> set[str]:
        """The selection with everything it references, transitively.

        Selecting an RTDOSE selects its RTPLAN, whose RTSTRUCT brings its image series.

        Raises
        ------
        KeyError
            Naming a selected UID that is not among the reviewed series.
        """
        by_uid = self.series_by_uid()
        todo = list(selected)
        unknown = [uid for uid in todo if uid not in by_uid]
        if unknown:
            raise KeyError(
                f"series {', '.join(unknown)} not among the reviewed files "
                f"({len(by_uid)} series found)"
            )
        chosen: set[str] = set()
        while todo:
            uid = todo.pop()
            if uid in chosen:
                continue
            chosen.add(uid)
            todo.extend(r for r in by_uid[uid].references if r in by_uid)
        return chosen

    def default_selection(self) -> set[str]:
        """What is ticked at first: every series the project does not hold yet."""
        return {s.series_uid for s in self.series() if not s.in_project}

    def flags_needing_override(self, selected: Iterable[str]) -> list[Flag]:
        """The flags of selected series that need an explicit override to be imported."""
        chosen = set(selected)
        return [f for f in self.flags if f.needs_override and f.series_uid in chosen]

    def check_selection(self, selected: Iterable[str], *, override: bool) -> list[Flag]:
        """Refuse a selection with flags that need an override, unless ``override``.

        Returns
        -------
        list of Flag
            The flags overridden (empty when none needed it).

        Raises
        ------
        SubjectMismatchError
            When some do and ``override`` is false.
        """
        flags = self.flags_needing_override(selected)
        if flags and not override:
            raise SubjectMismatchError(flags)
        return flags

    # -- output ---------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (the page, ``--json``)."""
        data = asdict(self)
        for flag in data["flags"]:
            flag["needs_override"] = FlagKind(flag["kind"]).needs_override
        data["default_selection"] = sorted(self.default_selection())
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Review:
        """Inverse of :meth:`as_dict` (a review kept for the page's import)."""
        patients = [
            ReviewedPatient(
                p["patient_id"],
                p.get("patient_name", ""),
                p.get("sex", ""),
                p.get("birth_date", ""),
                [
                    ReviewedStudy(
                        st["study_uid"],
                        st.get("study_date", ""),
                        st.get("description", ""),
                        st.get("accession_number", ""),
                        [ReviewedSeries(**s) for s in st.get("series", [])],
                    )
                    for st in p.get("studies", [])
                ],
            )
            for p in data.get("patients", [])
        ]
        expected = data.get("expected")
        return cls(
            inputs=list(data.get("inputs", [])),
            analysed=int(data.get("analysed", 0)),
            ignored=[
                IgnoredFile(i["name"], IgnoreReason(i["reason"]), i.get("detail", ""))
                for i in data.get("ignored", [])
            ],
            failures=[
                FailedInput(f["name"], FailureKind(f["kind"]), f["detail"])
                for f in data.get("failures", [])
            ],
            patients=patients,
            flags=[
                Flag(
                    FlagKind(f["kind"]),
                    f["series_uid"],
                    f["field"],
                    f["expected"],
                    f["found"],
                    f["message"],
                )
                for f in data.get("flags", [])
            ],
            expected=ExpectedSubject(**expected) if expected else None,
        )

    def lines(self, *, selected: Iterable[str] | None = None) -> list[str]:
        """The tree as text lines, ``[x]`` before each selected series."""
        chosen = set(self.default_selection() if selected is None else selected)
        by_series: dict[str, list[Flag]] = {}
        for flag in self.flags:
            by_series.setdefault(flag.series_uid, []).append(flag)
        out = [
            f"review of {', '.join(self.inputs)}: {self.analysed} file(s) analysed, "
            f"{len(self.series())} series, {len(self.ignored)} ignored, "
            f"{len(self.failures)} failed input(s)"
        ]
        for patient in self.patients:
            out.append(
                f"patient {patient.patient_id or '(empty Patient ID)'}  {patient.patient_name}  "
                f"sex {patient.sex or '-'}  born {patient.birth_date or '-'}"
            )
            for study in patient.studies:
                out.append(
                    f"  study {study.study_uid}  {study.study_date or '-'}  "
                    f"{study.description!r}  accession {study.accession_number or '-'}"
                )
                for s in study.series:
                    mark = "[x]" if s.series_uid in chosen else "[ ]"
                    held = "  (already in the project)" if s.in_project else ""
                    out.append(
                        f"    {mark} {s.series_uid}  {s.modality or '?'} #{s.series_number or '-'}"
                        f"  {s.description!r}  {s.series_date or '-'}  {s.instances} instance(s)"
                        f", {s.bytes} bytes{held}"
                    )
                    for ref in s.references:
                        out.append(f"          -> references {ref}")
                    for ref in s.unresolved:
                        out.append(f"          -> references {ref} (not among these files)")
                    for flag in by_series.get(s.series_uid, []):
                        need = " (needs an override)" if flag.needs_override else ""
                        out.append(f"          ! {flag.message}{need}")
        for flag in by_series.get("", []):
            out.append(f"! {flag.message}")
        for failure in self.failures:
            out.append(f"FAILED {failure.name}: {failure.kind.value}: {failure.detail}")
        if self.ignored:
            out.append(f"ignored ({len(self.ignored)}):")
            out.extend(
                f"  {i.name}: {i.reason.value}" + (f" ({i.detail})" if i.detail else "")
                for i in self.ignored
            )
        return out


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
