"""Fixtures for the processing DAG: the whole local stack but the receiver, and batch helpers."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
import pytest

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings
from dicomflow.spool.records import CloseReason, Door, Origin
from dicomflow.spool.store import Spool
from tests.intake_testutil import open_session

DAG_ID = "service-process-incoming-dcm"


@pytest.fixture(scope="session")
def platform(postgres: Settings, orthanc: Settings, s3: Settings, airflow: Any) -> Settings:
    """Settings of a running PostgreSQL, Orthanc, S3 server and Airflow."""
    return postgres


def spool_batch(
    settings: Settings, files: Sequence[Path], project: str = "admin", dataset: str = "tests"
) -> str:
    """Put files into one closed batch, as the receiver does for an association; the test
    triggers its runs itself (the batch is in state ``triggered``)."""
    spool = Spool.from_settings(settings)
    origin = Origin(Door.DIMSE, "127.0.0.1:40000", dataset.upper(), project.upper())
    intake = open_session(spool, project, dataset, origin)
    for path in files:
        intake.store(Path(path), move=False)
    assert len(intake.batch_ids) == 1
    batch_id = intake.batch_ids[0]
    # The test triggers its own runs. Marked triggered before it closes, the batch is never
    # pending, so the outbox of a receiver in the session stack (the end-to-end tests start
    # one) does not trigger a run of its own, whose last step would remove the batch's files
    # under the test's run.
    spool.mark_triggered(batch_id, f"test-{batch_id}", DAG_ID)
    intake.close(CloseReason.RELEASED)
    return batch_id


def run_dag(
    settings: Settings, batch_id: str, run_id: str | None = None, timeout: float = 180
) -> dict[str, Any]:
    """Trigger the processing DAG for a batch through Airflow's REST API and wait for the end."""
    run_id = run_id or f"test-{batch_id}"
    with AirflowClient.from_settings(settings) as client:
        client.trigger_dag_run(DAG_ID, run_id, {"batch_id": batch_id})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = client.get_dag_run(DAG_ID, run_id)
            if run and run["state"] in ("success", "failed"):
                run["task_logs"] = task_logs(settings, run_id)
                return run
            time.sleep(0.5)
    raise AssertionError(f"DAG run {run_id} did not end within {timeout} s")


def task_logs(settings: Settings, run_id: str, dag_id: str = DAG_ID) -> dict[str, str]:
    """The last lines of each task's log, to say why a run failed."""
    root = settings.log_dir / "airflow-tasks" / f"dag_id={dag_id}" / f"run_id={run_id}"
    logs = {}
    for path in sorted(root.glob("task_id=*/attempt=*.log")):
        lines = path.read_text(errors="replace").splitlines()
        logs[f"{path.parent.name}/{path.name}"] = "\n".join(lines[-15:])
    return logs


def failed_logs(run: dict[str, Any]) -> str:
    """Task logs that mention an error, for assertion messages."""
    return "\n\n".join(
        f"== {name}\n{text}" for name, text in run.get("task_logs", {}).items() if "rror" in text
    )


def copy_files(files: Sequence[Path], folder: Path) -> list[Path]:
    """Copies of ``files`` as a DIMSE sender's instances arrive: Part 10 files with file meta."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for number, path in enumerate(files):
        target = folder / f"{number:03d}-{path.name}"
        if Path(path).read_bytes()[128:132] == b"DICM":
            shutil.copy(path, target)
        else:
            # pydicom ships a few bare datasets; the receiver would have added the file meta.
            pydicom.dcmread(path, force=True).save_as(target, enforce_file_format=True)
        out.append(target)
    return out
