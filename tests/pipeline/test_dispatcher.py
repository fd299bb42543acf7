"""The dispatcher against a real Airflow: the one hand-over from the spool's outbox."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dicomflow.airflow_api.client import AirflowClient, AirflowUnavailableError
from dicomflow.pipeline import dispatcher as dispatcher_module
from dicomflow.pipeline.dispatcher import (
    INCOMING_DAG_ID,
    VALIDATION_DAG_ID,
    Dispatcher,
    run_id_for,
)
from dicomflow.spool.records import BatchState, CloseReason
from dicomflow.spool.store import Spool
from tests.intake_testutil import open_session
from tests.receiver.receiver_helpers import good_dataset
from tests.stack_testutil import wait_dag_run


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _closed_batch(spool: Spool, tmp_path: Path, name: str = "dispatcher-test") -> str:
    path = tmp_path / f"{name}.dcm"
    good_dataset().save_as(path, enforce_file_format=True)
    intake = open_session(spool, "admin", name)
    intake.store(path, move=True)
    intake.close(CloseReason.RELEASED)
    return intake.batch_ids[0]


def _client(airflow: Any, url: str | None = None) -> AirflowClient:
    return AirflowClient(url or airflow.base_url, airflow.username, airflow.password)


def _until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _lane_runs(spool: Spool) -> list[str]:
    return [r.run_id for r in spool.runs() if r.dag_id == VALIDATION_DAG_ID]


def test_unreachable_airflow_is_named_in_the_error() -> None:
    url = _dead_url()
    client = AirflowClient(url, "admin", "x", timeout=2)
    try:
        client.trigger_dag_run(INCOMING_DAG_ID, "batch-x", {})
    except AirflowUnavailableError as exc:
        assert url in str(exc) and "unreachable" in str(exc)
    else:
        raise AssertionError("no error for an unreachable Airflow")


def test_outbox_waits_while_airflow_is_away_then_each_batch_is_handed_over_once(
    airflow: Any, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    batch_id = _closed_batch(spool, tmp_path)
    dispatcher = Dispatcher(
        spool, _client(airflow, _dead_url()), min_backoff=0.1, max_backoff=0.4, poll_interval=0.2
    )
    dispatcher.start()
    try:
        time.sleep(1.5)
        assert spool.batch(batch_id).state is BatchState.PENDING
        assert dispatcher.failed_attempts >= 3, "retries with backoff while Airflow is away"
        up = _client(airflow)
        dispatcher.client = up
        _until(lambda: spool.batch(batch_id).state is BatchState.TRIGGERED, "never handed over")
        time.sleep(1.0)  # more looks must not trigger again
    finally:
        dispatcher.stop()
    assert dispatcher.handed_over == 1
    assert spool.pending() == []
    record = spool.batch(batch_id)
    assert record.run_id == run_id_for(batch_id)
    runs = [r for r in up.list_dag_runs(INCOMING_DAG_ID) if r["dag_run_id"] == record.run_id]
    assert len(runs) == 1
    assert runs[0]["conf"]["batch_id"] == batch_id
    # A retried trigger (after a crash before triggered.json) is a success, not a second run.
    again = up.trigger_dag_run(INCOMING_DAG_ID, record.run_id, {"batch_id": batch_id})
    assert again.created is False


def test_arrival_comes_before_the_run_and_its_failure_holds_nothing_up(
    airflow: Any, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    batches = [_closed_batch(spool, tmp_path, name) for name in ("first", "second")]
    seen: list[tuple[str, BatchState]] = []

    def arrive(batch_id: str) -> None:
        seen.append((batch_id, spool.batch(batch_id).state))
        if len(seen) == 1:
            raise RuntimeError("index down")

    dispatcher = Dispatcher(spool, _client(airflow), on_arrival=arrive, poll_interval=0.2)
    dispatcher.start()
    try:
        _until(
            lambda: all(spool.batch(b).state is BatchState.TRIGGERED for b in batches),
            f"not handed over; arrivals seen: {seen}",
        )
    finally:
        dispatcher.stop()
    # Each batch arrives (is indexed) before its run exists; the first arrival failed, and
    # its batch was handed over all the same (the DAG indexes it).
    assert all(state is BatchState.PENDING for _, state in seen)
    assert sorted(b for b, _ in seen) == sorted(batches)
    assert dispatcher.handed_over == 2


def test_arrival_is_tried_again_while_airflow_is_away(airflow: Any, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    batch_id = _closed_batch(spool, tmp_path)
    arrivals: list[str] = []

    def arrive(batch: str) -> None:
        arrivals.append(batch)
        if len(arrivals) == 1:
            raise RuntimeError("index down")

    dispatcher = Dispatcher(
        spool,
        _client(airflow, _dead_url()),
        on_arrival=arrive,
        min_backoff=0.1,
        max_backoff=0.2,
        poll_interval=0.2,
    )
    dispatcher.start()
    try:
        _until(lambda: len(arrivals) >= 2, "arrival not tried again while Airflow was away")
        time.sleep(1.0)
    finally:
        dispatcher.stop()
    # Searchable while Airflow is away; once indexed, not indexed again at each look.
    assert arrivals == [batch_id, batch_id]
    assert spool.batch(batch_id).state is BatchState.PENDING


def test_a_closed_batch_wakes_the_dispatcher(airflow: Any, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    # It would look by itself only after a minute: the door's word wakes it.
    dispatcher = Dispatcher(spool, _client(airflow), poll_interval=60, recovery_interval=60)
    dispatcher.start()
    try:
        batch_id = _closed_batch(spool, tmp_path)
        _until(
            lambda: spool.batch(batch_id).state is BatchState.TRIGGERED,
            "a closed batch did not wake the dispatcher",
            timeout=20,
        )
    finally:
        dispatcher.stop()


_DOOR_THAT_DIES = """
import json, os, sys
from pathlib import Path
from dicomflow.spool.store import Spool
from tests.intake_testutil import open_session
from tests.receiver.receiver_helpers import good_dataset
from tests.stack_testutil import wait_dag_run

spool = Spool(Path(sys.argv[1]))
intake = open_session(spool, "admin", "dies")
for n in range(3):
    path = Path(sys.argv[2]) / f"{n}.dcm"
    good_dataset().save_as(path, enforce_file_format=True)
    intake.store(path, move=True)
print(json.dumps(intake.batch_ids), flush=True)
os._exit(0)  # dies in the middle of its session, as a killed door does
"""


def test_a_batch_a_dead_door_left_open_is_closed_and_handed_over(
    airflow: Any, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    dispatcher = Dispatcher(spool, _client(airflow), poll_interval=0.2, recovery_interval=0.5)
    dispatcher.start()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _DOOR_THAT_DIES, str(spool.root), str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).parents[2],
            check=False,
        )
        assert done.returncode == 0, done.stderr
        (batch_id,) = json.loads(done.stdout)
        _until(
            lambda: spool.batch(batch_id).state is BatchState.TRIGGERED,
            "the dead door's batch was not recovered and handed over",
        )
    finally:
        dispatcher.stop()
    record = spool.batch(batch_id)
    assert (record.instances, record.close_reason) == (3, "recovered after restart")


def test_batches_that_close_together_share_one_run(airflow: Any, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    batches = [_closed_batch(spool, tmp_path, f"together-{n}") for n in range(5)]
    dispatcher = Dispatcher(spool, _client(airflow), max_runs=1, poll_interval=0.2)
    dispatcher.start()
    try:
        _until(
            lambda: all(spool.batch(b).state is BatchState.TRIGGERED for b in batches),
            "not handed over",
        )
    finally:
        dispatcher.stop()
    run_ids = {spool.batch(b).run_id for b in batches}
    assert run_ids == {run_id_for(batches)}, "one run for the five"
    assert dispatcher.runs_made == 1 and dispatcher.handed_over == 5
    run = _client(airflow).get_dag_run(INCOMING_DAG_ID, run_id_for(batches))
    assert run is not None and run["conf"]["batch_ids"] == batches


def test_batches_closed_while_a_run_is_in_flight_wait_and_go_together(
    airflow: Any, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    first = _closed_batch(spool, tmp_path, "first")
    dispatcher = Dispatcher(spool, _client(airflow), max_runs=1, poll_interval=0.2)
    dispatcher.start()
    try:
        _until(lambda: spool.batch(first).state is BatchState.TRIGGERED, "first not handed over")
        later = [_closed_batch(spool, tmp_path, f"later-{n}") for n in range(3)]
        time.sleep(1.5)
        assert all(spool.batch(b).state is BatchState.PENDING for b in later), (
            "the one run slot is taken: they wait"
        )
        spool.mark_done(first)  # the first run ends: its slot is free
        _until(
            lambda: all(spool.batch(b).state is BatchState.TRIGGERED for b in later),
            "the waiting batches were not handed over",
        )
    finally:
        dispatcher.stop()
    assert {spool.batch(b).run_id for b in later} == {run_id_for(later)}
    assert dispatcher.runs_made == 2


def test_a_batch_waits_a_moment_for_a_sender_still_sending(airflow: Any, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    still_sending = open_session(spool, "admin", "slow")
    path = tmp_path / "slow.dcm"
    good_dataset().save_as(path, enforce_file_format=True)
    still_sending.store(path, move=True)
    done = _closed_batch(spool, tmp_path, "quick")
    dispatcher = Dispatcher(
        spool, _client(airflow), max_runs=1, gather_seconds=60, poll_interval=0.2
    )
    dispatcher.start()
    try:
        time.sleep(1.0)
        assert spool.batch(done).state is BatchState.PENDING, "waiting for the other sender"
        still_sending.close(CloseReason.RELEASED)
        _until(
            lambda: spool.batch(done).state is BatchState.TRIGGERED,
            "not handed over when the other sender finished",
        )
    finally:
        dispatcher.stop()
    slow = still_sending.batch_ids[0]
    together = run_id_for(sorted([done, slow]))
    assert spool.batch(done).run_id == spool.batch(slow).run_id == together


def test_a_run_recorded_before_a_crash_is_made_with_the_same_id(
    airflow: Any, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    batches = [_closed_batch(spool, tmp_path, f"crash-{n}") for n in range(2)]
    # What a dispatcher that died between recording a run and asking Airflow leaves.
    spool.record_run("batch-recorded-before-crash", INCOMING_DAG_ID, batches)
    dispatcher = Dispatcher(spool, _client(airflow), max_runs=1, poll_interval=0.2)
    dispatcher.start()
    try:
        _until(
            lambda: all(spool.batch(b).state is BatchState.TRIGGERED for b in batches),
            "the recorded run was not made",
        )
    finally:
        dispatcher.stop()
    assert {spool.batch(b).run_id for b in batches} == {"batch-recorded-before-crash"}
    assert dispatcher.runs_made == 1


def test_the_validation_lane_goes_on_past_a_run_never_made_or_ended_without_its_batches(
    airflow: Any, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    batch = _closed_batch(spool, tmp_path, "lane")
    spool.queue_validation(batch)
    # Patient: the API server answers slowly while the session's other runs start.
    client = AirflowClient(airflow.base_url, airflow.username, airflow.password, timeout=60)
    dispatcher = Dispatcher(spool, client, validation_dag_id=VALIDATION_DAG_ID)

    # What a dispatcher that died between recording a lane run and asking Airflow leaves.
    spool.record_run("validate-never-made", VALIDATION_DAG_ID, [batch])
    dispatcher.drain()
    assert client.get_dag_run(VALIDATION_DAG_ID, "validate-never-made") is not None

    # That run ends without taking the batch out of this spool's queue (the platform's tasks
    # do not see this spool), as a lane run whose task ran out of retries does: the batch
    # goes to a new run instead of waiting for good.
    wait_dag_run(client, VALIDATION_DAG_ID, "validate-never-made", timeout=240)
    _until(
        lambda: dispatcher.drain() >= 0 and _lane_runs(spool) not in ([], ["validate-never-made"]),
        "no new lane run after the first ended with its batch still queued",
        timeout=120,
    )
    [new_run] = _lane_runs(spool)
    assert spool.validation_queue() == [batch]
    found = client.get_dag_run(VALIDATION_DAG_ID, new_run)
    assert found is not None and found["conf"]["batch_ids"] == [batch]


def _lane_waiting_beside_a_run(airflow: Any, tmp_path: Path) -> tuple[Spool, Dispatcher, str, str]:
    """A done batch queued for the lane, and a batch whose processing run is in flight."""
    spool = Spool(tmp_path / "spool")
    checked_later = _closed_batch(spool, tmp_path, "lane")
    spool.mark_done(checked_later)
    spool.queue_validation(checked_later)
    arriving = _closed_batch(spool, tmp_path, "arriving")
    client = AirflowClient(airflow.base_url, airflow.username, airflow.password, timeout=60)
    dispatcher = Dispatcher(spool, client, validation_dag_id=VALIDATION_DAG_ID)
    assert dispatcher.drain() == 1
    assert spool.batch(arriving).state is BatchState.TRIGGERED
    return spool, dispatcher, checked_later, arriving


def test_the_validation_lane_waits_for_the_processing_runs_in_flight(
    airflow: Any, tmp_path: Path
) -> None:
    spool, dispatcher, checked_later, arriving = _lane_waiting_beside_a_run(airflow, tmp_path)
    # The arriving batch's processing run is in flight: the lane leaves it the cores.
    dispatcher.drain()
    assert _lane_runs(spool) == []

    # Its run is over (the batch done): the lane run starts.
    spool.mark_done(arriving)
    dispatcher.drain()
    [lane_run] = _lane_runs(spool)
    found = dispatcher.client.get_dag_run(VALIDATION_DAG_ID, lane_run)
    assert found is not None and found["conf"]["batch_ids"] == [checked_later]


def test_the_validation_lane_starts_beside_runs_that_go_on_too_long(
    airflow: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    # As if the lane had waited its LANE_YIELDS_FOR (60 s) already.
    monkeypatch.setattr(dispatcher_module, "LANE_YIELDS_FOR", 0.0)
    spool, _, checked_later, _ = _lane_waiting_beside_a_run(airflow, tmp_path)
    assert [r.batch_ids for r in spool.runs() if r.dag_id == VALIDATION_DAG_ID] == [[checked_later]]
