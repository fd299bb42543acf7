"""What the hand-over through the object store costs (``airflow.executor: celery``).

With the local executor a task reads a batch straight from the spool; with Celery the
dispatcher first uploads the batch to the object store and a worker on another host downloads
it before reading. This prints, per batch shape, the seconds and instances/s of each part and
the ratio of the whole Celery path (upload + download + read) to the local one (read), against
a throwaway SeaweedFS on loopback.

Usage::

    .venv/bin/python bench/bench_handover.py [--instances 500] [--large 50] [--repeat 3] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset

from dicomflow.config import load_settings
from dicomflow.pipeline.handover import HANDOVER_PROJECT, fetch_batch, release_batch, upload_batch
from dicomflow.spool.records import CloseReason, Door, Origin
from dicomflow.spool.store import Spool
from dicomflow.stack.components import SeaweedS3
from dicomflow.stack.isolated import stack_data_dir, stack_environment
from dicomflow.stack.supervisor import Stack
from dicomflow.storage.client import ObjectStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smoke import parse_args

from tests.dicomfiles import write_ct_series
from tests.intake_testutil import open_session


def _median(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _batch(spool: Spool, files: list[Path]) -> str:
    origin = Origin(Door.DIMSE, "127.0.0.1:40000", "BENCH", "ADMIN")
    intake = open_session(spool, "admin", "bench", origin)
    for path in files:
        intake.store(path, move=False)
    intake.close(CloseReason.RELEASED)
    return intake.batch_ids[0]


def _read_all(spool: Spool, batch_id: str) -> int:
    """What a task does with a batch at the least: read every instance file once."""
    return sum(len(e.path.read_bytes()) for e in spool.manifest(batch_id))


def _large(ds: Dataset, number: int) -> None:
    """A 512 x 512 CT slice (513 KB), the size of a clinical one."""
    ds.Rows = ds.Columns = 512
    ds.PixelData = os.urandom(512 * 512 * 2)


def _drop_cache(cache: Spool, batch_id: str) -> None:
    shutil.rmtree(cache.batches_dir / batch_id, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500, help="small CT instances (39 KB)")
    parser.add_argument("--large", type=int, default=50, help="large instances (~513 KB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure")
    args = parse_args(parser, {"instances": 20, "large": 2, "repeat": 1})
    work = Path(tempfile.mkdtemp(prefix="dicomflow-bench-handover-"))
    data_dir = stack_data_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    env.update(stack_environment(data_dir))
    settings = load_settings(environ=env)
    stack = Stack(settings, [SeaweedS3(settings)])
    try:
        stack.up(report=lambda _m: None)
        store = ObjectStore.from_settings(settings)
        spool = Spool(work / "spool")
        cache = Spool(work / "cache")
        shapes = {
            f"{args.instances} x 39 KB CT": write_ct_series(
                work / "small", range(1, args.instances + 1)
            ),
            f"{args.large} x 513 KB CT": write_ct_series(
                work / "large", range(1, args.large + 1), edit=_large
            ),
        }
        print(f"{'measure':44} | {'ours':>22} | {'reference':>22} | {'ratio':>6} | goal")
        for name, files in shapes.items():
            batch_id = _batch(spool, files)
            megabytes = _read_all(spool, batch_id) / 1e6
            local = _median(lambda b=batch_id: _read_all(spool, b), args.repeat)

            def upload(b: str = batch_id) -> None:
                (spool.batch_path(b) / "handover.json").unlink(missing_ok=True)
                upload_batch(store, spool, b)

            def download(b: str = batch_id) -> None:
                _drop_cache(cache, b)
                fetch_batch(store, cache, b)

            up = _median(upload, args.repeat)
            down = _median(download, args.repeat)
            read = _median(lambda b=batch_id: _read_all(cache, b), args.repeat)
            count = len(files)
            total = up + down + read
            local_cell = f"spool read {local:.3f} s"
            rows = [
                (f"{name}: hand-over in all", f"{total:.3f} s", local_cell, f"{total / local:.0f}"),
                (f"{name}: upload (one tar)", f"{up:.3f} s, {count / up:.0f}/s", "-", "-"),
                (f"{name}: download", f"{down:.3f} s, {megabytes / down:.1f} MB/s", "-", "-"),
                (f"{name}: read the copy", f"{read:.3f} s", local_cell, f"{read / local:.1f}"),
            ]
            for measure, ours, reference, ratio in rows:
                print(f"{measure:44} | {ours:>22} | {reference:>22} | {ratio:>6} | -")
            release_batch(store, spool, batch_id)
        assert not store.list_keys(HANDOVER_PROJECT, "batches/")
    finally:
        stack.down(report=lambda _m: None)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
