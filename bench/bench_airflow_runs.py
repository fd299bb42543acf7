"""How many runs of the processing DAG Airflow completes per second, per executor.

A stack of its own (receiver off) for each executor (``local``, then ``celery`` with one
worker on the same host); ``--runs`` batches of one small instance each are put in the spool
and their runs triggered at once through the REST API, as the dispatcher would if it made one
run per batch. Prints the seconds from the first trigger to the last run's end, runs/s and
task instances/s (8 per run), i.e. the orchestration's own ceiling: the steps' work is tiny.

Usage::

    .venv/bin/python bench/bench_airflow_runs.py [--runs 24] [--executors local,celery] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dicomflow.airflow_api.client import AirflowClient, AirflowUnavailableError
from dicomflow.config import load_settings
from dicomflow.spool.records import CloseReason, Door, Origin
from dicomflow.spool.store import Spool
from dicomflow.stack.isolated import free_port, stack_data_dir, stack_environment
from dicomflow.stack.supervisor import Stack

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smoke import parse_args

from tests.dicomfiles import write_ct_series
from tests.intake_testutil import open_session

DAG_ID = "service-process-incoming-dcm"
TASKS_PER_RUN = 8


def _measure(executor: str, runs: int, work: Path) -> tuple[float, int]:
    data_dir = stack_data_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    env.update(stack_environment(data_dir))
    env |= {
        "DICOMFLOW_AIRFLOW__EXECUTOR": executor,
        "DICOMFLOW_AIRFLOW__BROKER_PORT": str(free_port()),
        "DICOMFLOW_RECEIVER__MANAGED": "false",
        "DICOMFLOW_WEB__MANAGED": "false",
        "DICOMFLOW_VALIDATION__BACKGROUND": "false",
    }
    settings = load_settings(environ=env)
    stack = Stack(settings)
    try:
        stack.up(report=lambda _m: None)
        spool = Spool.from_settings(settings)
        batch_ids = []
        for i in range(runs):
            files = write_ct_series(work / f"{executor}-{i}", [1])
            origin = Origin(Door.DIMSE, "127.0.0.1:40000", "BENCH", "ADMIN")
            intake = open_session(spool, "admin", "bench", origin)
            intake.store(files[0], move=False)
            batch_ids.append(intake.batch_ids[0])
            spool.mark_triggered(batch_ids[-1], f"bench-{batch_ids[-1]}", DAG_ID)
            intake.close(CloseReason.RELEASED)
        with AirflowClient.from_settings(settings) as client:
            start = time.monotonic()
            for batch_id in batch_ids:
                # The API server's one process also serves the running tasks: a trigger can
                # time out while runs start; asked again, an existing run answers 409 (fine).
                for _ in range(10):
                    try:
                        client.trigger_dag_run(
                            DAG_ID, f"bench-{batch_id}", {"batch_ids": [batch_id]}
                        )
                        break
                    except AirflowUnavailableError:
                        time.sleep(1)
            ended: dict[str, str] = {}
            deadline = start + 1800
            while len(ended) < runs and time.monotonic() < deadline:
                for batch_id in batch_ids:
                    if batch_id in ended:
                        continue
                    try:
                        run = client.get_dag_run(DAG_ID, f"bench-{batch_id}")
                    except AirflowUnavailableError:
                        continue
                    if run and run["state"] in ("success", "failed"):
                        ended[batch_id] = run["state"]
                time.sleep(0.5)
            seconds = time.monotonic() - start
        return seconds, sum(1 for s in ended.values() if s == "success")
    finally:
        stack.down(report=lambda _m: None, sweep=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=24, help="runs triggered at once")
    parser.add_argument("--executors", default="local,celery", help="comma-separated")
    args = parse_args(parser, {"runs": 2, "executors": "celery"})
    work = Path(tempfile.mkdtemp(prefix="dicomflow-bench-runs-"))
    try:
        measured = {e: _measure(e, args.runs, work) for e in args.executors.split(",")}
        local = measured.get("local")
        print(f"{'measure':44} | {'ours':>30} | {'reference':>16} | {'ratio':>6} | goal")
        for executor, (seconds, ok) in measured.items():
            rate = args.runs / seconds
            ours = f"{rate:.2f} runs/s ({ok}/{args.runs} ok)"
            tasks = f"{args.runs * TASKS_PER_RUN / seconds:.1f} tasks/s"
            reference, ratio = "-", "-"
            if local is not None and executor != "local":
                reference, ratio = (
                    f"local {args.runs / local[0]:.2f}/s",
                    f"{local[0] / seconds:.2f}",
                )
            print(
                f"{executor + ': ' + str(args.runs) + ' runs at once':44} | {ours:>30} | "
                f"{reference:>16} | {ratio:>6} | -"
            )
            print(f"{executor + ': task instances':44} | {tasks:>30} | {'-':>16} | {'-':>6} | -")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
