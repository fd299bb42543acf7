"""Validation in two lanes: a representative set at once, every other instance later."""

from __future__ import annotations

import json
from pathlib import Path

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings
from dicomflow.db.validation import ValidationRecords
from dicomflow.index import open_index
from dicomflow.pipeline.dispatcher import VALIDATION_DAG_ID
from dicomflow.pipeline.steps import finish, index_series, validate, validate_the_rest
from dicomflow.platform import Platform
from dicomflow.spool.store import Spool
from dicomflow.storage.keys import record_key
from tests.dicomfiles import write_ct_series
from tests.pipeline.conftest import copy_files, failed_logs, run_dag, spool_batch, task_logs
from tests.stack_testutil import wait_dag_run


def test_a_series_is_representative_at_once_and_complete_after_the_background_lane(
    platform: Settings, no_dispatcher: None, tmp_path: Path
) -> None:
    files = copy_files(write_ct_series(tmp_path / "ct", list(range(1, 8))), tmp_path / "send")
    batch_id = spool_batch(platform, files, dataset="lanes")
    spool = Spool.from_settings(platform)
    series_uid = spool.manifest(batch_id)[0].series_instance_uid

    run = run_dag(platform, batch_id)
    assert run["state"] == "success", failed_logs(run)
    index = open_index(platform)
    try:
        first = index.get("admin", series_uid)
        assert first is not None
        # The first, middle and last instance (one SOP class): the state of the series at once.
        assert (first["validation"]["level"], first["validation"]["instances_checked"]) == (
            "representative",
            3,
        )
        assert batch_id in spool.validation_queue()
        assert all(e.path.exists() for e in spool.manifest(batch_id)), "kept for the lane"

        with AirflowClient.from_settings(platform) as client:
            client.trigger_dag_run(VALIDATION_DAG_ID, f"lane-{batch_id}", {"batch_ids": [batch_id]})
            rest = wait_dag_run(client, VALIDATION_DAG_ID, f"lane-{batch_id}", timeout=240)
        logs = task_logs(platform, f"lane-{batch_id}", VALIDATION_DAG_ID)
        assert rest["state"] == "success", failed_logs({"task_logs": logs})
        complete = index.get("admin", series_uid)
        assert complete is not None
        assert (complete["validation"]["level"], complete["validation"]["instances_checked"]) == (
            "complete",
            7,
        )
        assert batch_id not in spool.validation_queue()
        assert not any(e.path.exists() for e in spool.manifest(batch_id)), "files removed after"
        assert complete["pacs_state"] == "stored"

        # A second run over the same batch (a retry, or the dispatcher's own beside this one)
        # finds it validated, and leaves the files' absence and the document alone.
        with AirflowClient.from_settings(platform) as client:
            client.trigger_dag_run(
                VALIDATION_DAG_ID, f"again-{batch_id}", {"batch_ids": [batch_id]}
            )
            again = wait_dag_run(client, VALIDATION_DAG_ID, f"again-{batch_id}", timeout=240)
        assert again["state"] == "success", failed_logs(
            {"task_logs": task_logs(platform, f"again-{batch_id}", VALIDATION_DAG_ID)}
        )
        after = index.get("admin", series_uid)
        assert after is not None
        assert after["validation"] == complete["validation"]
    finally:
        index.close()


def test_one_lane_run_takes_more_batches_than_the_connection_pool_holds(
    platform: Settings, tmp_path: Path
) -> None:
    """20 senders' batches coalesced into one lane run: each batch's lock took a pooled
    connection, and the run waited for a thirteenth until the pool gave up (found by
    bench/bench_scenarios.py's 20 senders)."""
    spool = Spool.from_settings(platform)
    batch_ids = []
    for n in range(20):
        files = write_ct_series(tmp_path / f"ct{n}", [1, 2, 3, 4, 5])
        batch_ids.append(
            spool_batch(platform, copy_files(files, tmp_path / f"send{n}"), dataset="many")
        )

    with Platform(platform) as plat:
        # Queued together just before: a session's dispatcher, woken by the queue, needs
        # seconds to start a lane run of its own, and then waits for these batches' locks.
        for batch_id in batch_ids:
            spool.queue_validation(batch_id)
        summary = validate_the_rest(plat, batch_ids)

    # No first lane ran: the background lane checked all five instances of each series.
    assert len(summary["validation"]) == 20
    assert {v["instances_checked"] for v in summary["validation"].values()} == {5}
    assert not set(batch_ids) & set(spool.validation_queue())
    assert not any(e.path.exists() for b in batch_ids for e in spool.manifest(b))


def test_every_instance_is_checked_when_the_lanes_group_batches_differently(
    platform: Settings, tmp_path: Path
) -> None:
    """The first lane ran over two batches of a series together, the background lane over
    each alone (as 50 senders splitting series between their batches made happen): each
    instance is still checked once."""
    spool = Spool.from_settings(platform)
    files = write_ct_series(tmp_path / "ct", list(range(1, 11)))
    first_half = spool_batch(platform, copy_files(files[:5], tmp_path / "a"), dataset="split")
    second_half = spool_batch(platform, copy_files(files[5:], tmp_path / "b"), dataset="split")
    series_uid = spool.manifest(first_half)[0].series_instance_uid

    with Platform(platform) as plat:
        validate(plat, [first_half, second_half])
        for batch_id in (first_half, second_half):
            spool.queue_validation(batch_id)
            validate_the_rest(plat, [batch_id])
        record = ValidationRecords(plat.engine).get_many([series_uid])[series_uid]
        document = plat.index.get("admin", series_uid)

    assert len(record["instances"]) == 10
    assert document is not None
    assert (document["validation"]["level"], document["validation"]["instances_checked"]) == (
        "complete",
        10,
    )


def test_a_batch_whose_every_instance_the_first_lane_checked_skips_the_background_lane(
    platform: Settings, no_dispatcher: None, tmp_path: Path
) -> None:
    """Single-image studies (CR, DX, mammography) and series of up to three instances are
    checked whole by the first lane: their batch needs no background run, and its files go
    at once. A batch of the same run with a longer series still waits for the lane."""
    spool = Spool.from_settings(platform)
    short = copy_files(write_ct_series(tmp_path / "short", [1, 2, 3]), tmp_path / "a")
    single = copy_files(write_ct_series(tmp_path / "single", [1]), tmp_path / "b")
    checked_whole = spool_batch(platform, short + single, dataset="whole")
    longer = spool_batch(
        platform,
        copy_files(write_ct_series(tmp_path / "long", list(range(1, 8))), tmp_path / "c"),
        dataset="whole",
    )
    run = [checked_whole, longer]

    with Platform(platform) as plat:
        validation = validate(plat, run)["validation"]
        index_series(plat, run, validation=validation)
        summary = finish(plat, run)
        documents = {
            e.series_instance_uid: plat.index.get("admin", e.series_instance_uid)
            for b in run
            for e in spool.manifest(b)
        }

    assert summary == {"removed_files": 4, "kept_for_validation": 7}
    assert spool.validation_queue() == [longer]
    assert not any(e.path.exists() for e in spool.manifest(checked_whole))
    assert all(e.path.exists() for e in spool.manifest(longer))
    levels = {
        uid: (d["validation"]["level"], d["validation"]["instances_checked"])
        for uid, d in documents.items()
        if d is not None
    }
    assert sorted(levels.values()) == [("complete", 1), ("complete", 3), ("representative", 3)]


def test_a_record_an_earlier_version_kept_in_the_object_store_is_merged_into_the_database(
    platform: Settings, tmp_path: Path
) -> None:
    """Versions that kept each series' findings at ``validation/<uid>.json`` in the admin bucket:
    the series' next batch merges that record, which then lives in the platform database."""
    files = write_ct_series(tmp_path / "ct", list(range(1, 7)))
    earlier = spool_batch(platform, copy_files(files[:3], tmp_path / "a"), dataset="legacy")
    later = spool_batch(platform, copy_files(files[3:], tmp_path / "b"), dataset="legacy")
    spool = Spool.from_settings(platform)
    series_uid = spool.manifest(earlier)[0].series_instance_uid

    with Platform(platform) as plat:
        records = ValidationRecords(plat.engine)
        index_series(plat, [earlier], validation=validate(plat, [earlier])["validation"])
        # As an earlier version left it: in the object store only.
        legacy = records.get_many([series_uid])[series_uid]
        plat.objects.put_bytes(
            "admin", record_key(series_uid), json.dumps(legacy).encode(), "application/json"
        )
        records.forget(series_uid)

        summary = validate(plat, [later])["validation"][series_uid]
        moved = records.get_many([series_uid])[series_uid]

    assert len(legacy["instances"]) == 3
    assert summary["instances_checked"] == 6
    assert sorted(i["sop_instance_uid"] for i in moved["instances"]) == sorted(
        e.sop_instance_uid for b in (earlier, later) for e in spool.manifest(b)
    )
