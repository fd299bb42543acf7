"""Helpers shared by the test folders that use the real stack: projects, uploads, DAG runs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.importer.uploads import upload_area


def project_store_with(engine: Engine, project: str, description: str) -> ProjectStore:
    """The real project store, with ``project`` created if it is not there yet.

    Each test folder has a project of its own, so that the folders can run in any order
    in one session without seeing each other's datasets.
    """
    store = ProjectStore(engine)
    store.create_project(project, description)
    return store


def wait_dag_run(
    client: AirflowClient, dag_id: str, run_id: str, timeout: float = 180
) -> dict[str, Any]:
    """Wait for a DAG run to succeed or fail; return the run as the REST API gives it.

    Raises
    ------
    AssertionError
        When the run has not ended within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get_dag_run(dag_id, run_id)
        if run and run["state"] in ("success", "failed"):
            return run
        time.sleep(0.5)
    raise AssertionError(f"{dag_id}/{run_id} did not end within {timeout} s")


def upload_files(settings: Settings, project: str, files: dict[str, Path]) -> str:
    """Put local files into the uploads area as one upload of ``project``; return its id.

    ``files`` maps the path inside the upload to the local file, as the Data Upload page
    sends them.
    """
    area = upload_area(settings)
    record = area.create(project, "tester", [(p, f.stat().st_size) for p, f in files.items()])
    for path, local in files.items():
        area.put_file(project, record.id, path, local)
    return record.id


def wait_processed(settings: Settings, batch_ids: list[str], timeout: float = 180) -> None:
    """Wait until the dispatcher has handed each batch over and its DAG run has succeeded.

    Raises
    ------
    AssertionError
        When a batch is not handed over in time or its run did not succeed.
    """
    from dicomflow.pipeline.dispatcher import INCOMING_DAG_ID, run_id_for
    from dicomflow.spool.records import BatchState
    from dicomflow.spool.store import Spool

    spool = Spool.from_settings(settings)
    deadline = time.monotonic() + timeout
    for batch_id in batch_ids:
        while spool.batch(batch_id).state in (BatchState.OPEN, BatchState.PENDING):
            assert time.monotonic() < deadline, f"batch {batch_id} was never handed over"
            time.sleep(0.2)
    with AirflowClient.from_settings(settings) as client:
        for batch_id in batch_ids:
            left = max(1.0, deadline - time.monotonic())
            run = wait_dag_run(client, INCOMING_DAG_ID, run_id_for(batch_id), left)
            assert run["state"] == "success", f"batch {batch_id}: run {run['state']}"


def dcmsend(settings: Settings, folder: Path, dataset: str, project: str) -> None:
    """Send every file under ``folder`` to the receiver, as ``dataset`` to ``project``."""
    result = subprocess.run(
        [
            "dcmsend",
            "127.0.0.1",
            str(settings.receiver.port),
            "--aetitle",
            dataset,
            "--call",
            project,
            "--scan-directories",
            "--recurse",
            str(folder),
        ],
        env={**os.environ, "TCP_NODELAY": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
