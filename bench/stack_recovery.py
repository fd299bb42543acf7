"""How fast the supervised stack heals after kill -9: per component, one task, the scheduler.

Starts a whole stack of its own through the supervisor (as ``dicomflow up`` does; free loopback
ports, a throwaway data directory), then measures, typing no command in between:

- per component: kill -9 of its main process -> the supervisor has started a new one (seconds
  until its pid file names a new live process) -> it answers again (``status`` healthy);
- one task: kill -9 of a running ``store_to_pacs`` task (its LocalExecutor worker and task
  runner) while the PACS is held still (SIGSTOP) -> the task runs again (try 2 running) -> its
  DAG run succeeds;
- the scheduler: kill -9 with three runs in flight, their store steps held as above -> every run
  succeeded.

Prints rows ``measure | ours | reference | ratio | goal``; never asserts. Not a ``bench_*.py``:
``make bench`` leaves it out (it takes several minutes and kills things on purpose).

    .venv/bin/python bench/stack_recovery.py [--skip-components]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicomflow.airflow_api.client import AirflowClient, AirflowError
from dicomflow.config import Settings, load_settings
from dicomflow.intake.admission import Destination
from dicomflow.intake.session import IntakeSession
from dicomflow.spool.records import CloseReason, Door, Origin
from dicomflow.spool.store import Spool
from dicomflow.stack.isolated import stack_data_dir, stack_environment
from dicomflow.stack.process import read_record
from dicomflow.stack.supervisor import Stack, State

DAG_ID = "service-process-incoming-dcm"


def _quiet(_line: str) -> None:
    pass


def _wait(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``predicate()`` held (polled every 0.1 s), ``None`` after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except AirflowError:
            pass
        time.sleep(0.1)
    return None


def _fmt(seconds: float | None) -> str:
    return "timeout" if seconds is None else f"{seconds:.1f}"


def components(stack: Stack) -> list[str]:
    """kill -9 each component in turn; rows of restart delays."""
    rows = []
    for comp in stack.components:
        record = read_record(comp.pid_file)
        if record is None or record.process() is None:
            rows.append(f"{comp.name}: not running | - | - | - | -")
            continue
        kill_at = time.monotonic()
        os.kill(record.pid, signal.SIGKILL)

        def respawned(old: int = record.pid, comp_pid: Path = comp.pid_file) -> bool:
            new = read_record(comp_pid)
            return new is not None and new.pid != old and new.process() is not None

        def answers(name: str = comp.name, old: int = record.pid) -> bool:
            row = next(r for r in stack.status() if r.name == name)
            return row.state is State.HEALTHY and row.pid not in (None, old)

        spawned = _wait(respawned, 300)
        healthy = _wait(answers, 300)
        healthy = None if healthy is None else time.monotonic() - kill_at
        rows.append(f"{comp.name}: kill -9 -> new process (s) | {_fmt(spawned)} | - | - | <= 10")
        rows.append(f"{comp.name}: kill -9 -> answers again (s) | {_fmt(healthy)} | - | - | -")
        # Let Airflow settle before the next kill (a dead API server makes the others wait).
        _wait(lambda: all(r.state is State.HEALTHY for r in stack.status()), 300)
    return rows


def _batch(settings: Settings, folder: Path) -> str:
    """Three CT instances in a closed spool batch, marked triggered (the bench triggers it)."""
    source = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    folder.mkdir(parents=True)
    source.SeriesInstanceUID = generate_uid()
    spool = Spool.from_settings(settings)
    origin = Origin(Door.DIMSE, "127.0.0.1:1", "BENCH", "ADMIN")
    intake = IntakeSession(spool, Destination("admin", "recovery"), origin)
    for i in range(3):
        source.SOPInstanceUID = generate_uid()
        source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
        path = folder / f"{i}.dcm"
        source.save_as(path, enforce_file_format=True)
        intake.store(path, move=False)
    [batch_id] = intake.batch_ids
    spool.mark_triggered(batch_id, f"recovery-{batch_id}", DAG_ID)
    intake.close(CloseReason.RELEASED)
    return batch_id


def _tis(client: AirflowClient, run_id: str, task_id: str) -> dict[str, object]:
    return next(t for t in client.task_instances(DAG_ID, run_id) if t["task_id"] == task_id)


def _held(settings: Settings) -> psutil.Process:
    record = read_record(settings.run_dir / "orthanc.pid")
    proc = record.process() if record else None
    assert proc is not None, "Orthanc is not running"
    return proc


def killed_task(
    settings: Settings, client: AirflowClient, work: Path, *, runner_only: bool
) -> list[str]:
    """kill -9 of one running store step; rows: until it runs again, until its run succeeds.

    ``runner_only``: kill the task runner alone (its LocalExecutor worker sees it die and
    reports the failure); else the worker too (nobody reports: the heartbeat timeout does).
    """
    what = "task runner" if runner_only else "task runner and its worker"
    run_id = f"recovery-{_batch(settings, work / ('runner' if runner_only else 'task'))}"
    pacs = _held(settings)
    pacs.suspend()
    try:
        client.trigger_dag_run(DAG_ID, run_id, {"batch_id": run_id.removeprefix("recovery-")})
        _wait(lambda: _tis(client, run_id, "store_to_pacs")["state"] == "running", 300)
        ti_id = str(_tis(client, run_id, "store_to_pacs")["id"])
        task = [
            p
            for p in psutil.process_iter(["cmdline"])
            if ti_id in " ".join(p.info["cmdline"] or [])
        ]
        if runner_only:  # the worker's title names the executor, the runner's does not
            task = [p for p in task if "LocalExecutor" not in " ".join(p.info["cmdline"])]
        kill_at = time.monotonic()
        for proc in task:
            proc.send_signal(signal.SIGKILL)
    finally:
        pacs.resume()

    def again() -> bool:
        ti = _tis(client, run_id, "store_to_pacs")
        return int(str(ti["try_number"])) >= 2 and ti["state"] in ("running", "success")

    rerun = _wait(again, 600)
    rerun = None if rerun is None else time.monotonic() - kill_at
    done = _wait(lambda: (client.get_dag_run(DAG_ID, run_id) or {})["state"] == "success", 600)
    done = None if done is None else time.monotonic() - kill_at
    return [
        f"kill -9 {what} ({len(task)}) -> task runs again (s) | {_fmt(rerun)} | - | - | <= 60",
        f"kill -9 {what} -> its run succeeded (s) | {_fmt(done)} | - | - | -",
    ]


def killed_scheduler(stack: Stack, client: AirflowClient, work: Path) -> list[str]:
    """kill -9 of the scheduler with three runs in flight; row: until all succeeded."""
    settings = stack.settings
    runs = [f"recovery-{_batch(settings, work / f'sched-{i}')}" for i in range(3)]
    pacs = _held(settings)
    pacs.suspend()
    try:
        for run_id in runs:
            client.trigger_dag_run(DAG_ID, run_id, {"batch_id": run_id.removeprefix("recovery-")})
        _wait(
            lambda: sum(_tis(client, r, "store_to_pacs")["state"] == "running" for r in runs) >= 2,
            300,
        )
        scheduler = stack.component("airflow-scheduler")
        record = read_record(scheduler.pid_file)
        assert record is not None
        kill_at = time.monotonic()
        os.kill(record.pid, signal.SIGKILL)
        _wait(
            lambda: (r := read_record(scheduler.pid_file)) is not None and r.pid != record.pid, 60
        )
    finally:
        pacs.resume()
    ok = _wait(
        lambda: all((client.get_dag_run(DAG_ID, r) or {})["state"] == "success" for r in runs), 900
    )
    ok = None if ok is None else time.monotonic() - kill_at
    return [f"scheduler kill -9, 3 runs in flight -> all succeeded (s) | {_fmt(ok)} | - | - | -"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-components", action="store_true", help="only the Airflow rows")
    args = parser.parse_args()
    data_dir = stack_data_dir()
    work = Path(tempfile.mkdtemp(prefix="dicomflow-recovery-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    settings = load_settings(environ={**base, **stack_environment(data_dir)})
    stack = Stack(settings)

    def emit(rows: list[str]) -> None:
        for row in rows:
            print(row, flush=True)

    print("measure | ours | reference | ratio | goal", flush=True)
    try:
        stack.up(report=_quiet, supervise=True)
        if not args.skip_components:
            emit(components(stack))
        with AirflowClient(
            settings.airflow.base_url,
            settings.airflow.username,
            settings.airflow.password,
            timeout=60,
        ) as client:
            emit(killed_task(settings, client, work, runner_only=True))
            emit(killed_task(settings, client, work, runner_only=False))
            emit(killed_scheduler(stack, client, work))
    finally:
        stack.down(report=_quiet)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
