"""Mapping voxel values to 16-bit stored pixel values.

CT and MR Image storage hold 16-bit integers; real-world values come back
through Rescale Slope/Intercept. Integer volumes are stored exactly. Float
volumes are stored exactly when every value is an integer in a 16-bit range,
otherwise they are quantised linearly over their own range, and the error of
that is measured with the slope/intercept *as written* (DS text has at most
16 characters, so the written numbers are not the computed ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.valuerep import format_number_as_ds

from dicomflow.nifti.enums import QuantisationMethod
from dicomflow.nifti.errors import VolumeError

__all__ = ["EncodedVolume", "Quantisation", "encode_volume"]

_UINT16_MAX = 65535
_INT16_MIN, _INT16_MAX = -32768, 32767


@dataclass(frozen=True)
class Quantisation:
    """How real-world voxel values were turned into stored pixel values.

    Attributes
    ----------
    method : QuantisationMethod
        Lossless, the file's own scaling, or linear quantisation.
    slope, intercept : str
        Rescale Slope/Intercept exactly as written (DS text).
    signed : bool
        Pixel Representation: stored values are ``int16`` (``True``) or ``uint16``.
    max_abs_error : float
        Largest ``|stored * slope + intercept - original|`` over the volume, in
        the volume's units (0.0 when lossless).
    value_range : tuple of float
        Smallest and largest original value.
    """

    method: QuantisationMethod
    slope: str
    intercept: str
    signed: bool
    max_abs_error: float
    value_range: tuple[float, float]

    @property
    def is_identity(self) -> bool:
        """Whether stored values equal real-world values (slope 1, intercept 0)."""
        return float(self.slope) == 1.0 and float(self.intercept) == 0.0

    def to_dict(self) -> dict[str, object]:
        """Plain-type form for reports."""
        return {
            "method": self.method.value,
            "slope": self.slope,
            "intercept": self.intercept,
            "signed": self.signed,
            "max_abs_error": self.max_abs_error,
            "value_range": list(self.value_range),
        }


@dataclass(frozen=True)
class EncodedVolume:
    """Stored pixel values (native little-endian ``int16``/``uint16``) and their scaling."""

    pixels: npt.NDArray[np.int16] | npt.NDArray[np.uint16]
    quantisation: Quantisation


def _ds(value: float) -> str:
    text = format_number_as_ds(float(value))
    # "-0.0" is valid DS but reads oddly in headers and reports.
    return "0.0" if float(text) == 0.0 else text


def _integer_encoding(data: npt.NDArray[Any], vmin: int, vmax: int) -> EncodedVolume | None:
    value_range = (float(vmin), float(vmax))
    if vmin >= 0 and vmax <= _UINT16_MAX:
        pixels = data.astype("<u2", copy=False)
        return EncodedVolume(
            pixels, Quantisation(QuantisationMethod.LOSSLESS, "1.0", "0.0", False, 0.0, value_range)
        )
    if vmin >= _INT16_MIN and vmax <= _INT16_MAX:
        pixels_s = data.astype("<i2", copy=False)
        return EncodedVolume(
            pixels_s,
            Quantisation(QuantisationMethod.LOSSLESS, "1.0", "0.0", True, 0.0, value_range),
        )
    if vmax - vmin <= _UINT16_MAX:
        # A shift keeps any 16-bit-wide range exact; the intercept undoes it.
        shifted = (data.astype(np.int64) - vmin).astype("<u2")
        return EncodedVolume(
            shifted,
            Quantisation(
                QuantisationMethod.LOSSLESS, "1.0", str(int(vmin)), False, 0.0, value_range
            ),
        )
    return None


def _linear_encoding(values: npt.NDArray[Any]) -> EncodedVolume:
    # float32 arithmetic would add its own rounding error on top of the quantisation.
    values = values.astype(np.float64, copy=False)
    vmin = float(values.min())
    vmax = float(values.max())
    intercept = _ds(vmin)
    inter = float(intercept)
    if vmax == vmin:
        slope = "1.0"
        pixels = np.zeros(values.shape, dtype="<u2")
        error = abs(vmin - inter)
    else:
        slope = _ds((vmax - inter) / _UINT16_MAX)
        slo = float(slope)
        if (vmax - inter) / slo > _UINT16_MAX + 0.5:
            # DS rounding made the slope too small to reach vmax; nudge it up.
            slope = _ds(slo * (1.0 + 1e-9))
            slo = float(slope)
        scaled = np.rint((values - inter) / slo)
        np.clip(scaled, 0, _UINT16_MAX, out=scaled)
        pixels = scaled.astype("<u2")
        del scaled
        error = float(np.max(np.abs(pixels * slo + inter - values)))
    return EncodedVolume(
        pixels,
        Quantisation(QuantisationMethod.LINEAR, slope, intercept, False, error, (vmin, vmax)),
    )


def encode_volume(
    data: npt.NDArray[np.generic],
    *,
    nifti_scaling: tuple[float, float] | None = None,
    path: Path | None = None,
) -> EncodedVolume:
    """Choose stored pixel values and Rescale Slope/Intercept for a volume.

    Parameters
    ----------
    data : numpy.ndarray
        Voxel values (any shape). With ``nifti_scaling`` these are the file's
        unscaled (raw) values.
    nifti_scaling : tuple of float or None, optional
        ``(scl_slope, scl_inter)`` of the NIfTI header when it scales the raw
        values; ``None`` when ``data`` holds the real-world values.
    path : pathlib.Path or None, optional
        Source file, only used in error messages.

    Returns
    -------
    EncodedVolume
        ``uint16``/``int16`` pixels of the same shape and the quantisation used.

    Raises
    ------
    VolumeError
        For non-numeric, complex or non-finite data.
    """
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    if data.dtype.fields is not None or data.dtype.kind not in "iuf":
        raise VolumeError(
            f"voxel type {data.dtype} (e.g. RGB or complex) cannot be stored as a grey-level "
            "CT/MR image",
            path=path,
        )
    if data.size == 0:
        raise VolumeError("volume has no voxels", path=path)
    if nifti_scaling is not None and nifti_scaling != (1.0, 0.0) and data.dtype.kind in "iu":
        raw_min, raw_max = int(data.min()), int(data.max())
        slope, inter = nifti_scaling
        encoded = _integer_encoding(data, raw_min, raw_max)
        if encoded is not None and float(encoded.quantisation.intercept) == 0.0:
            slope_ds, inter_ds = _ds(slope), _ds(inter)
            # The mapping is linear in the raw value: its error peaks at an end.
            error = max(
                abs(r * (slope - float(slope_ds)) + (inter - float(inter_ds)))
                for r in (raw_min, raw_max)
            )
            lo, hi = sorted((raw_min * slope + inter, raw_max * slope + inter))
            return EncodedVolume(
                encoded.pixels,
                Quantisation(
                    QuantisationMethod.NIFTI_SCALING,
                    slope_ds,
                    inter_ds,
                    encoded.quantisation.signed,
                    float(error),
                    (float(lo), float(hi)),
                ),
            )
        data = data.astype(np.float64) * slope + inter
    elif nifti_scaling is not None and nifti_scaling != (1.0, 0.0):
        slope, inter = nifti_scaling
        data = data.astype(np.float64) * slope + inter

    if data.dtype.kind in "iu":
        integer = _integer_encoding(data, int(data.min()), int(data.max()))
        if integer is not None:
            return integer
        return _linear_encoding(data.astype(np.float64))

    if not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise VolumeError(f"volume holds {bad} NaN or infinite voxel(s)", path=path)
    vmin, vmax = float(data.min()), float(data.max())
    if (
        vmax - vmin <= _UINT16_MAX
        and abs(vmin) < 2**52
        and abs(vmax) < 2**52
        and np.array_equal(data, np.rint(data))
    ):
        integer = _integer_encoding(data.astype(np.int64), int(vmin), int(vmax))
        if integer is not None:
            return integer
    return _linear_encoding(data)
