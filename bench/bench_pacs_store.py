"""The store step alone: our PACS client (STOW-RS, or C-STORE) against dcmsend's C-STORE.

Every measure stores fresh instances into a fresh Orthanc configured as the stack configures
its PACS (DICOMweb plugin, authentication, its DICOM port opened for the platform's AE title),
through ``dicomflow.pacs.sending.store_instances``, the code the DAG's ``store_to_pacs`` step
runs, with the settings varied: STOW-RS request sizes and requests in flight, C-STORE
associations. Reference, in the same run: ``dcmsend`` (dcmtk) sending the same kind of files
into the same Orthanc by C-STORE over one association. Orthanc's own CPU per instance is shown
too, since on two cores the PACS's work and ours compete.

Prints rows ``measure | ours | reference | ratio | goal``; never asserts.

Usage: ``python bench/bench_pacs_store.py [--small 2000] [--large 200] [--smoke]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from platform_bench import NODELAY, bench_settings, cpu_seconds, files_of, load, make_instances
from smoke import parse_args

from dicomflow.config import Settings
from dicomflow.pacs.client import DicomWebClient
from dicomflow.pacs.sending import store_instances
from dicomflow.stack.components import Orthanc
from dicomflow.stack.isolated import free_port
from dicomflow.stack.process import read_record
from dicomflow.stack.supervisor import Stack

#: (label, settings of the pacs section): what is measured, defaults first.
VARIANTS: tuple[tuple[str, dict[str, object]], ...] = (
    ("STOW-RS 100 x 3 (defaults)", {"protocol": "dicomweb"}),
    ("STOW-RS 100 x 1", {"protocol": "dicomweb", "stow_concurrency": 1}),
    ("STOW-RS 25 x 4", {"protocol": "dicomweb", "stow_batch_size": 25, "stow_concurrency": 4}),
    ("STOW-RS 500 x 2", {"protocol": "dicomweb", "stow_batch_size": 500, "stow_concurrency": 2}),
    ("C-STORE, 1 association", {"protocol": "dimse", "dimse_associations": 1}),
    ("C-STORE, 2 associations", {"protocol": "dimse", "dimse_associations": 2}),
    ("C-STORE, 4 associations", {"protocol": "dimse", "dimse_associations": 4}),
)


@dataclass
class Measure:
    seconds: float
    pacs_cpu: float
    client_cpu: float


class FreshOrthanc:
    """An Orthanc as the stack makes it, DICOM port open, in a data directory of its own."""

    def __init__(self) -> None:
        self.settings = bench_settings(pacs__dicom_port=str(free_port()))
        self._stack = Stack(self.settings, [Orthanc(self.settings)])

    def __enter__(self) -> FreshOrthanc:
        self._stack.up(report=lambda _m: None)
        record = read_record(self.settings.run_dir / "orthanc.pid")
        proc = record.process() if record else None
        if proc is None:
            raise RuntimeError("Orthanc did not start")
        self.process: psutil.Process = proc
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.down(report=lambda _m: None)
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)


def ours(files: list[Path], pacs: dict[str, object]) -> Measure:
    with FreshOrthanc() as orthanc:
        section = orthanc.settings.pacs.replace(**pacs)
        settings: Settings = orthanc.settings.replace(pacs=section)
        with DicomWebClient.from_settings(settings) as dicomweb:
            before, client = cpu_seconds(orthanc.process), time.process_time()
            start = time.monotonic()
            result = store_instances(settings, dicomweb, files)
            took = time.monotonic() - start
            spent = time.process_time() - client
        if result.failed or len(result.stored) != len(files):
            raise SystemExit(f"{len(result.stored)} of {len(files)} stored: {result.failed}")
        return Measure(took, cpu_seconds(orthanc.process) - before, spent)


def dcmsend(files: list[Path]) -> Measure:
    with FreshOrthanc() as orthanc:
        pacs = orthanc.settings.pacs
        before = cpu_seconds(orthanc.process)
        start = time.monotonic()
        subprocess.run(
            [
                "dcmsend",
                "-aet",
                pacs.calling_ae_title,
                "-aec",
                pacs.ae_title,
                "127.0.0.1",
                str(pacs.dicom_port),
                *map(str, files),
            ],
            env=NODELAY,
            check=True,
            capture_output=True,
        )
        took = time.monotonic() - start
        return Measure(took, cpu_seconds(orthanc.process) - before, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000, help="~39 KB instances (20 series)")
    parser.add_argument("--large", type=int, default=200, help="~500 KB instances")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measure (best kept)")
    parser.add_argument(
        "--variants",
        default="",
        help="comma-separated numbers (1-based) of the variants to measure (default: all): "
        + "; ".join(f"{n} {label}" for n, (label, _) in enumerate(VARIANTS, 1)),
    )
    args = parse_args(parser, {"small": 20, "large": 2, "variants": "1,5"})
    chosen = [VARIANTS[int(n) - 1] for n in args.variants.split(",") if n] or list(VARIANTS)
    rows: list[tuple[str, str, str, str, str]] = []
    work = Path(tempfile.mkdtemp(prefix="bench-pacs-store-"))
    try:
        for label, count, side, series in (
            (f"{args.small} x 39 KB", args.small, 128, 20),
            (f"{args.large} x 500 KB", args.large, 500, 1),
        ):
            if not count:
                continue
            made = 0

            def fresh(count: int = count, side: int = side, series: int = series) -> list[Path]:
                nonlocal made
                made += 1
                folder = work / f"{side}-{made}"
                make_instances(folder, min(series, count), max(1, count // series), side=side)
                return files_of(folder)

            print(f"{label}: dcmsend (load {load()})", file=sys.stderr, flush=True)
            ref = min((dcmsend(fresh()) for _ in range(args.repeat)), key=lambda m: m.seconds)
            n = min(series, count) * max(1, count // series)
            rows.append(
                (
                    f"{label}: dcmsend C-STORE, Orthanc CPU ms/inst {ref.pacs_cpu / n * 1e3:.2f}",
                    f"{n / ref.seconds:.0f}/s",
                    "-",
                    "-",
                    "-",
                )
            )
            for name, pacs in chosen:
                print(f"{label}: {name} (load {load()})", file=sys.stderr, flush=True)
                got = min(
                    (ours(fresh(), pacs) for _ in range(args.repeat)), key=lambda m: m.seconds
                )
                rows.append(
                    (
                        f"{label}: {name}; CPU ms/inst Orthanc {got.pacs_cpu / n * 1e3:.2f}, "
                        f"client {got.client_cpu / n * 1e3:.2f}",
                        f"{n / got.seconds:.0f}/s",
                        f"{n / ref.seconds:.0f}/s",
                        f"{ref.seconds / got.seconds:.2f}",
                        "-",
                    )
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':{width}} | {'ours':>8} | {'reference':>9} | ratio | goal")
    print(f"{'(load at the end: ' + load() + ')':{width}} | {'-':>8} | {'-':>9} | - | -")
    for row in rows:
        print(f"{row[0]:{width}} | {row[1]:>8} | {row[2]:>9} | {row[3]:>5} | {row[4]}")


if __name__ == "__main__":
    main()
