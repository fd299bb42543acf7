"""Results of converting an import folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dicomflow.nifti.enums import CaseStatus, Layout
from dicomflow.nifti.seg import SegmentationResult
from dicomflow.nifti.series import ImageSeries

__all__ = ["CaseResult", "ConversionReport"]


@dataclass
class CaseResult:
    """Outcome of one case.

    Attributes
    ----------
    case_id : str
        Case name.
    status : CaseStatus
        OK or FAILED.
    sources : list of pathlib.Path
        Input files of the case.
    output_dir : pathlib.Path or None
        Folder holding the case's DICOM files (removed again when it failed).
    series : list of ImageSeries
        Written image series.
    segmentation : SegmentationResult or None
        Written SEG, if the case has a label map.
    reason : str or None
        Why it failed (names file, key and line where known).
    error_type : str or None
        Class name of the error that made it fail.
    warnings : list of str
        Things worth knowing that did not stop the case.
    """

    case_id: str
    status: CaseStatus
    sources: list[Path] = field(default_factory=list)
    output_dir: Path | None = None
    series: list[ImageSeries] = field(default_factory=list)
    segmentation: SegmentationResult | None = None
    reason: str | None = None
    error_type: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the case converted."""
        return self.status is CaseStatus.OK

    @property
    def files(self) -> list[Path]:
        """Every written file (image slices, then the SEG)."""
        written = [f for s in self.series for f in s.files]
        if self.segmentation is not None:
            written.append(self.segmentation.path)
        return written

    @property
    def series_uids(self) -> list[str]:
        """Series Instance UIDs of the image series and the SEG."""
        uids = [s.series_uid for s in self.series]
        if self.segmentation is not None:
            uids.append(self.segmentation.series_uid)
        return uids

    def to_dict(self) -> dict[str, object]:
        """Plain-type form (JSON-serialisable) for XCom, CLI output and logs."""
        return {
            "case_id": self.case_id,
            "status": self.status.value,
            "sources": [str(p) for p in self.sources],
            "output_dir": str(self.output_dir) if self.output_dir else None,
            "series": [s.to_dict() for s in self.series],
            "segmentation": self.segmentation.to_dict() if self.segmentation else None,
            "reason": self.reason,
            "error_type": self.error_type,
            "warnings": list(self.warnings),
        }


@dataclass
class ConversionReport:
    """Outcome of an import: one entry per case, good cases regardless of bad ones.

    Attributes
    ----------
    source : pathlib.Path
        Import folder or file.
    out_dir : pathlib.Path
        Output root (one sub-folder per case).
    layout : Layout
        Detected layout.
    cases : list of CaseResult
        Per-case outcomes, in case order.
    warnings : list of str
        Import-wide notes (ignored files, unmatched metadata keys...).
    """

    source: Path
    out_dir: Path
    layout: Layout
    cases: list[CaseResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> list[CaseResult]:
        """Cases that converted."""
        return [c for c in self.cases if c.ok]

    @property
    def failed(self) -> list[CaseResult]:
        """Cases that did not convert."""
        return [c for c in self.cases if not c.ok]

    @property
    def all_ok(self) -> bool:
        """Whether every case converted (and there was at least one)."""
        return bool(self.cases) and not self.failed

    def case(self, case_id: str) -> CaseResult:
        """The result of case ``case_id`` (``KeyError`` if there is none)."""
        for result in self.cases:
            if result.case_id == case_id:
                return result
        raise KeyError(case_id)

    def summary(self) -> str:
        """One line per case, for logs and the CLI."""
        lines = [
            f"{self.layout.value} import of {self.source}: {len(self.ok)} ok, "
            f"{len(self.failed)} failed"
        ]
        for case in self.cases:
            if case.ok:
                lines.append(
                    f"  ok      {case.case_id}: {len(case.series)} series, "
                    f"{'1 SEG' if case.segmentation else 'no SEG'}"
                )
            else:
                lines.append(f"  FAILED  {case.case_id}: {case.reason}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        """Plain-type form (JSON-serialisable)."""
        return {
            "source": str(self.source),
            "out_dir": str(self.out_dir),
            "layout": self.layout.value,
            "n_ok": len(self.ok),
            "n_failed": len(self.failed),
            "cases": [c.to_dict() for c in self.cases],
            "warnings": list(self.warnings),
        }
