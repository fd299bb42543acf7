"""Airflow heals after kill -9 with nobody typing a command: the scheduler, one task.

Both scenarios hold the session's PACS still (SIGSTOP: a PACS that hangs), so that store steps
are in flight, blocked on it, when the kill comes; then they let it go on.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings
from dicomflow.stack import control
from dicomflow.stack.components import AirflowScheduler, Orthanc
from dicomflow.stack.process import read_record, wait_until
from dicomflow.stack.supervisor import Stack
from tests.conftest import AirflowServer
from tests.dicomfiles import write_ct_series
from tests.pipeline.conftest import DAG_ID, spool_batch
from tests.stack.stack_testutil import ended, quiet
from tests.stack_testutil import wait_dag_run


@pytest.fixture
def platform(
    postgres: Settings, orthanc: Settings, s3: Settings, airflow: AirflowServer
) -> Settings:
    """The session's PostgreSQL, PACS, S3 server and Airflow."""
    return postgres


@contextmanager
def pacs_held(settings: Settings) -> Iterator[None]:
    """The PACS stopped in its tracks (it accepts connections and answers nothing) until the end."""
    record = read_record(Orthanc(settings).pid_file)
    proc = record.process() if record else None
    assert proc is not None, "the session's Orthanc is not running"
    proc.suspend()
    try:
        yield
    finally:
        proc.resume()


def _client(settings: Settings) -> AirflowClient:
    # A patient client: a busy machine slows Airflow's API server down while tasks start.
    return AirflowClient(
        settings.airflow.base_url,
        settings.airflow.username,
        settings.airflow.password,
        timeout=60,
    )


def _trigger(settings: Settings, client: AirflowClient, folder: Path, count: int) -> list[str]:
    runs = []
    for i in range(count):
        files = write_ct_series(folder / f"series-{i}", range(1, 4))
        batch = spool_batch(settings, files, dataset="crash")
        run_id = f"crash-{batch}"
        client.trigger_dag_run(DAG_ID, run_id, {"batch_id": batch})
        runs.append(run_id)
    return runs


def _storing(client: AirflowClient, runs: list[str]) -> list[dict[str, Any]]:
    """The store steps of ``runs`` that are running now."""
    return [
        ti
        for run_id in runs
        for ti in client.task_instances(DAG_ID, run_id)
        if ti["task_id"] == "store_to_pacs" and ti["state"] == "running"
    ]


def _tries(client: AirflowClient, run_id: str, task_id: str) -> int:
    ti = next(t for t in client.task_instances(DAG_ID, run_id) if t["task_id"] == task_id)
    return int(ti["try_number"])


def test_a_killed_scheduler_is_restarted_without_its_leftovers_and_every_run_completes(
    platform: Settings, tmp_path: Path
) -> None:
    scheduler = AirflowScheduler(platform)
    # A supervisor over the session's running scheduler (it takes over watching it).
    watcher = Stack(platform, [scheduler])
    watcher.up(report=quiet, supervise=True)
    try:
        with _client(platform) as client:
            with pacs_held(platform):
                runs = _trigger(platform, client, tmp_path, 2)
                assert wait_until(lambda: bool(_storing(client, runs)), 180)
                old = read_record(scheduler.pid_file)
                assert old is not None
                # Its LocalExecutor workers and their task processes, in its session.
                old_life = [p for p in psutil.process_iter() if _sid(p) == old.pid]
                assert len(old_life) >= 3
                os.kill(old.pid, signal.SIGKILL)

                def restarted() -> bool:
                    record = read_record(scheduler.pid_file)
                    return record is not None and record.pid != old.pid

                assert wait_until(restarted, 60)

            # Nothing of the old scheduler's life is left: an orphaned worker holding a
            # transaction open would stall the new scheduler for good.
            assert [p.pid for p in old_life if not ended(p.pid)] == []
            for run_id in runs:
                run = wait_dag_run(client, DAG_ID, run_id, timeout=240)
                assert run["state"] == "success", run_id
            # The store steps cut short by the kill ran again.
            assert max(_tries(client, r, "store_to_pacs") for r in runs) >= 2
        log = control.log_file(platform).read_text()
        assert "airflow-scheduler died" in log
        assert "airflow-scheduler restarted and healthy" in log
    finally:
        control.stop_supervisor(platform)


def _sid(proc: psutil.Process) -> int | None:
    try:
        return os.getsid(proc.pid)
    except OSError:
        return None


def test_a_killed_task_runs_again_and_its_run_succeeds(platform: Settings, tmp_path: Path) -> None:
    with _client(platform) as client:
        with pacs_held(platform):
            [run_id] = _trigger(platform, client, tmp_path, 1)
            assert wait_until(lambda: bool(_storing(client, [run_id])), 180)
            [ti] = _storing(client, [run_id])
            # The task's processes (the LocalExecutor worker that supervises it and the task
            # runner it forked) carry the task instance's id in their titles.
            task = [p for p in psutil.process_iter() if ti["id"] in " ".join(_title(p))]
            assert len(task) == 2
            for proc in task:
                proc.send_signal(signal.SIGKILL)
        run = wait_dag_run(client, DAG_ID, run_id, timeout=240)
        assert run["state"] == "success"
        assert _tries(client, run_id, "store_to_pacs") == 2


def _title(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []
