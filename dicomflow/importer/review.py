"""Look before importing: read the headers of files, folders and zips, and show what is there.

A review reads only the headers (no pixel data) of every candidate file and gives a tree
patient -> study -> series, the files it ignored with the reason, the references between
series (an RTSTRUCT to its image series, an RTPLAN to its RTSTRUCT, an RTDOSE or RTIMAGE to its
RTPLAN, a SEG to its source series, an SR to what it cites), the series the project already
holds, and flags: series that disagree with the expected subject, several patients, an empty
Patient ID, study dates in the future. :meth:`Review.closure` is the selection rule: a selected
series brings what it references. Nothing is written anywhere; only the selection is imported
afterwards (:class:`~dicomflow.importer.importer.Importer` with ``series``).

This module holds what a review is; :mod:`dicomflow.importer.review_files` reads files into one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from dicomflow.importer.report import FailedInput, FailureKind, IgnoredFile, IgnoreReason

__all__ = [
    "ExpectedSubject",
    "Flag",
    "FlagKind",
    "Review",
    "ReviewedPatient",
    "ReviewedSeries",
    "ReviewedStudy",
    "SubjectMismatchError",
]


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
