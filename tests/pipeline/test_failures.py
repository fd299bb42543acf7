"""A batch whose run fails says where and why, and runs again once the PACS is back."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dicomflow.cli import main
from dicomflow.config import Settings
from dicomflow.pipeline import failures
from dicomflow.pipeline.dispatcher import INCOMING_DAG_ID
from dicomflow.pipeline.failures import FailureWatch
from dicomflow.pipeline.steps import announce_batch
from dicomflow.platform import Platform
from dicomflow.spool.records import BatchState
from dicomflow.stack.components import Orthanc
from dicomflow.stack.supervisor import Stack
from tests.dicomfiles import write_ct_series
from tests.pipeline.conftest import copy_files, failed_logs, run_dag, spool_batch
from tests.stack_testutil import wait_dag_run


def _failed_while_the_pacs_was_down(platform: Platform, tmp_path: Path) -> tuple[str, str]:
    settings = platform.settings
    files = copy_files(write_ct_series(tmp_path / "ct", [1, 2]), tmp_path / "send")
    batch_id = spool_batch(settings, files, dataset="outage")
    announce_batch(platform, batch_id)
    series_uid = platform.spool.manifest(batch_id)[0].series_instance_uid
    stack = Stack(settings, [Orthanc(settings)])
    stack.down(report=lambda _m: None)
    try:
        run = run_dag(settings, batch_id, timeout=300)
        assert run["state"] == "failed"
    finally:
        stack.up(report=lambda _m: None)
    return batch_id, series_uid


def test_a_failed_batch_says_why_and_runs_again_by_itself_when_the_pacs_is_back(
    platform: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Platform(platform) as connections:
        batch_id, series_uid = _failed_while_the_pacs_was_down(connections, tmp_path)
        record = connections.spool.batch(batch_id)
        assert record.state is BatchState.FAILED
        assert record.failed_step == "store_to_pacs"
        assert "PACS" in (record.failure or ""), record.failure
        document = connections.index.get("admin", series_uid)
        assert document is not None
        assert document["pacs_state"] == "failed", "not 'storing' forever"
        assert "store_to_pacs" in document["failure"] and batch_id in document["failure"]
        # The first automatic retry waits 30 s: that pause is not what is tested here.
        monkeypatch.setattr(failures, "FIRST_RETRY_AFTER", 0.0)
        FailureWatch(connections, INCOMING_DAG_ID).check()
        assert connections.spool.batch(batch_id).state is BatchState.TRIGGERED
        run = wait_dag_run(connections.airflow, INCOMING_DAG_ID, f"test-{batch_id}", 240)
        assert run["state"] == "success", failed_logs(run)
        record = connections.spool.batch(batch_id)
        assert record.state is BatchState.DONE and record.run_id == f"test-{batch_id}"
        document = connections.index.get("admin", series_uid)
        assert document is not None
        assert (document["pacs_state"], document["failure"]) == ("stored", None)


def test_batches_retry_runs_a_failed_batch_again(platform: Settings, tmp_path: Path) -> None:
    with Platform(platform) as connections:
        batch_id, _ = _failed_while_the_pacs_was_down(connections, tmp_path)
    runner = CliRunner()
    listed = runner.invoke(main, ["batches", "--state", "failed"], obj=platform)
    assert batch_id in listed.output and "failed in store_to_pacs" in listed.output
    result = runner.invoke(main, ["batches", "retry", batch_id], obj=platform)
    assert result.exit_code == 0, result.output
    assert "running again from" in result.output and "store_to_pacs" in result.output
    with Platform(platform) as connections:
        run = wait_dag_run(connections.airflow, INCOMING_DAG_ID, f"test-{batch_id}", 240)
        assert run["state"] == "success", failed_logs(run)
        assert connections.spool.batch(batch_id).state is BatchState.DONE
    again = runner.invoke(main, ["batches", "retry", batch_id], obj=platform)
    assert again.exit_code == 1 and "has not failed" in again.output
