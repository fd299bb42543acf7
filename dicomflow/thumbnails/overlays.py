"""Thumbnails of SEG and RTSTRUCT: segments or contours drawn over the referenced image.

Both kinds only make sense on top of the image they annotate, which lives in another
series; the caller passes that series' files. The slice shown is the one with the most
annotation on it (largest segmented area, most contour points), the most informative
single picture of a segmentation.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import pixel_array

from dicomflow.dicom.colours import distinct_rgb
from dicomflow.dicom.headers import HEADER_TAGS, read_header
from dicomflow.thumbnails.imaging import encode_png, resize_to_fit
from dicomflow.thumbnails.render import render_frame
from dicomflow.thumbnails.result import ThumbnailKind, ThumbnailResult

__all__ = [
    "ReferenceSlice",
    "cielab_to_rgb",
    "read_reference_slices",
    "rtstruct_thumbnail",
    "seg_thumbnail",
]

PathLike = str | os.PathLike[str]

_OVERLAY_ALPHA = 0.45
_POSITION_TOLERANCE_MM = 0.05


@dataclass(frozen=True, slots=True)
class ReferenceSlice:
    """Geometry of one frame of a referenced image series."""

    path: Path
    sop_instance_uid: str
    frame: int
    rows: int
    columns: int
    position: NDArray[np.float64] | None
    row_direction: NDArray[np.float64] | None
    column_direction: NDArray[np.float64] | None
    pixel_spacing: tuple[float, float] | None

    @property
    def normal(self) -> NDArray[np.float64] | None:
        """Unit normal of the image plane."""
        if self.row_direction is None or self.column_direction is None:
            return None
        return np.cross(self.row_direction, self.column_direction)


def _vector(value: Any, count: int) -> NDArray[np.float64] | None:
    try:
        numbers = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return numbers if numbers.size == count else None


def read_reference_slices(paths: Sequence[PathLike]) -> list[ReferenceSlice]:
    """Read the geometry of single-frame referenced images; unreadable files are skipped.

    Multi-frame references are listed frame by frame without geometry (matched by SOP
    Instance UID and frame number only).
    """
    slices: list[ReferenceSlice] = []
    for path in paths:
        try:
            ds = read_header(path, specific_tags=[*HEADER_TAGS, "PixelSpacing"])
            uid = str(ds.SOPInstanceUID)
            rows, columns = int(ds.Rows), int(ds.Columns)
        except Exception:  # a bad reference file must not cost the thumbnail
            continue
        frames_text = str(ds.get("NumberOfFrames", "")).strip()
        frames = int(frames_text) if frames_text.isdigit() and int(frames_text) > 0 else 1
        orientation = _vector(ds.get("ImageOrientationPatient") or (), 6)
        spacing = _vector(ds.get("PixelSpacing") or (), 2)
        single = frames == 1
        # Geometry of a multi-frame reference lives in its functional groups; such
        # frames are matched by UID and frame number only.
        position = _vector(ds.get("ImagePositionPatient") or (), 3) if single else None
        if not single:
            orientation = spacing = None
        for frame in range(frames):
            slices.append(
                ReferenceSlice(
                    path=Path(path),
                    sop_instance_uid=uid,
                    frame=frame,
                    rows=rows,
                    columns=columns,
                    position=position,
                    row_direction=orientation[:3] if orientation is not None else None,
                    column_direction=orientation[3:] if orientation is not None else None,
                    pixel_spacing=(float(spacing[0]), float(spacing[1]))
                    if spacing is not None
                    else None,
                )
            )
    return slices


def cielab_to_rgb(value: Sequence[int]) -> tuple[int, int, int]:
    """Convert a DICOM scaled CIELab triplet (PS3.3 C.10.7.1.1) to sRGB.

    DICOM stores L* scaled 0..100 -> 0..65535 and a*, b* scaled -128..127 -> 0..65535,
    relative to the D65 white point.
    """
    lightness = value[0] * 100.0 / 65535.0
    a = value[1] * 255.0 / 65535.0 - 128.0
    b = value[2] * 255.0 / 65535.0 - 128.0
    fy = (lightness + 16.0) / 116.0
    fx, fz = fy + a / 500.0, fy - b / 200.0

    def inverse(t: float) -> float:
        return t**3 if t > 6.0 / 29.0 else 3 * (6.0 / 29.0) ** 2 * (t - 4.0 / 29.0)

    x, y, z = 0.95047 * inverse(fx), 1.0 * inverse(fy), 1.08883 * inverse(fz)
    linear = (
        3.2406 * x - 1.5372 * y - 0.4986 * z,
        -0.9689 * x + 1.8758 * y + 0.0415 * z,
        0.0557 * x - 0.2040 * y + 1.0570 * z,
    )

    def gamma(c: float) -> int:
        c = min(max(c, 0.0), 1.0)
        c = 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055
        return round(c * 255)

    return gamma(linear[0]), gamma(linear[1]), gamma(linear[2])


def _segment_colours(seg: Dataset) -> dict[int, tuple[int, int, int]]:
    colours: dict[int, tuple[int, int, int]] = {}
    for position, item in enumerate(seg.get("SegmentSequence") or []):
        number = int(item.get("SegmentNumber", position + 1))
        lab = item.get("RecommendedDisplayCIELabValue")
        if lab is not None and len(lab) == 3:
            colours[number] = cielab_to_rgb([int(v) for v in lab])
        else:
            colours[number] = distinct_rgb(number - 1)
    return colours


def _frame_item(seg: Dataset, frame: int, sequence: str) -> Dataset | None:
    for groups_keyword, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = seg.get(groups_keyword)
        if groups and index < len(groups):
            macro = groups[index].get(sequence)
            if macro:
                item: Dataset = macro[0]
                return item
    return None


def _source_references(seg: Dataset, frame: int) -> list[tuple[str, int]]:
    groups = seg.get("PerFrameFunctionalGroupsSequence")
    if not groups or frame >= len(groups):
        return []
    refs: list[tuple[str, int]] = []
    for derivation in groups[frame].get("DerivationImageSequence") or []:
        for source in derivation.get("SourceImageSequence") or []:
            uid = source.get("ReferencedSOPInstanceUID")
            if uid:
                numbers = source.get("ReferencedFrameNumber")
                if isinstance(numbers, MultiValue | list):
                    numbers = numbers[0] if numbers else None
                number = int(numbers or 1)
                refs.append((str(uid), number - 1))
    return refs


def _match_position(
    position: NDArray[np.float64] | None, slices: Sequence[ReferenceSlice]
) -> ReferenceSlice | None:
    if position is None:
        return None
    best: tuple[float, ReferenceSlice] | None = None
    for candidate in slices:
        if candidate.position is None:
            continue
        distance = float(np.linalg.norm(candidate.position - position))
        if best is None or distance < best[0]:
            best = (distance, candidate)
    return best[1] if best is not None and best[0] <= _POSITION_TOLERANCE_MM else None


def _middle_of(keys: Sequence[tuple[str, int]], slices: Sequence[ReferenceSlice]) -> Any:
    order = {(s.sop_instance_uid, s.frame): i for i, s in enumerate(slices)}
    ranked = sorted(keys, key=lambda k: order.get(k, 0))
    return ranked[(len(ranked) - 1) // 2]


def _boundary(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    interior = mask.copy()
    interior[1:, :] &= mask[:-1, :]
    interior[:-1, :] &= mask[1:, :]
    interior[:, 1:] &= mask[:, :-1]
    interior[:, :-1] &= mask[:, 1:]
    return mask & ~interior


def _sorted_slices(slices: Sequence[ReferenceSlice]) -> list[ReferenceSlice]:
    def key(s: ReferenceSlice) -> tuple[float, str, int]:
        normal = s.normal
        along = 0.0
        if normal is not None and s.position is not None:
            along = float(np.dot(normal, s.position))
        return along, str(s.path), s.frame

    return sorted(slices, key=key)


def seg_thumbnail(
    seg_path: PathLike, references: Sequence[PathLike], *, max_size: int = 300
) -> ThumbnailResult:
    """Draw the segments of a SEG instance over the referenced image they annotate.

    Parameters
    ----------
    seg_path
        The Segmentation instance.
    references
        The files of the referenced (source image) series.
    max_size
        Long side of the PNG in pixels.

    Returns
    -------
    ThumbnailResult
        ``kind`` is ``OVERLAY``; ``NONE`` when no SEG frame matches a reference image.
        Frames are matched by the Source Image Sequence's SOP Instance UID, else by
        Image Position (Patient) within 0.05 mm.
    """
    seg = read_header(seg_path)
    slices = _sorted_slices(read_reference_slices(references))
    by_key = {(s.sop_instance_uid, s.frame): s for s in slices}
    frame_count = int(seg.get("NumberOfFrames") or 1)
    labelmap = str(seg.get("SegmentationType", "")).strip() == "LABELMAP"

    targets: dict[int, tuple[tuple[str, int], int]] = {}
    for frame in range(frame_count):
        target = next((k for k in _source_references(seg, frame) if k in by_key), None)
        if target is None:
            plane = _frame_item(seg, frame, "PlanePositionSequence")
            matched = _match_position(
                _vector(plane.get("ImagePositionPatient") or (), 3) if plane else None, slices
            )
            target = (matched.sop_instance_uid, matched.frame) if matched else None
        if target is None:
            continue
        segment = _frame_item(seg, frame, "SegmentIdentificationSequence")
        number = int(segment.get("ReferencedSegmentNumber", 1)) if segment is not None else 1
        targets[frame] = (target, number)
    if not targets:
        return ThumbnailResult.none(
            "SEG frames match none of the referenced images", path=Path(seg_path)
        )

    # SEG frames are small (binary, often bit-packed): decoding all of them is cheap
    # and needed anyway to find the slice with the most segmented pixels.
    masks = pixel_array(seg_path)
    if masks.ndim == 2:
        masks = masks[np.newaxis]
    area: dict[tuple[str, int], int] = {}
    for frame, (key, _) in targets.items():
        area[key] = area.get(key, 0) + int(np.count_nonzero(masks[frame]))
    most = max(area.values())
    key = _middle_of([k for k, v in area.items() if v == most], slices)
    reference = by_key[key]

    rendered = render_frame(reference.path, reference.frame, max_size=max_size)
    pixels = np.asarray(rendered.image.convert("RGB"), dtype=np.float64)
    colours = _segment_colours(seg)
    for frame, (frame_key, number) in sorted(targets.items()):
        if frame_key != key:
            continue
        raw = masks[frame]
        if raw.shape != (reference.rows, reference.columns):
            # Nearest neighbour keeps label values intact (a label map holds numbers).
            resized = Image.fromarray(raw.astype(np.int32)).resize(
                (reference.columns, reference.rows), Image.Resampling.NEAREST
            )
            raw = np.asarray(resized)
        planes = [(n, raw == n) for n in sorted(colours)] if labelmap else [(number, raw > 0)]
        for segment_number, full_mask in planes:
            mask = full_mask[:: rendered.stride, :: rendered.stride][
                : pixels.shape[0], : pixels.shape[1]
            ]
            if not mask.any():
                continue
            colour = np.asarray(
                colours.get(segment_number, distinct_rgb(segment_number - 1)),
                dtype=np.float64,
            )
            pixels[mask] = (1 - _OVERLAY_ALPHA) * pixels[mask] + _OVERLAY_ALPHA * colour
            pixels[_boundary(mask)] = colour
    image = resize_to_fit(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), max_size)
    return ThumbnailResult(
        encode_png(image),
        ThumbnailKind.OVERLAY,
        f"SEG over referenced image ({rendered.description})",
        path=reference.path,
        sop_instance_uid=reference.sop_instance_uid,
        frame=reference.frame,
        size=image.size,
    )


@dataclass(frozen=True, slots=True)
class _Contour:
    points: NDArray[np.float64]
    closed: bool
    colour: tuple[int, int, int]
    image_uid: str | None


def _contours(rt: Dataset) -> list[_Contour]:
    contours: list[_Contour] = []
    for position, roi in enumerate(rt.get("ROIContourSequence") or []):
        display = roi.get("ROIDisplayColor")
        colour = (
            (int(display[0]), int(display[1]), int(display[2]))
            if display is not None and len(display) == 3
            else distinct_rgb(position)
        )
        for item in roi.get("ContourSequence") or []:
            data = item.get("ContourData")
            if not data or len(data) < 3:
                continue
            points = np.asarray([float(v) for v in data], dtype=np.float64)
            points = points[: points.size - points.size % 3].reshape(-1, 3)
            images = item.get("ContourImageSequence") or []
            uid = images[0].get("ReferencedSOPInstanceUID") if images else None
            geometric = str(item.get("ContourGeometricType", "CLOSED_PLANAR")).strip()
            contours.append(
                _Contour(points, geometric == "CLOSED_PLANAR", colour, str(uid) if uid else None)
            )
    return contours


def _slice_for_contour(
    contour: _Contour,
    slices: Sequence[ReferenceSlice],
    by_uid: dict[str, ReferenceSlice],
    tolerance: float,
) -> ReferenceSlice | None:
    if contour.image_uid is not None and contour.image_uid in by_uid:
        return by_uid[contour.image_uid]
    best: tuple[float, ReferenceSlice] | None = None
    for candidate in slices:
        normal = candidate.normal
        if normal is None or candidate.position is None:
            continue
        distance = float(np.max(np.abs((contour.points - candidate.position) @ normal)))
        if best is None or distance < best[0]:
            best = (distance, candidate)
    return best[1] if best is not None and best[0] <= tolerance else None


def _half_spacing(slices: Sequence[ReferenceSlice]) -> float:
    along = sorted(
        float(np.dot(s.normal, s.position))
        for s in slices
        if s.normal is not None and s.position is not None
    )
    gaps = [b - a for a, b in itertools.pairwise(along) if b - a > 1e-6]
    return float(np.median(gaps)) / 2.0 if gaps else 0.5


def rtstruct_thumbnail(
    rt_path: PathLike, references: Sequence[PathLike], *, max_size: int = 300
) -> ThumbnailResult:
    """Draw the contours of an RT Structure Set over the referenced image slice.

    Parameters
    ----------
    rt_path
        The RT Structure Set instance.
    references
        The files of the referenced image series.
    max_size
        Long side of the PNG in pixels.

    Returns
    -------
    ThumbnailResult
        ``kind`` is ``OVERLAY``; ``NONE`` when no contour lies on a referenced slice.
        A contour goes to the slice named in its Contour Image Sequence, else to the
        slice whose plane it lies in (within half the slice spacing). Points are
        projected into the slice through Image Position/Orientation (Patient) and Pixel
        Spacing.
    """
    rt = read_header(rt_path)
    slices = [
        s
        for s in _sorted_slices(read_reference_slices(references))
        if s.position is not None and s.normal is not None and s.pixel_spacing is not None
    ]
    by_uid = {s.sop_instance_uid: s for s in slices}
    tolerance = _half_spacing(slices)
    placed: dict[str, list[_Contour]] = {}
    for contour in _contours(rt):
        target = _slice_for_contour(contour, slices, by_uid, tolerance)
        if target is not None:
            placed.setdefault(target.sop_instance_uid, []).append(contour)
    if not placed:
        return ThumbnailResult.none(
            "RTSTRUCT contours lie on none of the referenced images", path=Path(rt_path)
        )
    points = {uid: sum(len(c.points) for c in cs) for uid, cs in placed.items()}
    most = max(points.values())
    uid, _ = _middle_of([(u, 0) for u, n in points.items() if n == most], slices)
    reference = by_uid[uid]

    rendered = render_frame(reference.path, reference.frame, max_size=max_size)
    image = resize_to_fit(rendered.image.convert("RGB"), max_size)
    scale_x = image.size[0] / reference.columns
    scale_y = image.size[1] / reference.rows
    draw = ImageDraw.Draw(image)
    assert reference.position is not None and reference.pixel_spacing is not None
    assert reference.row_direction is not None and reference.column_direction is not None
    row_spacing, column_spacing = reference.pixel_spacing
    for contour in placed[uid]:
        offset = contour.points - reference.position
        # PixelSpacing is (between rows, between columns): the column index moves along
        # the row direction cosine and is scaled by the column spacing.
        columns = offset @ reference.row_direction / column_spacing
        rows = offset @ reference.column_direction / row_spacing
        xy = [
            ((c + 0.5) * scale_x, (r + 0.5) * scale_y)
            for c, r in zip(columns.tolist(), rows.tolist(), strict=True)
        ]
        if len(xy) == 1:
            x, y = xy[0]
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), outline=contour.colour, width=2)
            continue
        if contour.closed:
            xy.append(xy[0])
        draw.line(xy, fill=contour.colour, width=2, joint="curve")
    return ThumbnailResult(
        encode_png(image),
        ThumbnailKind.OVERLAY,
        f"RTSTRUCT contours over referenced image ({rendered.description})",
        path=reference.path,
        sop_instance_uid=reference.sop_instance_uid,
        frame=reference.frame,
        size=image.size,
    )
