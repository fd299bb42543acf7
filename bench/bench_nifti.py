"""Benchmark: a 512 x 512 x 100 int16 volume and a 2-label SEG to DICOM, in-process.

Run with ``python bench/bench_nifti.py [--slices 100] [--smoke]``. Prints one line per measure::

    measure | ours | reference | ratio | goal

Goals (from the issue): <= 1.0 s wall time and peak memory <= 2x the volume.
Numbers only; nothing is asserted. The volume is Fortran-ordered, as nibabel
returns NIfTI data. Peak memory is what tracemalloc sees allocated during the
conversion (numpy allocations included), beyond the input arrays.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np

from dicomflow.nifti import NiftiImportOptions, convert_folder
from dicomflow.nifti.enums import Modality
from dicomflow.nifti.labels import LabelDescription, SegInfo
from dicomflow.nifti.seg import labelmap_to_seg
from dicomflow.nifti.series import SeriesIdentity, volume_to_series
from dicomflow.nifti.uids import derive_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smoke import parse_args

SIDE = 512
PREFIX = "1.2.826.0.1.3680043.8.498."
TIME_GOAL_S = 1.0
MEMORY_GOAL_X = 2.0


def make_inputs(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random int16 volume of ``shape``, two overlapping label boxes and an affine."""
    rng = np.random.default_rng(0)
    volume = np.asfortranarray(rng.integers(-1024, 3072, shape, dtype=np.int16))
    labels = np.zeros(shape, dtype=np.uint8, order="F")
    # The boxes of a 512 x 512 x 100 volume, scaled to this one.
    x, y, z = (n / m for n, m in zip(shape, (512, 512, 100), strict=True))
    labels[int(150 * x) : int(350 * x), int(140 * y) : int(330 * y), int(20 * z) : int(70 * z)] = 1
    labels[int(300 * x) : int(420 * x), int(200 * y) : int(300 * y), int(45 * z) : int(90 * z)] = 2
    affine = np.diag([0.7, 0.7, 2.5, 1.0])
    affine[:3, 3] = [-179.0, -179.0, -120.0]
    return volume, labels, affine


def convert(volume: np.ndarray, labels: np.ndarray, affine: np.ndarray, out: Path) -> None:
    identity = SeriesIdentity(
        patient_id="BENCH",
        patient_name="BENCH^",
        study_id="1",
        study_uid=derive_uid(PREFIX, "bench", "study"),
        series_uid=derive_uid(PREFIX, "bench", "series", str(volume.shape)),
        frame_of_reference_uid=derive_uid(PREFIX, "bench", "frame"),
        series_number=1,
        series_description="bench",
        study_datetime=datetime(2024, 1, 1),
    )
    series = volume_to_series(volume, affine, out / "ct", modality=Modality.CT, identity=identity)
    info = SegInfo(
        (LabelDescription.make(1, "liver", 0), LabelDescription.make(2, "tumor", 1)), None
    )
    labelmap_to_seg(labels, series, info, out / "seg" / "seg.dcm", label_affine=affine)


def line(measure: str, ours: str, reference: str, ratio: str, goal: str) -> None:
    print(f"{measure} | {ours} | {reference} | {ratio} | {goal}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=SIDE, help="rows and columns per slice")
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="warm runs (the best counts)")
    args = parse_args(parser, {"side": 32, "slices": 4, "repeat": 1})
    shape = (args.side, args.side, args.slices)
    volume, labels, affine = make_inputs(shape)
    size_mb = volume.nbytes / 2**20
    with tempfile.TemporaryDirectory(prefix="bench_nifti_") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        convert(volume, labels, affine, work / "cold")
        cold = time.perf_counter() - start

        times = []
        for run in range(args.repeat):
            start = time.perf_counter()
            convert(volume, labels, affine, work / f"warm{run}")
            times.append(time.perf_counter() - start)
        warm = min(times)

        tracemalloc.start()
        convert(volume, labels, affine, work / "memory")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak_mb = peak / 2**20

        src = work / "nifti"
        src.mkdir()
        for name, data in (("Case00.nii", volume), ("Case00_seg.nii", labels)):
            nib.save(nib.Nifti1Image(data, affine), src / name)
        (src / "seg_info.json").write_text(
            '{"algorithm": "Ground truth", "seg_info": [{"label_name": "liver", "label_int": 1},'
            ' {"label_name": "tumor", "label_int": 2}]}'
        )
        start = time.perf_counter()
        report = convert_folder(src, work / "folder", options=NiftiImportOptions())
        folder = time.perf_counter() - start
        if not report.all_ok:
            # A time for a conversion that failed measures nothing.
            print(f"convert_folder failed:\n{report.summary()}", file=sys.stderr)
            return 1

    print("measure | ours | reference | ratio | goal")
    size = "x".join(map(str, shape))
    line(
        f"wall time {size} int16 + 2-label SEG (warm, best of {args.repeat})",
        f"{warm:.3f} s",
        "-",
        "-",
        f"<= {TIME_GOAL_S:.1f} s",
    )
    line(
        "wall time, first call (loads highdicom's standard tables)", f"{cold:.3f} s", "-", "-", "-"
    )
    line(
        "peak traced memory vs volume size",
        f"{peak_mb:.1f} MiB",
        f"{size_mb:.1f} MiB",
        f"{peak_mb / size_mb:.2f}x",
        f"<= {MEMORY_GOAL_X:.1f}x",
    )
    line("convert_folder from .nii files (load, hash, write)", f"{folder:.3f} s", "-", "-", "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
