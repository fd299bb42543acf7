"""The typed outcome of a NIfTI import: per source folder, per case, and the DICOM import."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from dicomflow.importer.report import ImportReport

__all__ = [
    "NIFTI_REPORT_KIND",
    "NiftiCase",
    "NiftiImportOutcome",
    "NiftiImportReport",
    "NiftiSource",
]

#: The ``kind`` of a stored NIfTI import report (a DICOM import's report has none).
NIFTI_REPORT_KIND = "nifti"


class NiftiImportOutcome(StrEnum):
    """The verdict of a NIfTI import."""

    #: Every case converted and its instances are in the spool; nothing failed.
    IMPORTED = "imported"
    #: Some cases were imported, some cases or folders failed (named in the report).
    PARTIAL = "partial"
    #: Nothing was imported: every case or folder failed.
    FAILED = "failed"
    #: Nothing failed, but no NIfTI volume was found.
    NO_NIFTI = "no NIfTI found"


@dataclass(slots=True)
class NiftiSource:
    """One folder (basic or nnU-Net layout) or input that was converted, or failed as a whole.

    Attributes
    ----------
    name
        How the user knows it: the path given, ``<archive>!<folder>``, ``<upload id>/<path>``.
    layout
        ``basic``, ``nnunet`` or ``single_file``; empty when the layout was not recognised.
    error, error_type
        Why the whole folder failed (malformed ``meta_data.json``, nnU-Net folder without
        ``dataset.json``, corrupt archive...); empty when its cases were converted.
    warnings
        Ignored files and other notes of the conversion.
    """

    name: str
    layout: str = ""
    error: str = ""
    error_type: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class NiftiCase:
    """One case (a volume, its channels and its label map) of a source.

    Attributes
    ----------
    source
        The :class:`NiftiSource` name.
    case_id
        The case (file stem or nnU-Net case identifier).
    ok
        Whether it converted (its instances then went to the spool).
    reason, error_type
        Why it failed (names file, key and line where known).
    series
        Series Instance UIDs of its image series.
    seg_series
        Series Instance UID of its SEG; empty when it has none.
    warnings
        Notes that did not stop it (e.g. float voxels quantised).
    """

    source: str
    case_id: str
    ok: bool
    reason: str = ""
    error_type: str = ""
    series: list[str] = field(default_factory=list)
    seg_series: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``<source>: <case>``, how lines and failures name it."""
        return f"{self.source}: {self.case_id}"


@dataclass
class NiftiImportReport:
    """What a NIfTI import did, for the run's log, the Data Upload page and the CLI.

    Attributes
    ----------
    project, dataset
        Where the instances went.
    options
        The conversion choices (default modality, unknown labels, 4D policy).
    sources
        Folders converted or failed as a whole.
    cases
        Cases converted or failed.
    dicom
        The import of the converted DICOM files into the spool (batches, triggered runs).
    started_at, finished_at
        UTC ISO timestamps.
    """

    project: str
    dataset: str
    options: dict[str, str]
    dicom: ImportReport
    sources: list[NiftiSource] = field(default_factory=list)
    cases: list[NiftiCase] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""

    @property
    def ok_cases(self) -> list[NiftiCase]:
        """Cases converted and handed to the spool."""
        return [c for c in self.cases if c.ok]

    @property
    def failed_cases(self) -> list[NiftiCase]:
        """Cases that did not convert."""
        return [c for c in self.cases if not c.ok]

    @property
    def failed_sources(self) -> list[NiftiSource]:
        """Folders and inputs that failed as a whole."""
        return [s for s in self.sources if s.error]

    def failures(self) -> list[str]:
        """Every failure, one line each: folders, cases, then the DICOM import's.

        A converted file that the spool's checks refuse counts: nothing of ours should be.
        """
        out = [f"{s.name}: {s.error}" for s in self.failed_sources]
        out += [f"{c.name}: {c.reason}" for c in self.failed_cases]
        out += [f"{f.name}: {f.detail}" for f in self.dicom.failures]
        out += [f"{i.name}: {i.reason.value} ({i.detail})" for i in self.dicom.ignored]
        return out

    @property
    def outcome(self) -> NiftiImportOutcome:
        """Imported, partial, failed, or no NIfTI found."""
        imported = bool(self.ok_cases) and self.dicom.imported > 0
        if self.failures():
            return NiftiImportOutcome.PARTIAL if imported else NiftiImportOutcome.FAILED
        return NiftiImportOutcome.IMPORTED if imported else NiftiImportOutcome.NO_NIFTI

    @property
    def series(self) -> list[dict[str, Any]]:
        """The series put into the spool (as the DICOM import's report lists them)."""
        return [asdict(s) for s in self.dicom.series]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping; ``outcome`` and ``series`` read like a DICOM import's."""
        return {
            "kind": NIFTI_REPORT_KIND,
            "project": self.project,
            "dataset": self.dataset,
            "options": dict(self.options),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome.value,
            "sources": [asdict(s) for s in self.sources],
            "cases": [asdict(c) for c in self.cases],
            "failures": self.failures(),
            "series": self.series,
            "dicom": self.dicom.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NiftiImportReport:
        """Inverse of :meth:`as_dict`."""
        return cls(
            project=data["project"],
            dataset=data["dataset"],
            options=dict(data.get("options", {})),
            dicom=ImportReport.from_dict(data["dicom"]),
            sources=[NiftiSource(**s) for s in data.get("sources", [])],
            cases=[NiftiCase(**c) for c in data.get("cases", [])],
            started_at=data.get("started_at", ""),
            finished_at=data.get("finished_at", ""),
        )

    def lines(self, *, max_warnings: int = 50) -> list[str]:
        """The report as text lines (the run's log, the CLI, the upload page)."""
        opts = ", ".join(f"{k} {v}" for k, v in self.options.items())
        out = [
            f"NIfTI import into project {self.project!r} as dataset {self.dataset!r} "
            f"({opts}): {self.outcome.value.upper()}",
            f"  cases: {len(self.ok_cases)} imported, {len(self.failed_cases)} failed; "
            f"folders failed as a whole: {len(self.failed_sources)}",
        ]
        for source in self.failed_sources:
            out.append(f"  FAILED {source.name}: {source.error_type}: {source.error}")
        for case in self.failed_cases:
            out.append(f"  FAILED {case.name}: {case.error_type}: {case.reason}")
        for case in self.ok_cases:
            seg = ", SEG" if case.seg_series else ""
            out.append(f"  ok     {case.name}: {len(case.series)} image series{seg}")
        if self.outcome is NiftiImportOutcome.NO_NIFTI:
            out.append("  no NIfTI volume found: nothing was imported")
        warnings = [f"{s.name}: {w}" for s in self.sources for w in s.warnings]
        warnings += [f"{c.name}: {w}" for c in self.cases for w in c.warnings]
        out.extend(f"  warning: {w}" for w in warnings[:max_warnings])
        if len(warnings) > max_warnings:
            out.append(f"  ... and {len(warnings) - max_warnings} more warnings")
        out.append("  DICOM import of the converted files:")
        out.extend("  " + line for line in self.dicom.lines())
        return out
