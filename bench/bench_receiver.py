"""Receive rate of the DICOM receiver against dcmtk's ``storescp``.

Sends the same files with ``TCP_NODELAY=1 dcmsend`` over one association to ``storescp`` and
to our receiver (in this process, on a spool in a temporary directory, fsync included; the
project directory is a fixed in-memory list, so no database is involved) and prints rows
``measure | ours | reference | ratio | goal``. It prints numbers, never asserts. A third row
sends the small files with Nagle's algorithm left on in the sender (no ``TCP_NODELAY`` in
dcmsend's environment), as many modalities do.

Runs come in pairs (ours, then the reference at once) so that a drift of this machine's disk
or CPU hits both sides of a pair. The rates are the best run of each side; the ratio is the
median of the pairs' ratios, with their range in brackets, because a shared machine's speed changes
between pairs by more than the difference measured. Each reference run is a fresh
``storescp`` writing into an empty directory: a second send of the same files to one
``storescp`` overwrites the files of the first in place, which skips the file creation that
every real receive, and ours, pays for.

Usage: ``python bench/bench_receiver.py [--small 2000] [--large 200] [--repeat 5] [--dir DIR]
[--smoke]``
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicomflow.intake.admission import KNOWN_PROJECTS_FILE, Admission
from dicomflow.spool.store import Spool
from receiver.app import Receiver, freeze_startup_objects, use_spool_for_temporary_files

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smoke import parse_args

PROJECT = "bench"


class _Projects:
    def exists(self, name: str) -> bool:
        return name == PROJECT

    def names(self) -> list[str]:
        return [PROJECT]

    def senders(self) -> dict[str, list[tuple[str, str]]]:
        return {}  # no sender lists: every calling AE title is accepted

    def ensure_dataset(self, project: str, dataset: str) -> int:
        return 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_files(directory: Path, count: int, size: int) -> list[Path]:
    """``count`` Explicit VR LE MR/CT instances of about ``size`` bytes, unique UIDs."""
    directory.mkdir(parents=True)
    template = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    side = int((size / 2) ** 0.5)
    template.Rows = template.Columns = side
    template.PixelData = np.zeros((side, side), dtype=np.uint16).tobytes()
    template.StudyInstanceUID = generate_uid()
    template.SeriesInstanceUID = generate_uid()
    paths = []
    for i in range(count):
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.InstanceNumber = i + 1
        path = directory / f"{i:05d}.dcm"
        template.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def send(port: int, files: list[Path], nagle: bool = False) -> float:
    """Seconds for ``dcmsend`` to send ``files`` over one association.

    ``nagle``: leave Nagle's algorithm on in the sender (dcmtk does unless ``TCP_NODELAY=1``
    is in its environment; so do many modalities' stacks).
    """
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    if not nagle:
        env["TCP_NODELAY"] = "1"
    start = time.perf_counter()
    result = subprocess.run(
        ["dcmsend", "-aec", PROJECT.upper(), "127.0.0.1", str(port), *map(str, files)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"dcmsend failed: {result.stderr[-500:]}")
    return elapsed


def send_to_storescp(directory: Path, files: list[Path], nagle: bool = False) -> float:
    """Seconds for ``dcmsend`` to send ``files`` to a new ``storescp`` writing to ``directory``."""
    directory.mkdir()
    port = free_port()
    storescp = subprocess.Popen(
        ["storescp", "-od", str(directory), "-aet", PROJECT.upper(), str(port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or storescp.poll() is not None:
                    raise RuntimeError("storescp did not start listening") from None
                time.sleep(0.05)
        return send(port, files, nagle)
    finally:
        storescp.terminate()
        storescp.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000, help="number of ~9 KB instances")
    parser.add_argument("--large", type=int, default=200, help="number of ~500 KB instances")
    parser.add_argument("--repeat", type=int, default=5, help="pairs of runs per measure")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where both receivers write (default: the system's temporary directory); "
        "put it on the disk the spool will use",
    )
    args = parse_args(parser, {"small": 20, "large": 2, "repeat": 1})
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="bench-receiver-", dir=args.dir))
    try:
        sets = {
            f"{args.small} x 9 KB, one association": (
                make_files(work / "small", args.small, 8_500),
                0.25,
                False,
            ),
            f"{args.large} x 500 KB, one association": (
                make_files(work / "large", args.large, 500_000),
                0.6,
                False,
            ),
        }
        # The same small files from a sender that leaves Nagle's algorithm on: storescp
        # (TCP_NODELAY on its own socket) waits on its delayed acknowledgements, ours does not.
        sets[f"{args.small} x 9 KB, sender with Nagle on"] = (
            sets[f"{args.small} x 9 KB, one association"][0],
            0.25,
            True,
        )
        spool = Spool(work / "spool", max_instances=100_000, max_bytes=1 << 40)
        use_spool_for_temporary_files(spool)
        receiver = Receiver(spool, Admission(_Projects(), spool.root / KNOWN_PROJECTS_FILE), port=0)
        receiver.start()
        # As the receiver's own process does (python -m receiver).
        freeze_startup_objects()
        time.sleep(0.5)
        rows = []
        runs = 0
        try:
            for name, (files, goal, nagle) in sets.items():
                if not files:
                    continue
                ours, ref = [], []
                for _ in range(args.repeat):
                    ours.append(send(receiver.port, files, nagle))
                    runs += 1
                    ref.append(send_to_storescp(work / f"storescp-{runs}", files, nagle))
                # Ratio of rates = inverse ratio of times.
                ratios = sorted(r / o for o, r in zip(ours, ref, strict=True))
                rows.append((name, len(files) / min(ours), len(files) / min(ref), ratios, goal))
        finally:
            receiver.stop()
        # Five cells, as bench/run_all.py collects them: the range goes with the ratio.
        print(f"{'measure':40} | {'ours':>10} | {'reference':>10} | {'ratio (range)':>18} | goal")
        for name, ours_rate, ref_rate, ratios, goal in rows:
            ratio = f"{statistics.median(ratios):4.2f} ({ratios[0]:4.2f}-{ratios[-1]:4.2f})"
            print(f"{name:40} | {ours_rate:8.0f}/s | {ref_rate:8.0f}/s | {ratio:>18} | >= {goal}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
