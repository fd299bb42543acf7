"""Converting a whole import folder, case by case."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydicom.tag import BaseTag, Tag

from dicomflow.nifti.enums import CaseStatus, Modality
from dicomflow.nifti.errors import NiftiImportError
from dicomflow.nifti.layout import CaseSpec, ChannelFile, ImportPlan, plan_import
from dicomflow.nifti.options import NiftiImportOptions
from dicomflow.nifti.report import CaseResult, ConversionReport
from dicomflow.nifti.seg import labelmap_to_seg
from dicomflow.nifti.series import ImageSeries, SeriesIdentity, volume_to_series
from dicomflow.nifti.tags import TagValue
from dicomflow.nifti.uids import derive_uid, file_digest
from dicomflow.nifti.volume import load_labelmap, load_volume

__all__ = ["convert_case", "convert_folder"]

logger = logging.getLogger(__name__)

_PATIENT_ID = Tag(0x0010, 0x0020)
_PATIENT_NAME = Tag(0x0010, 0x0010)
_STUDY_ID = Tag(0x0020, 0x0010)
_STUDY_UID = Tag(0x0020, 0x000D)
_SERIES_UID = Tag(0x0020, 0x000E)
_FRAME_OF_REFERENCE_UID = Tag(0x0020, 0x0052)
_SERIES_NUMBER = Tag(0x0020, 0x0011)
_SERIES_DESCRIPTION = Tag(0x0008, 0x103E)
_MODALITY = Tag(0x0008, 0x0060)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "series"


def _tag(tags: dict[BaseTag, TagValue], tag: BaseTag) -> str | None:
    value = tags.get(tag)
    return None if value is None or value.value in ("", None) else str(value.value)


class _CaseConverter:
    """Converts one case; keeps the counters and identities its series share."""

    def __init__(
        self,
        case: CaseSpec,
        plan: ImportPlan,
        out_dir: Path,
        options: NiftiImportOptions,
        when: datetime,
    ) -> None:
        self.case = case
        self.plan = plan
        self.out = out_dir / _slug(case.case_id)
        self.options = options
        self.when = when
        self.series_number = 0
        self.digests = {c.path: file_digest(c.path) for c in case.images}
        self.case_digest = hashlib.sha256(
            "".join(self.digests[c.path] for c in case.images).encode()
        ).hexdigest()

    def _uid(self, *parts: str) -> str:
        return derive_uid(
            self.options.uid_prefix, self.options.uid_namespace, self.case.case_id, *parts
        )

    def _identity(
        self, tags: dict[BaseTag, TagValue], channel: ChannelFile, index: int, count: int
    ) -> SeriesIdentity:
        case_id = self.case.case_id
        self.series_number += 1
        given_series_uid = _tag(tags, _SERIES_UID)
        digest = self.digests[channel.path]
        if given_series_uid and count == 1:
            series_uid = given_series_uid
        elif given_series_uid:
            series_uid = self._uid("series", given_series_uid, str(index))
        else:
            series_uid = self._uid("series", digest, str(index))
        default_description = case_id if channel.name == "image" else channel.name
        description = _tag(tags, _SERIES_DESCRIPTION) or default_description
        if count > 1:
            description = f"{description} (volume {index + 1} of {count})"
        number = _tag(tags, _SERIES_NUMBER)
        patient_id = case_id if len(case_id) <= 64 else "NIFTI-" + self.case_digest[:24]
        return SeriesIdentity(
            patient_id=_tag(tags, _PATIENT_ID) or patient_id,
            patient_name=_tag(tags, _PATIENT_NAME) or f"{patient_id[:63]}^",
            study_id=_tag(tags, _STUDY_ID) or case_id[:16],
            study_uid=_tag(tags, _STUDY_UID) or self._uid("study", self.case_digest),
            series_uid=series_uid,
            frame_of_reference_uid=(
                _tag(tags, _FRAME_OF_REFERENCE_UID) or self._uid("frame", self.case_digest)
            ),
            series_number=int(number) if number else self.series_number,
            series_description=description[:64],
            study_datetime=self.when,
        )

    def _channel(self, channel: ChannelFile, result: CaseResult) -> list[ImageSeries]:
        tags = self.plan.meta.tags_for(channel.path.name)
        volume = load_volume(channel.path, four_d=self.options.four_d)
        result.warnings.extend(f"{channel.path}: {w}" for w in volume.warnings)
        tagged = _tag(tags, _MODALITY)
        modality = Modality(tagged) if tagged else channel.modality or self.options.default_modality
        folder = "image"
        if channel.name != "image":
            folder = f"{channel.index:04d}_{_slug(channel.name)}"
        written = []
        for index in range(volume.n_volumes):
            identity = self._identity(tags, channel, index, volume.n_volumes)
            name = folder if volume.n_volumes == 1 else f"{folder}_vol{index + 1:04d}"
            written.append(
                volume_to_series(
                    volume.volume(index),
                    volume.affine,
                    self.out / name,
                    modality=modality,
                    identity=identity,
                    tags=tags,
                    nifti_scaling=volume.scaling,
                    uid_prefix=self.options.uid_prefix,
                    manufacturer=self.options.manufacturer,
                    orthogonality_tolerance=self.options.orthogonality_tolerance,
                    source=channel.path,
                    volume_index=index if volume.n_volumes > 1 else None,
                )
            )
        return written

    def run(self) -> CaseResult:
        case = self.case
        result = CaseResult(
            case.case_id,
            CaseStatus.OK,
            sources=[c.path for c in case.images] + ([case.labelmap] if case.labelmap else []),
            output_dir=self.out,
        )
        if self.out.exists():
            # A re-run replaces the case: the UIDs are the same, stale files must go.
            shutil.rmtree(self.out)
        for channel in case.images:
            result.series.extend(self._channel(channel, result))
        if case.labelmap is not None:
            if self.plan.seg_info is None:
                raise NiftiImportError(
                    "label map found but no label description", path=case.labelmap
                )
            labels, label_affine = load_labelmap(case.labelmap)
            reference = result.series[0]
            result.segmentation = labelmap_to_seg(
                labels,
                reference,
                self.plan.seg_info,
                self.out / "seg" / "seg.dcm",
                label_affine=label_affine,
                unknown_labels=self.options.unknown_labels,
                series_uid=self._uid("seg", reference.series_uid, file_digest(case.labelmap)),
                series_number=self.series_number + 1,
                uid_prefix=self.options.uid_prefix,
                manufacturer=self.options.manufacturer,
                grid_tolerance_mm=self.options.grid_tolerance_mm,
                source=case.labelmap,
            )
        return result


def convert_case(
    case: CaseSpec,
    plan: ImportPlan,
    out_dir: Path,
    *,
    options: NiftiImportOptions | None = None,
    when: datetime | None = None,
) -> CaseResult:
    """Convert one case of an import plan; never raises for bad input.

    Parameters
    ----------
    case : CaseSpec
        The case (from :func:`~dicomflow.nifti.layout.plan_import`).
    plan : ImportPlan
        The plan it belongs to (metadata, label description).
    out_dir : pathlib.Path
        Output root; the case is written to ``out_dir / case_id``, replacing
        an earlier run's files.
    options : NiftiImportOptions or None, optional
        Import options.
    when : datetime or None, optional
        Study date/time when not tagged (default: ``options.study_datetime`` or now).

    Returns
    -------
    CaseResult
        OK with written series and SEG, or FAILED with the reason (its partial
        output removed).
    """
    options = options or NiftiImportOptions()
    when = when or options.study_datetime or datetime.now().replace(microsecond=0)
    sources = [c.path for c in case.images] + ([case.labelmap] if case.labelmap else [])
    if case.problem is not None:
        return CaseResult(
            case.case_id,
            CaseStatus.FAILED,
            sources=sources,
            reason=str(case.problem),
            error_type=type(case.problem).__name__,
        )
    converter: _CaseConverter | None = None
    try:
        converter = _CaseConverter(case, plan, out_dir, options, when)
        return converter.run()
    except Exception as exc:
        # One bad case must not stop the others; unexpected errors are logged
        # with their traceback as they may be bugs rather than bad input.
        if not isinstance(exc, NiftiImportError):
            logger.exception("unexpected error converting case %s", case.case_id)
        if converter is not None and converter.out.exists():
            shutil.rmtree(converter.out)
        return CaseResult(
            case.case_id,
            CaseStatus.FAILED,
            sources=sources,
            reason=str(exc),
            error_type=type(exc).__name__,
        )


def convert_folder(
    src: Path,
    out_dir: Path,
    *,
    options: NiftiImportOptions | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
) -> ConversionReport:
    """Convert every case of an import folder (or a single NIfTI file) to DICOM.

    Parameters
    ----------
    src : pathlib.Path
        Folder in basic or nnU-Net v2 layout, or one ``.nii``/``.nii.gz`` file.
    out_dir : pathlib.Path
        Output root; each case goes to ``out_dir / <case_id>/`` with one folder
        per image series (one file per slice) and ``seg/seg.dcm``.
    options : NiftiImportOptions or None, optional
        Import options.
    on_case : callable or None, optional
        Called with each case's result as soon as it is converted, e.g. to hand
        its files on and delete them before the next case is written.

    Returns
    -------
    ConversionReport
        Per case: OK with files and UIDs, or FAILED with the reason. Good cases
        are converted whatever happens to the others.

    Raises
    ------
    LayoutError, MissingFileError
        If ``src`` has no convertible layout or lacks a required file.
    MetadataError
        If a folder-wide side file is invalid (malformed JSON, a bad global
        tag, a bad label description): every case depends on it. Errors in one
        file's ``series_tags`` only fail that case.
    """
    options = options or NiftiImportOptions()
    plan = plan_import(src, options)
    when = options.study_datetime or datetime.now().replace(microsecond=0)
    report = ConversionReport(src, out_dir, plan.layout, warnings=list(plan.warnings))
    out_dir.mkdir(parents=True, exist_ok=True)
    for case in plan.cases:
        result = convert_case(case, plan, out_dir, options=options, when=when)
        logger.info(
            "case %s: %s%s",
            case.case_id,
            result.status.value,
            f" ({result.reason})" if result.reason else "",
        )
        report.cases.append(result)
        if on_case is not None:
            on_case(result)
    return report
