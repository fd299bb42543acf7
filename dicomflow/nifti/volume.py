"""Loading NIfTI files as voxel arrays with their affine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt

from dicomflow.nifti.enums import FourDPolicy
from dicomflow.nifti.errors import FourDimensionalVolumeError, LabelMapError, VolumeError

__all__ = ["NiftiVolume", "load_labelmap", "load_volume", "nifti_stem"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def nifti_stem(name: str) -> str:
    """File name without ``.nii``/``.nii.gz`` (case-insensitive)."""
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class NiftiVolume:
    """Voxels of a NIfTI file as stored, with the scaling its header asks for.

    Attributes
    ----------
    path : pathlib.Path
        Source file.
    raw : numpy.ndarray
        Unscaled voxels, ``(ni, nj, nk)`` or ``(ni, nj, nk, nt)``.
    scaling : tuple of float or None
        ``(scl_slope, scl_inter)`` when the header scales ``raw``.
    affine : numpy.ndarray
        RAS+ voxel-to-world affine (sform, else qform, as nibabel chooses).
    warnings : list of str
        Things worth telling the user that do not stop the conversion.
    """

    path: Path
    raw: npt.NDArray[np.generic]
    scaling: tuple[float, float] | None
    affine: npt.NDArray[np.float64]
    warnings: list[str] = field(default_factory=list)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """Spatial extent ``(ni, nj, nk)``."""
        ni, nj, nk = self.raw.shape[:3]
        return int(ni), int(nj), int(nk)

    @property
    def n_volumes(self) -> int:
        """Number of 3D volumes (the length of the fourth axis, else 1)."""
        return int(self.raw.shape[3]) if self.raw.ndim == 4 else 1

    def volume(self, index: int) -> npt.NDArray[np.generic]:
        """Raw voxels of volume ``index`` (a view, no copy)."""
        return self.raw[..., index] if self.raw.ndim == 4 else self.raw


def _open(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    if not path.is_file():
        raise VolumeError("file not found", path=path)
    try:
        image = nib.load(path)
    except Exception as exc:  # nibabel raises many types for broken files
        raise VolumeError(f"cannot read as NIfTI: {exc}", path=path) from exc
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise VolumeError(f"not a NIfTI file ({type(image).__name__})", path=path)
    return image


def _spatial(shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    """Shape with trailing length-1 axes beyond the fourth dropped and 2D made 3D."""
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) == 2:
        dims.append(1)
    if len(dims) < 2:
        raise VolumeError(f"a {len(dims)}D array is not an image (shape {shape})", path=path)
    if len(dims) > 4:
        raise VolumeError(
            f"{len(dims)}D volumes (shape {shape}) are not supported; at most 4D", path=path
        )
    return tuple(dims)


def _orientation_warnings(image: nib.Nifti1Image | nib.Nifti2Image) -> list[str]:
    header = image.header
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        return ["header has neither sform nor qform: orientation assumed from voxel sizes only"]
    return []


def load_volume(path: Path, *, four_d: FourDPolicy = FourDPolicy.SPLIT) -> NiftiVolume:
    """Read a NIfTI image volume.

    Parameters
    ----------
    path : pathlib.Path
        ``.nii`` or ``.nii.gz`` file.
    four_d : FourDPolicy, optional
        Whether 4D files are accepted (to be split) or refused.

    Returns
    -------
    NiftiVolume
        Unscaled voxels, header scaling and affine.

    Raises
    ------
    VolumeError
        If the file cannot be read or has more than four dimensions.
    FourDimensionalVolumeError
        If it is 4D and ``four_d`` is :attr:`FourDPolicy.REFUSE`.
    """
    image = _open(path)
    proxy: Any = image.dataobj
    if nib.is_proxy(proxy):
        raw = np.asarray(proxy.get_unscaled())
        slope, inter = float(proxy.slope), float(proxy.inter)
    else:
        raw = np.asarray(proxy)
        slope, inter = 1.0, 0.0
    shape = _spatial(raw.shape, path)
    raw = raw.reshape(shape, order="A")
    if len(shape) == 4 and four_d is FourDPolicy.REFUSE:
        raise FourDimensionalVolumeError(
            f"4D volume with {shape[3]} volumes refused (switch: four_d=split)", path=path
        )
    scaling = None if (slope, inter) == (1.0, 0.0) else (slope, inter)
    return NiftiVolume(
        path, raw, scaling, np.asarray(image.affine, dtype=np.float64), _orientation_warnings(image)
    )


def load_labelmap(path: Path) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.float64]]:
    """Read a NIfTI label map as integers.

    Parameters
    ----------
    path : pathlib.Path
        ``.nii`` or ``.nii.gz`` file holding one label value per voxel.

    Returns
    -------
    labels : numpy.ndarray
        ``(ni, nj, nk)`` integer label values.
    affine : numpy.ndarray
        RAS+ voxel-to-world affine.

    Raises
    ------
    VolumeError
        If the file cannot be read.
    LabelMapError
        If it is not 3D or holds negative or non-integer values.
    """
    image = _open(path)
    data = np.asanyarray(image.dataobj)
    shape = _spatial(data.shape, path)
    if len(shape) != 3:
        raise LabelMapError(f"label map must be 3D, got shape {data.shape}", path=path)
    data = data.reshape(shape, order="A")
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.rint(data)):
            raise LabelMapError("label map holds non-integer values", path=path)
        data = data.astype(np.int64)
    elif data.dtype.kind == "b":
        data = data.astype(np.uint8)
    elif data.dtype.kind not in "iu":
        raise LabelMapError(f"label map has non-numeric voxel type {data.dtype}", path=path)
    if data.size and data.dtype.kind == "i" and int(data.min()) < 0:
        raise LabelMapError(f"label map holds negative values (min {int(data.min())})", path=path)
    return data, np.asarray(image.affine, dtype=np.float64)
