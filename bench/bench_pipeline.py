"""End to end: 2,000 small instances in 20 series through one dcmsend, until all are validated.

Reference, measured in the same run: Orthanc alone receiving the same files by C-STORE (it
stores each instance before answering). Ours: the whole platform on a stack of its own: the
receiver, the processing DAG (PACS, thumbnails, validation of a representative set, index,
mappings) and the background validation lane (every other instance), measured after one small
warm-up batch (``--cold`` measures the first batch after ``up``). Prints rows
``measure | ours | reference | ratio | goal`` and the time per task of both DAGs; never asserts.

Usage: ``python bench/bench_pipeline.py [--series 20] [--per-series 100] [--smoke] ...``
(``--help`` lists the rest).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dicomflow.config import Settings, load_settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.index import open_index
from dicomflow.stack.isolated import stack_data_dir, stack_environment
from dicomflow.stack.supervisor import Stack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from platform_bench import (
    DAG_ID,
    VALIDATION_DAG_ID,
    checked,
    dcmsend,
    make_instances,
    orthanc_alone,
    processed,
    step_times,
    to_check,
    warm_up,
)
from smoke import parse_args


def ours(
    settings: Settings, folder: Path, expected: dict[str, int], per_series: int, wait: float
) -> dict[str, float]:
    """Send the files; seconds until each milestone was reached by the last series."""
    ProjectStore(make_engine(settings.platform_db_url)).create_project("bench")
    index = open_index(settings)
    start = time.monotonic()
    send = dcmsend(settings.receiver.port, folder, "bench", "bench")
    released = time.monotonic()
    # Milestone -> series that have not reached it yet, and when the last one did.
    waiting = {name: set(expected) for name in ("searchable", "processed", "validated")}
    reached: dict[str, float] = {}
    while waiting["validated"] and time.monotonic() - start < wait:
        for uid in list(waiting["validated"]):
            doc = index.get("bench", uid)
            if not doc or doc.get("instance_count") != per_series:
                continue
            met = {
                "searchable": True,
                "processed": processed(doc),
                "validated": processed(doc) and checked(doc) >= expected[uid],
            }
            for name, done in met.items():
                if done and uid in waiting[name]:
                    waiting[name].discard(uid)
                    if not waiting[name]:
                        reached[name] = time.monotonic()
        time.sleep(0.05)
    index.close()
    if waiting["validated"]:
        late = {name: len(uids) for name, uids in waiting.items() if uids}
        raise SystemExit(f"series short of each milestone after {wait:.0f} s: {late}")
    return {
        "send": send,
        "total": reached["validated"] - start,
        **{name: at - released for name, at in reached.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--per-series", type=int, default=100)
    parser.add_argument(
        "--validation-sample",
        type=int,
        default=0,
        help="validation.sample of the stack (instances the background lane checks per series; "
        "0: all, the default)",
    )
    parser.add_argument(
        "--batch-max-instances",
        type=int,
        default=None,
        help="receiver.batch_max_instances of the stack (default: the configured one)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="measure the first batch after `up` (default: after one warm-up batch)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=900.0,
        help="seconds to wait for every series to be validated before giving up",
    )
    args = parse_args(parser, {"series": 2, "per_series": 5, "wait": 180.0})
    work = Path(tempfile.mkdtemp(prefix="dicomflow-bench-"))
    data_dir = stack_data_dir()
    env = stack_environment(data_dir)
    env["DICOMFLOW_VALIDATION__SAMPLE"] = str(args.validation_sample)
    if args.batch_max_instances is not None:
        env["DICOMFLOW_RECEIVER__BATCH_MAX_INSTANCES"] = str(args.batch_max_instances)
    settings = load_settings(
        environ={**{k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}, **env}
    )
    stack = Stack(settings)
    try:
        files = work / "files"
        files.mkdir()
        make_instances(files, args.series, args.per_series)
        expected = to_check(files, args.validation_sample or None)
        n = args.series * args.per_series
        reference = orthanc_alone(files, work).seconds
        stack.up(report=lambda _m: None)
        if not args.cold:
            warm_up(settings, work, args.wait)
        result = ours(settings, files, expected, args.per_series, args.wait)
        steps, runs, batches = step_times(settings, "bench")
    finally:
        stack.down(report=lambda _m: None)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{'measure':72} | {'ours':>10} | {'reference':>10} | {'ratio':>6} | goal")
    ours_rate, ref_rate = n / result["total"], n / reference
    checked = f"{args.validation_sample}/series" if args.validation_sample else "all"
    rate_name = f"end-to-end rate, {n} instances, {args.series} series, validated {checked}"
    print(
        f"{rate_name:72} | {ours_rate:10.0f} | {ref_rate:10.0f} | "
        f"{ours_rate / ref_rate:6.2f} | >= 0.5x Orthanc alone"
    )
    print(
        f"{'receive time by dcmsend (s)':72} | {result['send']:10.2f} | {reference:10.2f} | "
        f"{reference / result['send']:6.2f} | -"
    )
    print(
        f"{'association release -> last series searchable (s)':72} | "
        f"{result['searchable']:10.2f} | {'-':>10} | {'-':>6} | <= 2 s"
    )
    for name, measure in (
        ("processed", "association release -> stored, thumbnails, first validation (s)"),
        ("validated", "association release -> every instance validated (s)"),
    ):
        print(f"{measure:72} | {result[name]:10.2f} | {'-':>10} | {'-':>6} | -")
    print(f"{'batches':72} | {batches:10d} | {'-':>10} | {'-':>6} | -")
    for dag_id in (DAG_ID, VALIDATION_DAG_ID):
        print(f"{'  runs of ' + dag_id:72} | {runs.get(dag_id, 0):10d} | {'-':>10} | {'-':>6} | -")
    for task, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        step = f"  {task} (s, summed over runs)"
        print(f"{step:72} | {seconds:10.2f} | {'-':>10} | {'-':>6} | -")


if __name__ == "__main__":
    main()
