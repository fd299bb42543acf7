"""Voxel grid of a NIfTI volume expressed as DICOM image plane attributes.

A NIfTI affine maps voxel indices ``(i, j, k)`` to RAS+ world coordinates;
DICOM patient coordinates are LPS+, so x and y change sign. Each DICOM frame
is one ``k`` slice shown as ``data[:, :, k].T``: the column index runs along
``i`` and the row index along ``j``. Hence the first Image Orientation
(Patient) triplet (direction of increasing column index) is the ``i`` axis,
the second is the ``j`` axis and Pixel Spacing, which is given as
``[row spacing, column spacing]``, is ``[|j axis|, |i axis|]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dicomflow.nifti.errors import ShearedAffineError, VolumeError

__all__ = ["RAS_TO_LPS", "SliceGeometry", "reorient_to", "slice_geometry"]

#: Multiplying a RAS+ affine from the left gives the LPS+ affine (and back).
RAS_TO_LPS: npt.NDArray[np.float64] = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class SliceGeometry:
    """Image plane attributes of every frame of a converted volume.

    Attributes
    ----------
    rows, columns : int
        Frame size (``columns`` is the NIfTI ``i`` extent, ``rows`` the ``j`` extent).
    row_cosine, column_cosine : numpy.ndarray
        Unit LPS directions of increasing column and row index: together the
        six values of Image Orientation (Patient).
    pixel_spacing : tuple of float
        ``(row spacing, column spacing)`` in mm, in Pixel Spacing order.
    slice_spacing : float
        Distance between adjacent slice centres in mm.
    slice_order : tuple of int
        NIfTI ``k`` index of each written frame. Frames are written in
        ascending position along the slice normal (the cross product of the
        two cosines), so this is reversed when ``k`` runs against the normal.
    positions : numpy.ndarray
        ``(n_frames, 3)`` Image Position (Patient) of each written frame.
    normal : numpy.ndarray
        Unit slice normal (``row_cosine x column_cosine``).
    """

    rows: int
    columns: int
    row_cosine: npt.NDArray[np.float64]
    column_cosine: npt.NDArray[np.float64]
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    slice_order: tuple[int, ...]
    positions: npt.NDArray[np.float64]
    normal: npt.NDArray[np.float64]

    @property
    def orientation(self) -> list[float]:
        """Image Orientation (Patient): row cosine then column cosine."""
        return [float(v) for v in (*self.row_cosine, *self.column_cosine)]

    def slice_locations(self) -> list[float]:
        """Slice Location of each written frame: its position along the normal."""
        return [float(v) for v in self.positions @ self.normal]


def slice_geometry(
    affine: npt.ArrayLike,
    shape: tuple[int, int, int],
    *,
    tolerance: float = 1e-4,
    path: Path | None = None,
) -> SliceGeometry:
    """Compute the DICOM image plane attributes of a 3D NIfTI grid.

    Parameters
    ----------
    affine : array_like
        ``4 x 4`` NIfTI (RAS+) voxel-to-world affine.
    shape : tuple of int
        ``(ni, nj, nk)`` extent of the volume.
    tolerance : float, optional
        Largest absolute cosine accepted between two voxel axes.
    path : pathlib.Path or None, optional
        Source file, only used in error messages.

    Returns
    -------
    SliceGeometry
        Orientation, spacing and per-frame positions.

    Raises
    ------
    VolumeError
        If the affine is not a finite ``4 x 4`` matrix or an axis has zero length.
    ShearedAffineError
        If two voxel axes are not orthogonal (DICOM has no way to express shear;
        a gantry-tilted grid is sheared too).
    """
    lps = RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    if lps.shape != (4, 4) or not np.all(np.isfinite(lps)):
        raise VolumeError(f"affine must be a finite 4x4 matrix, got {lps.tolist()}", path=path)
    axes = lps[:3, :3]
    lengths = np.linalg.norm(axes, axis=0)
    if np.any(lengths <= 0.0):
        raise VolumeError(f"affine has a zero-length voxel axis: {axes.tolist()}", path=path)
    unit = axes / lengths
    for a, b in ((0, 1), (0, 2), (1, 2)):
        cosine = float(abs(unit[:, a] @ unit[:, b]))
        if cosine > tolerance:
            angle = float(np.degrees(np.arccos(min(cosine, 1.0))))
            raise ShearedAffineError(
                f"sheared affine: voxel axes {a} and {b} meet at {angle:.4f} degrees "
                f"(|cos| = {cosine:.2e} > {tolerance:.0e}); DICOM image planes need "
                "orthogonal axes and a slice direction along the plane normal",
                path=path,
            )
    row_cosine = unit[:, 0]
    column_cosine = unit[:, 1]
    normal = np.cross(row_cosine, column_cosine)
    nk = shape[2]
    forward = float(unit[:, 2] @ normal) > 0.0
    order = tuple(range(nk)) if forward else tuple(range(nk - 1, -1, -1))
    k = np.asarray(order, dtype=np.float64)
    positions = lps[:3, 3][np.newaxis, :] + k[:, np.newaxis] * axes[:, 2][np.newaxis, :]
    return SliceGeometry(
        rows=int(shape[1]),
        columns=int(shape[0]),
        row_cosine=row_cosine,
        column_cosine=column_cosine,
        pixel_spacing=(float(lengths[1]), float(lengths[0])),
        slice_spacing=float(lengths[2]),
        slice_order=order,
        positions=positions,
        normal=normal,
    )


def reorient_to(
    array: npt.NDArray[np.generic],
    affine: npt.ArrayLike,
    target_affine: npt.ArrayLike,
    *,
    atol_mm: float = 1e-3,
) -> npt.NDArray[np.generic]:
    """Permute/flip the axes of a 3D array onto a grid that differs only by axis order.

    Volumes read back from DICOM (``dcm2niix``, highdicom) cover the same voxels
    as the NIfTI they came from but may order or flip the axes differently.

    Parameters
    ----------
    array : numpy.ndarray
        3D voxels whose RAS+ affine is ``affine``.
    affine, target_affine : array_like
        ``4 x 4`` RAS+ affines of ``array`` and of the wanted grid.
    atol_mm : float, optional
        Largest accepted difference between the reoriented affine and
        ``target_affine``.

    Returns
    -------
    numpy.ndarray
        ``array`` on the target grid (a view where possible).

    Raises
    ------
    ValueError
        If the grids differ by more than axis order and direction.
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    source = np.asarray(affine, dtype=np.float64)
    target = np.asarray(target_affine, dtype=np.float64)
    transform = ornt_transform(io_orientation(source), io_orientation(target))
    moved = apply_orientation(array, transform)
    moved_affine = source @ inv_ornt_aff(transform, array.shape)
    diff = float(np.max(np.abs(moved_affine - target)))
    if diff > atol_mm:
        raise ValueError(
            f"grids differ by more than axis order (affines differ by {diff:.3g} after "
            f"reorientation):\n{moved_affine}\nvs\n{target}"
        )
    return moved
