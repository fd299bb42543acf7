"""The outbox's follow-up after a trigger (the receiver indexes the batch there)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.spool.outbox import Outbox
from dicomflow.spool.records import BatchState, CloseReason, Door, Origin
from dicomflow.spool.store import Spool
from tests.receiver.receiver_helpers import good_dataset


def _closed_batch(spool: Spool, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.dcm"
    good_dataset().save_as(path, enforce_file_format=True)
    intake = spool.intake("admin", name, Origin(Door.DIMSE, "127.0.0.1:1", "T", "ADMIN"))
    intake.store(path, move=True)
    intake.close(CloseReason.RELEASED)
    return intake.batch_ids[0]


def test_follow_up_runs_after_each_trigger_and_its_failure_stops_nothing(
    airflow: Any, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    batches = [_closed_batch(spool, tmp_path, name) for name in ("first", "second")]
    seen: list[tuple[str, BatchState]] = []

    def follow_up(batch_id: str) -> None:
        seen.append((batch_id, spool.batch(batch_id).state))
        if len(seen) == 1:
            raise RuntimeError("index down")

    client = AirflowClient(airflow.base_url, airflow.username, airflow.password)
    outbox = Outbox(spool, client, poll_interval=0.2, on_triggered=follow_up)
    outbox.start()
    try:
        deadline = time.monotonic() + 30
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"follow-ups seen: {seen}"
            time.sleep(0.1)
    finally:
        outbox.stop()
    assert sorted(b for b, _ in seen) == sorted(batches)
    # Called once the run exists, never before.
    assert all(state is BatchState.TRIGGERED for _, state in seen)
    assert outbox.triggered == 2
