"""The thumbnail of a series: one PNG, or a clear reason why there is none."""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import StrEnum

from pydicom.uid import UID

from dicomflow.dicom.headers import SeriesGroup, read_instance_info
from dicomflow.dicom.instance import Instance
from dicomflow.thumbnails.imaging import encode_png, resize_to_fit
from dicomflow.thumbnails.overlays import rtstruct_thumbnail, seg_thumbnail
from dicomflow.thumbnails.placeholder import placeholder_png
from dicomflow.thumbnails.render import render_frame
from dicomflow.thumbnails.result import ThumbnailKind, ThumbnailResult
from dicomflow.thumbnails.selection import middle_frame

__all__ = ["DEFAULT_MAX_SIZE", "AnnotationSOPClass", "render_series_thumbnail"]

PathLike = str | os.PathLike[str]

#: Long side of a thumbnail in pixels.
DEFAULT_MAX_SIZE = 300


class AnnotationSOPClass(StrEnum):
    """SOP classes whose picture is an annotation drawn over another series."""

    SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
    LABEL_MAP_SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.7"
    RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"


def _instances(files: SeriesGroup | Sequence[PathLike]) -> list[Instance]:
    if isinstance(files, SeriesGroup):
        return list(files.instances)
    instances: list[Instance] = []
    for path in files:
        try:
            instances.append(read_instance_info(path))
        except ValueError:
            continue  # the header scan reports bad files; a thumbnail needs one good one
    return instances


def _annotation_class(instances: Sequence[Instance]) -> AnnotationSOPClass | None:
    for instance in instances:
        try:
            return AnnotationSOPClass(instance.sop_class_uid)
        except ValueError:
            continue
    return None


def render_series_thumbnail(
    files: SeriesGroup | Sequence[PathLike],
    *,
    referenced_files: Sequence[PathLike] | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> ThumbnailResult:
    """Render a PNG thumbnail of a series; never raises for bad or pixel-less data.

    Parameters
    ----------
    files
        The series' files, or its :class:`~dicomflow.dicom.headers.SeriesGroup`.
    referenced_files
        For SEG and RTSTRUCT: the files of the image series they annotate.
    max_size
        Long side of the PNG in pixels.

    Returns
    -------
    ThumbnailResult
        For images: the middle slice (sorted along the slice normal, else by Instance
        Number), middle frame for a multi-frame instance, with rescale, window (header
        window, else 1st-99th percentile), MONOCHROME1 inversion and colour kept. For
        SEG/RTSTRUCT: an overlay on the referenced image, or a labelled placeholder when
        ``referenced_files`` is not given. For series without pixels (SR, RT Plan, ...):
        no PNG and the reason.

    Notes
    -----
    Only headers are read to choose the instance; exactly one frame is decoded.
    """
    instances = _instances(files)
    if not instances:
        return ThumbnailResult.none("no readable DICOM instance")
    annotation = _annotation_class(instances)
    if annotation is not None:
        label = "RTSTRUCT" if annotation is AnnotationSOPClass.RT_STRUCTURE_SET else "SEG"
        source = next(i for i in instances if i.sop_class_uid == annotation.value)
        if not referenced_files:
            text = f"{label} — reference series not available"
            return ThumbnailResult(
                placeholder_png(text, size=(max_size, max(1, max_size * 2 // 3))),
                ThumbnailKind.PLACEHOLDER,
                text,
                path=source.path,
                sop_instance_uid=source.sop_instance_uid,
            )
        draw = rtstruct_thumbnail if label == "RTSTRUCT" else seg_thumbnail
        try:
            return draw(source.path, referenced_files, max_size=max_size)
        except Exception as exc:  # decoders and odd geometry raise many types
            return ThumbnailResult.none(
                f"{label} overlay failed: {type(exc).__name__}: {exc}", path=source.path
            )

    try:
        chosen, frame = middle_frame(instances)
    except ValueError:
        name = UID(instances[0].sop_class_uid).name
        return ThumbnailResult.none(f"{name} has no pixel data", path=instances[0].path)
    try:
        rendered = render_frame(chosen.path, frame, max_size=max_size)
    except Exception as exc:  # decoders raise many types; the reason is what matters
        return ThumbnailResult.none(
            f"pixel data could not be decoded ({type(exc).__name__}: {exc})", path=chosen.path
        )
    image = resize_to_fit(rendered.image, max_size)
    return ThumbnailResult(
        encode_png(image),
        ThumbnailKind.IMAGE,
        rendered.description,
        path=chosen.path,
        sop_instance_uid=chosen.sop_instance_uid,
        frame=frame,
        size=image.size,
    )
