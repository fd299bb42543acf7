"""Series thumbnails: one small PNG per series, or the reason there is none."""

from dicomflow.thumbnails.imaging import PhotometricInterpretation, VOILUTFunction, Window
from dicomflow.thumbnails.result import ThumbnailKind, ThumbnailResult
from dicomflow.thumbnails.series import (
    DEFAULT_MAX_SIZE,
    AnnotationSOPClass,
    render_series_thumbnail,
)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "AnnotationSOPClass",
    "PhotometricInterpretation",
    "ThumbnailKind",
    "ThumbnailResult",
    "VOILUTFunction",
    "Window",
    "render_series_thumbnail",
]
