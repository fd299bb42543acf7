"""Micro-benchmark of the per-series processing core: grouping, thumbnails, validation.

Prints rows ``measure | ours | reference | ratio | goal``; asserts nothing. References are
the naive way of doing the same thing, measured here on the same files (decode every
frame; full-header reads; one dciodvfy at a time), so the ratio shows what the design
choice buys.

Usage::

    .venv/bin/python bench/bench_thumbnails.py [--instances 100] [--repeat 5] [--smoke]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicomflow.dicom.document import SeriesFacts, header_fields, series_document
from dicomflow.dicom.headers import SeriesGroup, group_series
from dicomflow.thumbnails import render_series_thumbnail
from dicomflow.thumbnails.imaging import frame_to_rgb, resize_to_fit
from dicomflow.validation import Validator, validate_series
from dicomflow.validation.forkserver import PreloadUnavailableError, build_preload

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smoke import parse_args

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


def _document(group: SeriesGroup) -> dict[str, object]:
    """A series' index document as the pipeline makes it: one header read, then the facts."""
    fields, notes = header_fields(group)
    numbers = tuple(i.instance_number for i in group.instances if i.instance_number is not None)
    facts = SeriesFacts(group.series_instance_uid, len(group.instances), instance_numbers=numbers)
    return series_document(fields, facts, notes=notes)


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


def _validation_rows(sample: SeriesGroup, preload_dir: Path, repeat: int) -> None:
    """dciodvfy per instance: 2 workers against 1, then fork servers against plain runs.

    The pipeline validates through one :class:`Validator` per batch (``validation.workers``,
    ``validation.fork_server``); each validator here is warmed up once, so the times are of
    a running validator, not of starting its threads and servers.
    """
    count = len(sample.instances)

    def per_instance(validator: Validator) -> float:
        validate_series(sample, validator)
        return _best(lambda: validate_series(sample, validator), repeat) * 1000 / count

    with Validator(workers=2) as two, Validator(workers=1) as one:
        plain_two = per_instance(two)
        _row(
            "dciodvfy per instance, 2 workers (ref: 1 worker), plain runs",
            plain_two,
            per_instance(one),
            "< 1 on 2 cores",
        )
    try:
        preload = build_preload(preload_dir)
    except PreloadUnavailableError as exc:
        print(f"fork servers not measured: {exc}", file=sys.stderr)
        print("dciodvfy per instance, fork servers, 2 workers | - | - | - | < 1 (no C compiler)")
        return
    with Validator(workers=2, preload=preload) as forked:
        _row(
            "dciodvfy per instance, fork servers, 2 workers (ref: plain runs)",
            per_instance(forked),
            plain_two,
            "< 1",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=100, help="CT instances in the series")
    parser.add_argument("--repeat", type=int, default=5)
    args = parse_args(parser, {"instances": 5, "repeat": 1})
    n = args.instances
    warnings.simplefilter("ignore")
    print("measure | ours | reference | ratio | goal")
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_series(Path(tmp), n)

        ours = _best(lambda: group_series(paths), args.repeat) * 1000
        ref = _best(lambda: [pydicom.dcmread(p) for p in paths], args.repeat) * 1000
        _row(f"group {n} x 512x512 CT headers (ref: full reads)", ours, ref, "< 1")

        group = group_series(paths).series[0]
        ours = _best(lambda: _document(group), args.repeat) * 1000
        _row("series document, 1 header", ours, ours, "< 5 ms")

        headers_given = _best(lambda: render_series_thumbnail(group), args.repeat) * 1000
        ref = _best(lambda: _naive_thumbnail(paths[n // 2]), args.repeat) * 1000
        _row(
            f"thumbnail {n}-slice CT series, headers given (ref: full read of 1)",
            headers_given,
            ref,
            "<= 1.5",
        )

        ours = _best(lambda: render_series_thumbnail(paths), args.repeat) * 1000
        _row(
            f"thumbnail {n}-slice CT series from paths (ref: same, headers given)",
            ours,
            headers_given,
            "< 60 ms",
        )

        us = _file("color3d_jpeg_baseline.dcm")  # 120 frames JPEG colour US
        ours = _best(lambda: render_series_thumbnail([us]), args.repeat) * 1000
        ref = _best(lambda: _naive_thumbnail(us), max(1, args.repeat // 2)) * 1000
        _row("thumbnail 120-frame colour US (ref: decode all frames)", ours, ref, "< 0.1")

        sample = group_series(paths[:20]).series[0]
        _validation_rows(sample, Path(tmp) / "cache", min(3, args.repeat))


if __name__ == "__main__":
    main()
