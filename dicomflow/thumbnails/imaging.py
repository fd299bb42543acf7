"""Turn one decoded DICOM frame into display-ready 8-bit RGB.

The steps follow the grayscale pipeline of PS3.4 N.2: Modality LUT (rescale), VOI LUT
(window), then MONOCHROME1 inversion. Enhanced multi-frame objects keep rescale and
window in their functional groups, which pydicom's helpers do not look at, so the values
are looked up here per frame, then shared, then at the top level.
"""

from __future__ import annotations

import io
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi

__all__ = [
    "PhotometricInterpretation",
    "VOILUTFunction",
    "Window",
    "encode_png",
    "frame_attribute",
    "frame_to_rgb",
    "linear_window",
    "resize_to_fit",
    "subsample_stride",
]

#: Robust window used when the header has none: ignores outliers such as padding values.
PERCENTILE_WINDOW = (1.0, 99.0)


class PhotometricInterpretation(StrEnum):
    """Photometric Interpretation (0028,0004) defined terms (PS3.3 C.7.6.3.1.2)."""

    MONOCHROME1 = "MONOCHROME1"
    MONOCHROME2 = "MONOCHROME2"
    PALETTE_COLOR = "PALETTE COLOR"
    RGB = "RGB"
    YBR_FULL = "YBR_FULL"
    YBR_FULL_422 = "YBR_FULL_422"
    YBR_PARTIAL_420 = "YBR_PARTIAL_420"
    YBR_ICT = "YBR_ICT"
    YBR_RCT = "YBR_RCT"

    @property
    def is_monochrome(self) -> bool:
        """True for MONOCHROME1 and MONOCHROME2."""
        return self.value.startswith("MONOCHROME")


class VOILUTFunction(StrEnum):
    """VOI LUT Function (0028,1056) enumerated values (PS3.3 C.11.2.1.3)."""

    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"


class Window:
    """A VOI window: center, width and the function mapping values to display levels.

    Parameters
    ----------
    center, width
        Window Center (0028,1050) and Window Width (0028,1051) in modality units.
    function
        The VOI LUT function.
    """

    __slots__ = ("center", "function", "width")

    def __init__(
        self, center: float, width: float, function: VOILUTFunction = VOILUTFunction.LINEAR
    ) -> None:
        self.center = float(center)
        self.width = float(width)
        self.function = function

    def __repr__(self) -> str:
        return f"Window(center={self.center}, width={self.width}, function={self.function})"

    def apply(self, values: NDArray[np.floating[Any]]) -> NDArray[np.uint8]:
        """Map modality values to 0..255."""
        c, w = self.center, self.width
        if self.function is VOILUTFunction.SIGMOID:
            out = 255.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
        elif self.function is VOILUTFunction.LINEAR_EXACT:
            out = ((values - c) / w + 0.5) * 255.0
        else:
            out = linear_window(values, c, w)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def linear_window(
    values: NDArray[np.floating[Any]], center: float, width: float
) -> NDArray[np.floating[Any]]:
    """The LINEAR VOI function of PS3.3 C.11.2.1.2.1, output range 0..255 (unclipped)."""
    # LINEAR defines width 1 as a threshold at the center; avoid dividing by zero there.
    span = max(width - 1.0, 1e-6)
    return ((values - (center - 0.5)) / span + 0.5) * 255.0


def frame_attribute(ds: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """Look up an attribute for one frame: per-frame group, shared group, then top level.

    Parameters
    ----------
    ds
        The header.
    frame
        0-based frame index.
    sequence
        The functional group macro's sequence, e.g. ``"FrameVOILUTSequence"``.
    keyword
        The attribute inside it, e.g. ``"WindowCenter"``.

    Returns
    -------
    Any
        The value, or ``None`` when absent everywhere.
    """
    for groups_keyword, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_keyword)
        if not groups or index >= len(groups):
            continue
        macro = groups[index].get(sequence)
        if macro and keyword in macro[0]:
            value = macro[0].get(keyword)
            if value is not None and value != "":
                return value
    value = ds.get(keyword)
    return None if value == "" else value


def _first_number(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str | bytes) and hasattr(value, "__len__"):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def subsample_stride(rows: int, columns: int, max_size: int) -> int:
    """Pick a stride that keeps at least twice the target size before the final resize.

    Striding before the float conversion keeps a 4k x 4k radiograph as cheap as a CT
    slice; keeping 2x the target leaves the final (antialiased) resize something to do.
    """
    return max(1, max(rows, columns) // (2 * max_size))


def _modality_values(arr: NDArray[Any], ds: Dataset, frame: int) -> NDArray[np.float64]:
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    slope = _first_number(
        frame_attribute(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    )
    intercept = _first_number(
        frame_attribute(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    )
    values = arr.astype(np.float64)
    if slope is not None and slope != 0:
        values *= slope
    if intercept:
        values += intercept
    return values


def header_window(ds: Dataset, frame: int) -> Window | None:
    """The first window of the header for a frame, or ``None`` when there is no usable one."""
    center = _first_number(frame_attribute(ds, frame, "FrameVOILUTSequence", "WindowCenter"))
    width = _first_number(frame_attribute(ds, frame, "FrameVOILUTSequence", "WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    name = frame_attribute(ds, frame, "FrameVOILUTSequence", "VOILUTFunction")
    try:
        function = VOILUTFunction(str(name).strip()) if name else VOILUTFunction.LINEAR
    except ValueError:
        function = VOILUTFunction.LINEAR
    return Window(center, width, function)


def percentile_window(values: NDArray[np.floating[Any]]) -> Window:
    """A LINEAR_EXACT window spanning the 1st to 99th percentile of the values."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Window(0.0, 1.0, VOILUTFunction.LINEAR_EXACT)
    low, high = np.percentile(finite, PERCENTILE_WINDOW)
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    if high <= low:
        # A constant image: show it mid-gray rather than inventing contrast.
        return Window(float(low), 1.0, VOILUTFunction.LINEAR_EXACT)
    return Window((low + high) / 2.0, high - low, VOILUTFunction.LINEAR_EXACT)


def _gray_to_8bit(
    arr: NDArray[Any], ds: Dataset, frame: int, photometric: PhotometricInterpretation
) -> tuple[NDArray[np.uint8], str]:
    values = _modality_values(arr, ds, frame)
    window = header_window(ds, frame)
    if window is not None:
        out = window.apply(values)
        how = f"window {window.center:g}/{window.width:g}"
    elif "VOILUTSequence" in ds:
        lut = np.asarray(apply_voi(values, ds), dtype=np.float64)
        out = percentile_window(lut).apply(lut)
        how = "VOI LUT"
    else:
        out = percentile_window(values).apply(values)
        how = "percentile window 1-99"
    inverse = str(ds.get("PresentationLUTShape", "")).strip() == "INVERSE"
    if (photometric is PhotometricInterpretation.MONOCHROME1) != inverse:
        # MONOCHROME1 means low values are bright: show it as a viewer would.
        out = np.subtract(255, out, dtype=np.uint8)
        how += ", inverted"
    return out, how


def _colour_to_8bit(arr: NDArray[Any], bits: int) -> NDArray[np.uint8]:
    if arr.dtype == np.uint8 or bits <= 8:
        return np.clip(arr, 0, 255).astype(np.uint8)
    scale = 255.0 / float((1 << bits) - 1)
    return np.clip(np.rint(arr.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def frame_to_rgb(
    arr: NDArray[Any], ds: Dataset, frame: int = 0, *, max_size: int | None = None
) -> tuple[Image.Image, str]:
    """Convert one decoded frame to an 8-bit image (mode ``L`` for grayscale, else ``RGB``).

    Parameters
    ----------
    arr
        The frame as returned by :func:`pydicom.pixels.pixel_array` (YBR already
        converted to RGB by pydicom).
    ds
        The header of the instance.
    frame
        0-based frame index, for per-frame functional groups.
    max_size
        When given, subsample by an integer stride first (see :func:`subsample_stride`).

    Returns
    -------
    tuple
        The RGB image and a short description of the display transform used.
    """
    if max_size is not None:
        stride = subsample_stride(arr.shape[0], arr.shape[1], max_size)
        arr = arr[::stride, ::stride]
    raw = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    try:
        photometric = PhotometricInterpretation(raw)
    except ValueError:
        photometric = PhotometricInterpretation.MONOCHROME2
        if arr.ndim == 3:
            photometric = PhotometricInterpretation.RGB
    if photometric is PhotometricInterpretation.PALETTE_COLOR and arr.ndim == 2:
        rgb = apply_color_lut(arr, ds)
        descriptor = ds.get("RedPaletteColorLookupTableDescriptor") or [0, 0, 8]
        lut_bits = 16 if int(descriptor[2]) > 8 and rgb.max() > 255 else 8
        return Image.fromarray(_colour_to_8bit(rgb, lut_bits), "RGB"), "palette colour"
    if arr.ndim == 3 and arr.shape[-1] == 3:
        bits = int(ds.get("BitsStored", 8) or 8)
        return Image.fromarray(_colour_to_8bit(arr, bits), "RGB"), "colour"
    if arr.ndim != 2:
        raise ValueError(f"cannot display a frame of shape {arr.shape}")
    if not photometric.is_monochrome:
        photometric = PhotometricInterpretation.MONOCHROME2
    gray, how = _gray_to_8bit(arr, ds, frame, photometric)
    # Grayscale stays one channel: a third of the PNG bytes and encoding time.
    return Image.fromarray(gray, "L"), how


def resize_to_fit(image: Image.Image, max_size: int) -> Image.Image:
    """Shrink (never enlarge) so that the long side is at most ``max_size`` pixels."""
    width, height = image.size
    scale = min(1.0, max_size / max(width, height))
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def encode_png(image: Image.Image) -> bytes:
    """Encode as PNG; level 3 is several times faster than 6 for a few % more bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
