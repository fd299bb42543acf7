"""The outbox against a real Airflow: pending while unreachable, then triggered exactly once."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from dicomflow.airflow_api.client import AirflowClient, AirflowUnavailableError
from dicomflow.spool.outbox import INCOMING_DAG_ID, Outbox, run_id_for
from dicomflow.spool.records import BatchState, CloseReason, Door, Origin
from dicomflow.spool.store import Spool
from tests.receiver.receiver_helpers import good_dataset


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _closed_batch(spool: Spool, tmp_path: Path) -> str:
    path = tmp_path / "one.dcm"
    good_dataset().save_as(path, enforce_file_format=True)
    intake = spool.intake("admin", "outbox-test", Origin(Door.DIMSE, "127.0.0.1:1", "T", "ADMIN"))
    intake.store(path, move=True)
    intake.close(CloseReason.RELEASED)
    return intake.batch_ids[0]


def test_unreachable_airflow_is_named_in_the_error() -> None:
    url = _dead_url()
    client = AirflowClient(url, "admin", "x", timeout=2)
    try:
        client.trigger_dag_run(INCOMING_DAG_ID, "batch-x", {})
    except AirflowUnavailableError as exc:
        assert url in str(exc) and "unreachable" in str(exc)
    else:
        raise AssertionError("no error for an unreachable Airflow")


def test_pending_until_airflow_is_reachable_then_triggered_once(
    airflow: object, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    batch_id = _closed_batch(spool, tmp_path)
    down = AirflowClient(_dead_url(), airflow.username, airflow.password, timeout=2)  # type: ignore[attr-defined]
    outbox = Outbox(spool, down, min_backoff=0.1, max_backoff=0.4, poll_interval=0.2)
    outbox.start()
    try:
        time.sleep(1.5)
        assert spool.batch(batch_id).state is BatchState.PENDING
        assert outbox.failed_attempts >= 3, "retries with backoff while Airflow is down"
        up = AirflowClient(airflow.base_url, airflow.username, airflow.password)  # type: ignore[attr-defined]
        outbox.client = up
        deadline = time.monotonic() + 30
        while spool.batch(batch_id).state is not BatchState.TRIGGERED:
            assert time.monotonic() < deadline, "batch never triggered"
            time.sleep(0.1)
        time.sleep(1.0)  # more loops must not trigger again
    finally:
        outbox.stop()
    assert outbox.triggered == 1
    record = spool.batch(batch_id)
    assert record.run_id == run_id_for(batch_id)
    runs = [r for r in up.list_dag_runs(INCOMING_DAG_ID) if r["dag_run_id"] == record.run_id]
    assert len(runs) == 1
    assert runs[0]["conf"]["batch_id"] == batch_id
    # A retried trigger (e.g. after a crash before triggered.json) is a success, not a second run.
    again = up.trigger_dag_run(INCOMING_DAG_ID, record.run_id, {"batch_id": batch_id})
    assert again.created is False
    assert up.get_dag_run(INCOMING_DAG_ID, record.run_id) is not None
