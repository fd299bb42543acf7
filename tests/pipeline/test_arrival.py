"""A batch is searchable as soon as it closes, and every step groups it from its manifest."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from dicomflow.config import Settings
from dicomflow.dicom.headers import HeaderScan, group_series
from dicomflow.index import open_index
from dicomflow.pacs.client import DicomWebClient
from dicomflow.pipeline.batch import SpooledBatch, scan_from_manifest
from dicomflow.pipeline.steps import announce_batch
from dicomflow.platform import Platform
from dicomflow.spool import durable
from dicomflow.spool.records import CloseReason, Door, Origin
from dicomflow.spool.store import MANIFEST_FILE, Spool
from tests.intake_testutil import open_session
from tests.pipeline.conftest import copy_files, failed_logs, run_dag, spool_batch
from tests.thumbnails.thumbnail_testutil import write_ct_series


def _as_dict(scan: HeaderScan, base: Path) -> dict[str, object]:
    """The grouping of a scan (a file's hash and arrival time are the spool's, not the header's)."""
    data = scan.to_json(base)
    for instance in data["instances"]:
        del instance["sha256"], instance["received_at"]
    return data


def _mixed_batch(tmp_path: Path, spool: Spool) -> str:
    """Two series, a resent instance and an instance that claims another study."""
    ct = write_ct_series(tmp_path / "ct", count=4)
    mr = write_ct_series(tmp_path / "mr", count=2)
    files = [Path(str(d.filename)) for d in ct + mr]
    files.append(files[1])  # the same instance twice in one association
    stray = pydicom.dcmread(files[0])
    stray.StudyInstanceUID = generate_uid()
    stray.SOPInstanceUID = generate_uid()
    stray.file_meta.MediaStorageSOPInstanceUID = stray.SOPInstanceUID
    stray.save_as(tmp_path / "stray.dcm", enforce_file_format=True)
    files.append(tmp_path / "stray.dcm")
    intake = open_session(
        spool, "admin", "mixed", Origin(Door.DIMSE, "127.0.0.1:1", "MIXED", "ADMIN")
    )
    for path in files:
        intake.store(path, move=False)
    intake.close(CloseReason.RELEASED)
    return intake.batch_ids[0]


def test_manifest_grouping_equals_reading_every_header(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    batch_id = _mixed_batch(tmp_path, spool)
    directory = spool.batch_path(batch_id)
    entries = spool.manifest(batch_id)

    from_manifest = scan_from_manifest(entries)
    from_files = group_series(e.path for e in entries)

    assert from_manifest is not None
    assert _as_dict(from_manifest, directory) == _as_dict(from_files, directory)
    assert [len(g.instances) for g in from_manifest.series] == [4, 2]
    reasons = sorted(r.reason.split(" ")[0] for r in from_manifest.rejected)
    assert reasons == ["StudyInstanceUID", "duplicate"]


def test_old_manifest_is_grouped_from_the_files_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    batch_id = _mixed_batch(tmp_path, spool)
    directory = spool.batch_path(batch_id)
    # A manifest as written before the grouping facts were recorded.
    old = [
        {k: v for k, v in e.manifest_record().items() if k in _OLD_FIELDS}
        for e in spool.manifest(batch_id)
    ]
    durable.write_bytes(
        directory / MANIFEST_FILE, "".join(json.dumps(r) + "\n" for r in old).encode()
    )

    first = SpooledBatch(spool, batch_id)
    assert scan_from_manifest(first.entries) is None
    scan = first.scan
    assert first.scan_path.is_file(), "the grouping is kept for the later steps"
    assert [len(g.instances) for g in scan.series] == [4, 2]

    # A later step reads the kept grouping, not the headers: proven by removing a file.
    first.entries[0].path.unlink()
    later = SpooledBatch(spool, batch_id)
    assert _as_dict(later.scan, directory) == _as_dict(scan, directory)


_OLD_FIELDS = {
    "file",
    "sop_instance_uid",
    "series_instance_uid",
    "study_instance_uid",
    "sop_class_uid",
    "transfer_syntax_uid",
    "size",
    "sha256",
    "received_at",
}


def test_announced_batch_is_searchable_storing_then_stored_by_the_dag(
    platform: Settings, tmp_path: Path
) -> None:
    ct = write_ct_series(tmp_path / "ct", count=3)
    uid, study = str(ct[0].SeriesInstanceUID), str(ct[0].StudyInstanceUID)
    files = copy_files([Path(str(d.filename)) for d in ct], tmp_path / "send")
    batch_id = spool_batch(platform, files, dataset="arrival")

    with Platform(platform) as connections:
        announce_batch(connections, batch_id)

    index = open_index(platform)
    try:
        for project in ("admin",):
            doc = index.get(project, uid)
            assert doc is not None, "searchable before any processing"
            assert doc["pacs_state"] == "storing"
            assert doc["instance_count"] == 3 and doc["dataset"] == ["arrival"]
            assert doc["thumbnail_key"] is None
        with DicomWebClient.from_settings(platform) as pacs:
            assert pacs.series_instances(study, uid) == []

        run = run_dag(platform, batch_id)
        assert run["state"] == "success", failed_logs(run)

        doc = index.get("admin", uid)
        assert doc is not None
        assert doc["pacs_state"] == "stored"
        assert (doc["batch_count"], doc["last_batch_id"]) == (1, batch_id)
        assert doc["instance_count"] == 3, "announcing and indexing one batch counts it once"
        assert doc["thumbnail_key"] and doc["validation"]["instances_checked"] == 3
    finally:
        index.close()


def test_stow_batch_is_handed_over_and_searchable_once_answered(
    platform: Settings, dispatcher: Settings, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from dicomflow.spool.records import BatchState
    from dicomflow.web.app import create_app
    from tests.receiver.test_stow import _multipart

    ct = write_ct_series(tmp_path / "ct", count=2)
    uid = str(ct[0].SeriesInstanceUID)
    body, content_type = _multipart([Path(str(d.filename)).read_bytes() for d in ct])
    client = TestClient(create_app(platform))
    answer = client.post(
        "/dicomweb/projects/admin/studies?dataset=stow-arrival",
        content=body,
        headers={"Content-Type": content_type},
        auth=(platform.admin_user, platform.admin_password),
    )
    assert answer.status_code == 200, answer.text

    # Closed at the end of the request: the dispatcher indexes it and hands it over.
    spool = Spool.from_settings(platform)
    (batch_id,) = [b.id for b in spool.batches() if b.dataset == "stow-arrival"]
    deadline = time.monotonic() + 30
    while spool.batch(batch_id).state not in (BatchState.TRIGGERED, BatchState.DONE):
        assert time.monotonic() < deadline, "the STOW-RS batch was not handed over"
        time.sleep(0.1)
    batch = spool.batch(batch_id)
    index = open_index(platform)
    try:
        doc = index.get("admin", uid)
        assert doc is not None and doc["instance_count"] == 2
        assert doc["last_batch_id"] == batch.id
    finally:
        index.close()
