"""Writing a NIfTI label map as a DICOM Segmentation of its image series."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.sr.codedict import codes

from dicomflow.nifti.enums import UnknownLabelPolicy
from dicomflow.nifti.errors import GridMismatchError, LabelMapError, UnknownLabelError
from dicomflow.nifti.labels import LabelDescription, SegInfo
from dicomflow.nifti.options import DEFAULT_UID_PREFIX
from dicomflow.nifti.series import ImageSeries, software_version
from dicomflow.nifti.uids import derive_uid

__all__ = ["Segment", "SegmentationResult", "labelmap_to_seg", "seg_to_labelmap"]

_MAX_LISTED = 10


@dataclass(frozen=True)
class Segment:
    """One written segment.

    Attributes
    ----------
    number : int
        Segment Number in the SEG (1, 2, ...).
    label_value : int
        Value of the segment in the NIfTI label map.
    name : str
        Segment Label.
    coded : bool
        Whether the name was recognised and coded (else generic "Tissue").
    present : bool
        Whether any voxel has this label.
    """

    number: int
    label_value: int
    name: str
    coded: bool
    present: bool


@dataclass(frozen=True)
class SegmentationResult:
    """A written DICOM Segmentation.

    Attributes
    ----------
    path : pathlib.Path
        The SEG file.
    series_uid, sop_instance_uid : str
        Its UIDs.
    study_uid : str
        The study it shares with its image series.
    source_series_uid : str
        The image series it segments.
    segments : tuple of Segment
        Segments in number order.
    algorithm_type : highdicom.seg.SegmentAlgorithmTypeValues
        MANUAL for ground truth, AUTOMATIC otherwise.
    unknown_values : tuple of int
        Label values that were not described (only with
        :attr:`UnknownLabelPolicy.SEGMENT`).
    source : pathlib.Path or None
        The NIfTI label map, if any.
    """

    path: Path
    series_uid: str
    sop_instance_uid: str
    study_uid: str
    source_series_uid: str
    segments: tuple[Segment, ...]
    algorithm_type: hd.seg.SegmentAlgorithmTypeValues
    unknown_values: tuple[int, ...]
    source: Path | None = None

    def label_values(self) -> dict[int, int]:
        """Label map value of each segment number."""
        return {s.number: s.label_value for s in self.segments}

    def to_dict(self) -> dict[str, object]:
        """Plain-type summary for reports."""
        return {
            "path": str(self.path),
            "series_uid": self.series_uid,
            "sop_instance_uid": self.sop_instance_uid,
            "source_series_uid": self.source_series_uid,
            "algorithm_type": self.algorithm_type.value,
            "segments": [
                {
                    "number": s.number,
                    "label_value": s.label_value,
                    "name": s.name,
                    "coded": s.coded,
                    "present": s.present,
                }
                for s in self.segments
            ],
            "unknown_values": list(self.unknown_values),
            "source": str(self.source) if self.source else None,
        }


def _present_values(labels: npt.NDArray[np.integer]) -> list[int]:
    """Non-zero values occurring in ``labels``."""
    if labels.size == 0:
        return []
    high = int(labels.max())
    if high < 1 << 16:
        # Counting is linear where np.unique sorts every voxel; per slice, because
        # bincount widens its input to int64 (8x the memory of a uint8 map).
        counts = np.zeros(high + 1, dtype=np.int64)
        for k in range(labels.shape[-1]):
            counts += np.bincount(labels[..., k].ravel(), minlength=high + 1)
        return [int(v) for v in np.flatnonzero(counts) if v != 0]
    return [int(v) for v in np.unique(labels) if v != 0]


def _check_grid(
    labels: npt.NDArray[np.integer],
    label_affine: npt.NDArray[np.float64] | None,
    series: ImageSeries,
    tolerance_mm: float,
    path: Path | None,
) -> None:
    image = str(series.source) if series.source else "its image"
    if tuple(labels.shape) != series.grid_shape:
        raise GridMismatchError(
            f"label map shape {tuple(labels.shape)} differs from the image grid "
            f"{series.grid_shape} of {image}",
            path=path,
        )
    if label_affine is not None:
        diff = float(np.max(np.abs(np.asarray(label_affine) - series.affine)))
        if diff > tolerance_mm:
            raise GridMismatchError(
                f"label map affine differs from the affine of {image} by up to {diff:.4g} mm "
                f"(tolerance {tolerance_mm:g} mm)",
                path=path,
            )


def _descriptions(
    labels: tuple[LabelDescription, ...], seg_info: SegInfo
) -> list[hd.seg.SegmentDescription]:
    if seg_info.manual:
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.MANUAL
        identification = None
    else:
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        identification = hd.AlgorithmIdentificationSequence(
            name=str(seg_info.algorithm)[:64],
            family=codes.cid7162.ArtificialIntelligence,
            version=seg_info.algorithm_version[:64] or "unknown",
        )
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label.name[:64],
            segmented_property_category=label.category,
            segmented_property_type=label.property_type,
            algorithm_type=algorithm_type,
            algorithm_identification=identification,
            display_color=hd.color.CIELabColor.from_rgb(*label.rgb),
        )
        for number, label in enumerate(labels, start=1)
    ]


def labelmap_to_seg(
    labels: npt.NDArray[np.integer],
    series: ImageSeries,
    seg_info: SegInfo,
    out_path: Path,
    *,
    label_affine: npt.NDArray[np.float64] | None = None,
    unknown_labels: UnknownLabelPolicy = UnknownLabelPolicy.ERROR,
    series_uid: str | None = None,
    series_number: int = 100,
    uid_prefix: str = DEFAULT_UID_PREFIX,
    manufacturer: str = "dicomflow",
    grid_tolerance_mm: float = 1e-3,
    source: Path | None = None,
) -> SegmentationResult:
    """Write a label map as a binary DICOM Segmentation of an image series.

    Every described label becomes one segment (numbered 1, 2, ... in ascending
    label value, so numbers agree across the cases of a dataset), whether or
    not it occurs in this label map; value 0 is background.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(ni, nj, nk)`` integer label map in NIfTI voxel order, on the grid
        of ``series``.
    series : ImageSeries
        The written image series it segments (frames follow its file order).
    seg_info : SegInfo
        What the label values mean and who made them.
    out_path : pathlib.Path
        SEG file to write (parent directories are created).
    label_affine : numpy.ndarray or None, optional
        RAS+ affine of the label map, compared with the image's.
    unknown_labels : UnknownLabelPolicy, optional
        Refuse undescribed values, or give each its own ``unknown`` segment.
    series_uid : str or None, optional
        Series Instance UID; derived from the source series and labels if ``None``.
    series_number : int, optional
        Series Number of the SEG.
    uid_prefix : str, optional
        Root of derived UIDs.
    manufacturer : str, optional
        Manufacturer of the SEG (this converter).
    grid_tolerance_mm : float, optional
        Largest accepted difference between the two affines.
    source : pathlib.Path or None, optional
        The NIfTI label map, for messages and the result.

    Returns
    -------
    SegmentationResult
        File, UIDs and segments.

    Raises
    ------
    GridMismatchError
        If shape or affine differ from the image grid.
    UnknownLabelError
        If values are not described and ``unknown_labels`` is ERROR.
    LabelMapError
        If the label map is not an integer array.
    """
    if labels.dtype.kind not in "iu":
        raise LabelMapError(f"label map must hold integers, got {labels.dtype}", path=source)
    _check_grid(labels, label_affine, series, grid_tolerance_mm, source)
    present = _present_values(labels)
    described = seg_info.by_value()
    unknown = [v for v in present if v not in described]
    if unknown and unknown_labels is UnknownLabelPolicy.ERROR:
        listed = ", ".join(str(v) for v in unknown[:_MAX_LISTED])
        more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
        where = f" in {seg_info.path}" if seg_info.path else ""
        raise UnknownLabelError(
            f"label value(s) {listed}{more} are not described{where} "
            "(switch: unknown_labels=segment)",
            path=source,
        )
    all_labels = sorted(
        [*seg_info.labels]
        + [
            LabelDescription.make(v, f"unknown (label {v})", len(seg_info.labels) + n)
            for n, v in enumerate(unknown)
        ],
        key=lambda label: label.value,
    )
    # Segment numbers must run 1..n; map label values onto them.
    high = max(int(labels.max()) if labels.size else 0, all_labels[-1].value)
    lut = np.zeros(high + 1, dtype=np.uint8 if len(all_labels) < 256 else np.uint16)
    for number, label in enumerate(all_labels, start=1):
        lut[label.value] = number
    order = series.geometry.slice_order
    # Files run along k or against it (see SliceGeometry.slice_order): a view either way.
    in_file_order = labels if order[0] <= order[-1] else labels[:, :, ::-1]
    # Frames in file order; each is the transposed k slice, like the image frames.
    frames = lut[in_file_order.transpose(2, 1, 0)]

    uid = series_uid or derive_uid(
        uid_prefix, series.series_uid, "seg", *(f"{x.value}={x.name}" for x in all_labels)
    )
    sop_uid = derive_uid(uid_prefix, uid, "seg-instance", str(present))
    description = "Segmentation" if seg_info.manual else f"Segmentation ({seg_info.algorithm})"
    content = seg_info.body_part or description
    seg = hd.seg.Segmentation(
        source_images=list(series.headers),
        pixel_array=np.ascontiguousarray(frames),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_descriptions(tuple(all_labels), seg_info),
        series_instance_uid=uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name="dicomflow.nifti",
        software_versions=software_version(),
        device_serial_number="0",
        content_label="SEGMENTATION",
        content_description=content[:64],
        omit_empty_frames=True,
    )
    seg.SeriesDescription = description[:64]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out_path, enforce_file_format=True)
    present_set = set(present)
    return SegmentationResult(
        path=out_path,
        series_uid=uid,
        sop_instance_uid=sop_uid,
        study_uid=series.study_uid,
        source_series_uid=series.series_uid,
        segments=tuple(
            Segment(n, x.value, x.name, x.coded, x.value in present_set)
            for n, x in enumerate(all_labels, start=1)
        ),
        algorithm_type=(
            hd.seg.SegmentAlgorithmTypeValues.MANUAL
            if seg_info.manual
            else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        ),
        unknown_values=tuple(unknown),
        source=source,
    )


def seg_to_labelmap(seg_path: Path, series: ImageSeries) -> npt.NDArray[np.integer]:
    """Read a SEG back as a label map on the NIfTI grid of its image series.

    Parameters
    ----------
    seg_path : pathlib.Path
        SEG written by :func:`labelmap_to_seg` (or any binary SEG of ``series``).
    series : ImageSeries
        The image series the SEG references.

    Returns
    -------
    numpy.ndarray
        ``(ni, nj, nk)`` array of segment numbers (0 = background); map them
        to label values with :meth:`SegmentationResult.label_values`.
    """
    seg = hd.seg.segread(seg_path)
    sop_uids = [str(h.SOPInstanceUID) for h in series.headers]
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=sop_uids,
        combine_segments=True,
        skip_overlap_checks=True,
    )
    out = np.zeros(series.grid_shape, dtype=frames.dtype)
    for index, k in enumerate(series.geometry.slice_order):
        out[:, :, k] = frames[index].T
    return out
