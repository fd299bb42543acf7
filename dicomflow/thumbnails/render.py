"""Decode one frame of one file and turn it into a display image."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from dicomflow.thumbnails.imaging import frame_to_rgb, subsample_stride

__all__ = ["RenderedFrame", "decode_frame", "render_frame"]

_DEFER_SIZE = "64 KB"


@dataclass(frozen=True, slots=True)
class RenderedFrame:
    """A frame made displayable, before the final resize.

    Attributes
    ----------
    image
        ``L`` (grayscale) or ``RGB`` image, subsampled by ``stride`` from the stored frame.
    stride
        Every ``stride``-th row and column of the stored frame was kept.
    header
        The instance's header (no pixel data).
    description
        How the values were mapped to the display (window, inversion, colour).
    """

    image: Image.Image
    stride: int
    header: Dataset
    description: str


def _frame_count(header: Dataset) -> int:
    try:
        return max(1, int(header.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def decode_frame(path: str | os.PathLike[str], frame: int, header: Dataset) -> NDArray[Any]:
    """Decode exactly one frame (0-based) of a file; other frames are never decoded.

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` or ``(rows, columns, samples)``.
    """
    if _frame_count(header) > 1:
        return pixel_array(path, index=frame)
    return pixel_array(path)


def render_frame(
    path: str | os.PathLike[str],
    frame: int = 0,
    *,
    max_size: int = 300,
    header: Dataset | None = None,
) -> RenderedFrame:
    """Decode one frame and apply rescale, window, inversion or colour conversion.

    Parameters
    ----------
    path
        The file.
    frame
        0-based frame index.
    max_size
        The thumbnail's long side; the frame is subsampled to about twice that.
    header
        The file's header when already read.

    Returns
    -------
    RenderedFrame
        The display image and how it was made.
    """
    if header is None:
        # Deferred read: one parse of the file; large values (the pixels) are loaded
        # only if used, so a multi-frame file still decodes just its one frame below.
        ds: Dataset = pydicom.dcmread(path, defer_size=_DEFER_SIZE)
        arr = pixel_array(ds) if _frame_count(ds) == 1 else pixel_array(path, index=frame)
    else:
        ds = header
        arr = decode_frame(path, frame, ds)
    stride = subsample_stride(arr.shape[0], arr.shape[1], max_size)
    image, description = frame_to_rgb(arr[::stride, ::stride], ds, frame)
    return RenderedFrame(image, stride, ds, description)
