"""Helpers of the NIfTI conversion tests: real files, real validators."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"

# Warnings that state a fact we cannot change without inventing data:
# Laterality is genuinely unknown for a NIfTI volume (empty is the honest value;
# absent is an error unless Body Part Examined says the part is unpaired).
UNKNOWN_LATERALITY = re.compile(r"attribute <Laterality>$")
# A float MR volume needs Rescale Slope/Intercept, which the MR Image IOD lacks.
MR_RESCALE = re.compile(
    r"Non-identity Modality LUT Module|\(0x0028,0x105[23]\)|Standard Extended SOP Class"
)


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """Errors and warnings of dciodvfy for one file (its exit code is not reliable)."""
    proc = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode < 0 or proc.returncode >= 128:
        pytest.fail(f"dciodvfy crashed on {path} (rc {proc.returncode}): {proc.stderr[-500:]}")
    lines = (proc.stderr + proc.stdout).splitlines()
    errors = [line for line in lines if line.startswith("Error - ")]
    warnings = [line for line in lines if line.startswith("Warning - ")]
    return errors, warnings


def assert_valid(
    paths: Iterable[Path], *, allowed: Sequence[re.Pattern[str]] = (UNKNOWN_LATERALITY,)
) -> None:
    """dciodvfy finds no error and no warning other than the ``allowed`` ones."""
    checked = 0
    for path in paths:
        errors, warnings = dciodvfy(path)
        unexpected = [w for w in warnings if not any(p.search(w) for p in allowed)]
        assert errors == [], f"{path}: {errors}"
        assert unexpected == [], f"{path}: {unexpected}"
        checked += 1
    assert checked > 0


def dcm2niix(series_dir: Path, work: Path) -> nib.Nifti1Image:
    """Convert one DICOM series folder with dcm2niix and load the single result."""
    out = work / f"dcm2niix_{series_dir.parent.name}_{series_dir.name}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    proc = subprocess.run(
        ["dcm2niix", "-o", str(out), "-f", "rt", "-z", "n", "-b", "n", str(series_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    files = sorted(out.glob("*.nii"))
    assert len(files) == 1, f"dcm2niix made {files}: {proc.stdout}\n{proc.stderr}"
    return load_image(files[0])


def load_image(path: Path) -> nib.Nifti1Image:
    """Load a NIfTI-1 file (typed)."""
    image = nib.load(path)
    assert isinstance(image, nib.Nifti1Image)
    return image


def rotation(ax: float, ay: float, az: float) -> npt.NDArray[np.float64]:
    """Rotation matrix from angles in degrees about x, y, z."""
    x, y, z = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx, dtype=np.float64)


def make_affine(
    spacing: Sequence[float] = (0.8, 0.9, 2.5),
    *,
    angles: Sequence[float] = (0.0, 0.0, 0.0),
    flips: Sequence[int] = (),
    origin: Sequence[float] = (-20.5, 31.25, 12.0),
) -> npt.NDArray[np.float64]:
    """RAS affine with the given voxel sizes, rotation and flipped voxel axes."""
    scale = np.array(spacing, dtype=np.float64)
    for axis in flips:
        scale[axis] = -scale[axis]
    affine = np.eye(4)
    affine[:3, :3] = rotation(*angles) @ np.diag(scale)
    affine[:3, 3] = origin
    return affine


def phantom(shape: Sequence[int], dtype: Any = np.int16, seed: int = 0) -> npt.NDArray[Any]:
    """Volume whose every voxel differs from its mirror images (catches flips)."""
    rng = np.random.default_rng(seed)
    i, j, k = np.indices(shape)
    base = i * 3 + j * 50 + k * 700 - 1000
    noise = rng.integers(0, 3, size=shape)
    return np.asarray(base + noise).astype(dtype)


def labels_for(shape: Sequence[int], values: Sequence[int] = (1, 2)) -> npt.NDArray[np.uint8]:
    """Label map with asymmetric blocks of the given values."""
    out = np.zeros(shape, dtype=np.uint8)
    ni, nj, nk = shape
    for n, value in enumerate(values):
        out[
            n * ni // 5 : n * ni // 5 + ni // 3,
            nj // 6 : nj // 6 + nj // (2 + n),
            1 + n : nk - 1,
        ] = value
    return out


def save_nifti(
    path: Path,
    data: npt.NDArray[Any],
    affine: npt.NDArray[np.float64],
    *,
    stored_dtype: Any = None,
) -> Path:
    """Write a NIfTI-1 file (sform and qform set).

    With ``stored_dtype`` (an integer type) float data is stored scaled, nibabel
    choosing ``scl_slope``/``scl_inter``.
    """
    image = nib.Nifti1Image(data, affine)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(affine, code=1)
    if stored_dtype is not None:
        image.set_data_dtype(stored_dtype)
    nib.save(image, path)
    return path


def write_json(path: Path, content: Any) -> Path:
    """Write ``content`` as indented JSON."""
    path.write_text(json.dumps(content, indent=2), encoding="utf-8")
    return path


SEG_INFO = {
    "algorithm": "Ground truth",
    "task_body_part": "prostate",
    "seg_info": [
        {"label_name": "prostate", "label_int": "1"},
        {"label_name": "my_special_region", "label_int": "2"},
    ],
}
