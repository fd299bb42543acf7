"""The hand-over through the object store: a worker without the receiver's spool processes
a batch (``airflow.executor: celery``); the local executor reads the spool and copies nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomflow.config import Settings
from dicomflow.index import open_index
from dicomflow.pipeline import steps
from dicomflow.pipeline.handover import (
    HANDOVER_PROJECT,
    HandoverError,
    release_batch,
    run_spool,
    upload_batch,
)
from dicomflow.platform import Platform
from dicomflow.spool.store import Spool
from dicomflow.storage.client import ObjectStore
from tests.dicomfiles import write_ct_series
from tests.pipeline.conftest import copy_files, spool_batch


def _worker_settings(settings: Settings, data_dir: Path) -> Settings:
    """The same shared services, seen from a host with a spool of its own (empty)."""
    airflow = settings.airflow.replace(executor="celery")
    return settings.replace(data_dir=data_dir, airflow=airflow)


def test_a_worker_without_the_spool_processes_a_batch_handed_over_through_the_object_store(
    postgres: Settings, orthanc: Settings, s3: Settings, tmp_path: Path
) -> None:
    settings = postgres
    files = copy_files(write_ct_series(tmp_path / "ct", [1, 2, 3, 4]), tmp_path / "send")
    batch_id = spool_batch(settings, files, dataset="handover")
    receiver_spool = Spool.from_settings(settings)
    entries = receiver_spool.manifest(batch_id)
    series_uid, study_uid = entries[0].series_instance_uid, entries[0].study_instance_uid
    store = ObjectStore.from_settings(settings)

    sent = upload_batch(store, receiver_spool, batch_id)
    assert sent >= sum(p.stat().st_size for p in files)
    assert upload_batch(store, receiver_spool, batch_id) == 0, "uploaded once"

    with Platform(_worker_settings(settings, tmp_path / "worker")) as worker:
        assert run_spool(worker, batch_id) is not worker.spool
        stored = steps.store_to_pacs(worker, [batch_id])
        assert (stored["instances"], stored["series"], stored["mapped"]) == (4, 1, 1)
        thumbnails = steps.make_thumbnails(worker, [batch_id])
        steps.index_series(worker, [batch_id], thumbnails=thumbnails["thumbnails"])
        steps.finish(worker, [batch_id])
        assert stored["stored"] + stored["already_stored"] == 4
        held = set(worker.pacs.series_instances(str(study_uid), series_uid))
    assert held == {e.sop_instance_uid for e in entries}
    index = open_index(settings)
    try:
        document = index.get("admin", series_uid)
    finally:
        index.close()
    assert document is not None and document["pacs_state"] == "stored"

    # The worker's finish cannot settle the receiver's spool: its copy stays until the
    # receiver's dispatcher sees the run succeed; so does the object store's.
    assert all(e.path.exists() for e in entries)
    assert store.exists(HANDOVER_PROJECT, f"batches/{batch_id}.tar")
    # Released only once the spool's batch is done.
    receiver_spool.mark_done(batch_id)
    assert release_batch(store, receiver_spool, batch_id) > 0
    assert not store.list_keys(HANDOVER_PROJECT, f"batches/{batch_id}")


def test_the_local_executor_reads_the_spool_and_copies_nothing(
    postgres: Settings, s3: Settings, tmp_path: Path
) -> None:
    settings = postgres
    assert settings.airflow.executor == "local"
    files = copy_files(write_ct_series(tmp_path / "ct", [1, 2]), tmp_path / "send")
    batch_id = spool_batch(settings, files, dataset="local")
    with Platform(settings) as platform:
        assert run_spool(platform, batch_id) is platform.spool
        store = ObjectStore.from_settings(settings)
        store.ensure_bucket(HANDOVER_PROJECT)
        assert not store.list_keys(HANDOVER_PROJECT, f"batches/{batch_id}")
    # A host whose spool lacks the batch says so, naming the batch and the setting.
    other_host = settings.replace(data_dir=tmp_path / "other")
    with Platform(other_host) as other, pytest.raises(HandoverError, match=rf"{batch_id}.*exec"):
        run_spool(other, batch_id)


def test_a_batch_that_was_never_handed_over_is_an_error_naming_it(
    postgres: Settings, s3: Settings, tmp_path: Path
) -> None:
    worker_host = _worker_settings(postgres, tmp_path / "worker")
    never = "20990101T000000000-abcdef"
    with Platform(worker_host) as worker, pytest.raises(HandoverError, match=rf"{never}.*handed"):
        run_spool(worker, never)
