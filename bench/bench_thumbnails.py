"""Micro-benchmark of the per-series processing core: grouping, thumbnails, validation.

Prints rows ``measure | ours | reference | ratio | goal``; asserts nothing. References are
the naive way of doing the same thing, measured here on the same files (decode every
frame; full-header reads; one dciodvfy at a time), so the ratio shows what the design
choice buys.

Usage::

    .venv/bin/python bench/bench_thumbnails.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicomflow.dicom.document import build_series_document
from dicomflow.dicom.headers import group_series
from dicomflow.thumbnails import render_series_thumbnail
from dicomflow.thumbnails.imaging import frame_to_rgb, resize_to_fit
from dicomflow.validation import validate_series

_DATA = Path(pydicom.__file__).parent.parent / "data_store" / "data"


def _file(name: str) -> Path:
    local = _DATA / name
    if local.exists():
        return local
    found = get_testdata_file(name)
    assert found is not None, name
    return Path(str(found))


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _row(measure: str, ours: float, reference: float, goal: str, unit: str = "ms") -> None:
    ratio = ours / reference if reference else float("nan")
    print(f"{measure} | {ours:.2f} {unit} | {reference:.2f} {unit} | {ratio:.2f} | {goal}")


def _write_series(folder: Path, count: int) -> list[Path]:
    source = pydicom.dcmread(_file("693_UNCR.dcm"))  # 512x512 CT
    series_uid = generate_uid()
    paths = []
    for number in range(1, count + 1):
        ds = copy.deepcopy(source)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = number
        path = folder / f"{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _naive_thumbnail(path: Path) -> None:
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array  # decodes every frame
    middle = (
        frames[len(frames) // 2]
        if frames.ndim == 4 or int(ds.get("NumberOfFrames", 1)) > 1
        else frames
    )
    image, _ = frame_to_rgb(np.asarray(middle), ds)
    resize_to_fit(image, 300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("measure | ours | reference | ratio | goal")
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_series(Path(tmp), 100)

        ours = _best(lambda: group_series(paths), args.repeat) * 1000
        ref = _best(lambda: [pydicom.dcmread(p) for p in paths], args.repeat) * 1000
        _row("group 100 x 512x512 CT headers (ref: full reads)", ours, ref, "< 1")

        group = group_series(paths).series[0]
        ours = _best(lambda: build_series_document(group), args.repeat) * 1000
        _row("series document, 1 header", ours, ours, "< 5 ms")

        ours = _best(lambda: render_series_thumbnail(group), args.repeat) * 1000
        ref = _best(lambda: _naive_thumbnail(paths[50]), args.repeat) * 1000
        _row(
            "thumbnail 100-slice CT series, headers given (ref: full read of 1)",
            ours,
            ref,
            "<= 1.5",
        )

        ours = _best(lambda: render_series_thumbnail(paths), args.repeat) * 1000
        _row(
            "thumbnail 100-slice CT series from paths (ref: same, headers given)",
            ours,
            ref,
            "< 60 ms",
        )

        us = _file("color3d_jpeg_baseline.dcm")  # 120 frames JPEG colour US
        ours = _best(lambda: render_series_thumbnail([us]), args.repeat) * 1000
        ref = _best(lambda: _naive_thumbnail(us), max(1, args.repeat // 2)) * 1000
        _row("thumbnail 120-frame colour US (ref: decode all frames)", ours, ref, "< 0.1")

        sample = group_series(paths[:20]).series[0]
        ours = _best(lambda: validate_series(sample, workers=2), 3) * 1000 / 20
        ref = _best(lambda: validate_series(sample, workers=1), 3) * 1000 / 20
        _row("dciodvfy per instance, 2 threads (ref: 1 thread)", ours, ref, "< 1 on 2 cores")


if __name__ == "__main__":
    main()
