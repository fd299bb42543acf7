"""The typed outcome of an import: what was found, imported, ignored (and why), and the series."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any


class IgnoreReason(StrEnum):
    """Why a file found by an import was not imported."""

    #: No ``DICM`` prefix at byte 128: not a DICOM Part 10 file.
    NOT_DICOM = "not DICOM"
    #: The name does not end with the extension asked for.
    WRONG_EXTENSION = "wrong extension"
    #: A DICOM file that cannot be parsed (kept in the spool's problem area).
    UNREADABLE = "unreadable"
    #: A Study/Series/SOP Instance UID is missing or malformed (kept in the problem area).
    BAD_UID = "bad UID"
    #: A media directory (DICOMDIR), which indexes files but is not an instance.
    DICOMDIR = "DICOMDIR"
    #: An archive nested deeper than ``uploads.nested_zip_depth``: not unpacked.
    NESTED_TOO_DEEP = "nested archive too deep"
    #: Its series was not in the selection of a reviewed import.
    NOT_SELECTED = "not selected"


class FailureKind(StrEnum):
    """Why a whole input (an archive, a path) could not be imported; the import fails."""

    CORRUPT_ARCHIVE = "corrupt archive"
    UNSAFE_ARCHIVE = "unsafe archive entry"
    ARCHIVE_TOO_LARGE = "archive too large"
    MISSING = "missing input"


class ImportOutcome(StrEnum):
    """The verdict of an import."""

    #: At least one instance was imported and no input failed.
    IMPORTED = "imported"
    #: Nothing failed, but no DICOM instance was found.
    NO_DICOM = "no DICOM found"
    #: An input failed (corrupt, unsafe or too large archive); see ``failures``.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class IgnoredFile:
    """A file that was found and not imported."""

    name: str
    reason: IgnoreReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FailedInput:
    """An input that could not be read to the end."""

    name: str
    kind: FailureKind
    detail: str


@dataclass(slots=True)
class SeriesSummary:
    """A series the import put into batches."""

    series_instance_uid: str
    study_instance_uid: str
    modality: str = ""
    description: str = ""
    instances: int = 0


@dataclass(frozen=True, slots=True)
class ImportedInstance:
    """An instance the import made durable, as verification checks it in the PACS.

    ``digest`` is :func:`~dicomflow.dicom.instance.dataset_digest` of the file given.
    """

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    digest: str


@dataclass
class ImportReport:
    """What an import did, for the run's log, the Data Upload page and ``dicomflow import``.

    Attributes
    ----------
    project, dataset
        Where the instances went.
    extension
        The extension files had to have (empty: DICOM detected by content).
    found
        Files considered, archives unpacked (archives themselves are not counted).
    imported, imported_bytes
        Instances made durable in the spool.
    ignored
        Files found and not imported, with the reason for each.
    failures
        Inputs that failed (corrupt, unsafe or oversized archives).
    series
        Series the instances belong to.
    batches
        Spool batches holding the instances, each handed over for processing (the
        dispatcher gives it to Airflow; ``dicomflow batches`` shows where it is).
    warnings
        Anything else worth reading.
    uploaded
        Files read from the uploads area (imports of uploads only).
    selection
        The Series Instance UIDs asked for (a reviewed import); empty: everything found.
    overrides
        Flags of the selected series that were overridden (subject mismatches).
    instances
        Each imported instance with the digest verification compares with the PACS.
    verification
        The verification's outcome (see :mod:`dicomflow.importer.verify`), once it ran.
    """

    project: str
    dataset: str
    extension: str
    started_at: str = ""
    finished_at: str = ""
    found: int = 0
    imported: int = 0
    imported_bytes: int = 0
    ignored: list[IgnoredFile] = field(default_factory=list)
    failures: list[FailedInput] = field(default_factory=list)
    series: list[SeriesSummary] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    uploaded: int = 0
    selection: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    instances: list[ImportedInstance] = field(default_factory=list)
    verification: dict[str, Any] | None = None

    @property
    def outcome(self) -> ImportOutcome:
        """The verdict: failed, no DICOM found, or imported."""
        if self.failures:
            return ImportOutcome.FAILED
        if self.imported == 0:
            return ImportOutcome.NO_DICOM
        return ImportOutcome.IMPORTED

    def ignored_by_reason(self) -> dict[str, int]:
        """How many files were ignored per reason."""
        counts: dict[str, int] = {}
        for item in self.ignored:
            counts[item.reason.value] = counts.get(item.reason.value, 0) + 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (the page reads it)."""
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["ignored_by_reason"] = self.ignored_by_reason()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        """Inverse of :meth:`as_dict`."""
        # Reports kept by versions before the dispatcher listed trigger states.
        # Derived keys (outcome, counts, ...) and those of older versions (trigger states)
        # are not fields; the lists of records are rebuilt below.
        records = ("ignored", "failures", "series", "instances")
        known = {f.name for f in fields(cls)} - set(records)
        plain = {k: v for k, v in data.items() if k in known}
        return cls(
            **plain,
            ignored=[
                IgnoredFile(i["name"], IgnoreReason(i["reason"]), i.get("detail", ""))
                for i in data.get("ignored", [])
            ],
            failures=[
                FailedInput(f["name"], FailureKind(f["kind"]), f["detail"])
                for f in data.get("failures", [])
            ],
            series=[SeriesSummary(**s) for s in data.get("series", [])],
            instances=[ImportedInstance(**i) for i in data.get("instances", [])],
        )

    def lines(self, *, max_ignored: int = 200) -> list[str]:
        """The report as text lines (the run's log, the CLI)."""
        ext = repr(self.extension) if self.extension else "any name (detected by content)"
        out = [
            f"import into project {self.project!r} as dataset {self.dataset!r}, "
            f"files: {ext}: {self.outcome.value.upper()}",
            f"  files found: {self.found}, imported: {self.imported} "
            f"({self.imported_bytes} bytes), ignored: {len(self.ignored)}, "
            f"failed inputs: {len(self.failures)}",
        ]
        verified = self.verification.get("verified") if self.verification else None
        out.append(
            f"  Analysed {self.found} / Uploaded {self.uploaded if self.uploaded else '-'} / "
            f"Imported {self.imported} / Verified {'-' if verified is None else verified}"
        )
        if self.verification:
            out.append(
                f"  verification: {self.verification.get('state')}, "
                f"{len(self.verification.get('missing') or [])} missing, "
                f"{len(self.verification.get('different') or [])} different in the PACS"
            )
        if self.selection:
            out.append(f"  selection: {len(self.selection)} series asked for")
        out.extend(f"  OVERRIDDEN: {flag}" for flag in self.overrides)
        for failure in self.failures:
            out.append(f"  FAILED {failure.name}: {failure.kind.value}: {failure.detail}")
        if self.outcome is ImportOutcome.NO_DICOM:
            out.append("  no DICOM found: nothing was imported")
        if self.series:
            out.append(f"  series ({len(self.series)}):")
            for s in self.series:
                label = " ".join(x for x in (s.modality, repr(s.description)) if x and x != "''")
                out.append(
                    f"    {s.series_instance_uid}  {label}  {s.instances} instances "
                    f"(study {s.study_instance_uid})"
                )
        if self.ignored:
            counts = ", ".join(f"{n} {r}" for r, n in sorted(self.ignored_by_reason().items()))
            out.append(f"  ignored ({counts}):")
            for item in self.ignored[:max_ignored]:
                detail = f" ({item.detail})" if item.detail else ""
                out.append(f"    {item.name}: {item.reason.value}{detail}")
            if len(self.ignored) > max_ignored:
                out.append(f"    ... and {len(self.ignored) - max_ignored} more")
        if self.batches:
            out.append(
                f"  batches ({len(self.batches)}), handed over for processing "
                "(`dicomflow batches` shows their state):"
            )
            out.extend(f"    {batch}" for batch in self.batches)
        out.extend(f"  warning: {w}" for w in self.warnings)
        return out
