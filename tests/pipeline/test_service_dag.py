"""The DAG service-process-incoming-dcm on the real stack: PACS, index, S3, mappings, spool."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.index import open_index
from dicomflow.pacs.client import DicomWebClient
from dicomflow.pipeline.dispatcher import VALIDATION_DAG_ID
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool
from dicomflow.stack.components import Orthanc
from dicomflow.stack.supervisor import Stack
from dicomflow.storage.client import ObjectStore
from dicomflow.storage.keys import report_key, thumbnail_key
from dicomflow.validation.report import read_report_summary
from tests.dicomfiles import fresh_copy
from tests.pipeline.conftest import copy_files, failed_logs, run_dag, spool_batch, task_logs
from tests.stack_testutil import wait_dag_run
from tests.thumbnails.thumbnail_testutil import write_ct_series, write_seg


def _series_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _png(store: ObjectStore, project: str, key: str) -> np.ndarray:
    image = Image.open(io.BytesIO(store.get_bytes(project, key)))
    assert image.format == "PNG" and max(image.size) <= 300
    return np.asarray(image.convert("L"), dtype=float)


def test_batch_of_many_kinds_is_archived_indexed_thumbnailed_validated(
    platform: Settings, no_dispatcher: None, tmp_path: Path
) -> None:
    ProjectStore(make_engine(platform.platform_db_url)).create_project("kinds")
    ct = write_ct_series(tmp_path / "ct", count=5)
    labels = np.zeros((5, ct[0].Rows, ct[0].Columns), dtype=np.uint8)
    labels[1:4, 30:90, 40:100] = 1
    seg = write_seg(tmp_path / "seg.dcm", ct, labels)
    named = [
        "MR_small.dcm",  # MR
        "JPEG2000.dcm",  # compressed CT
        "rtstruct.dcm",  # RTSTRUCT, its reference absent
        "rtdose.dcm",  # RT Dose (dciodvfy aborts on it)
        "test-SR.dcm",  # SR: no pixels
        "SC_rgb_rle.dcm",  # colour, RLE
    ]
    files = [Path(str(d.filename)) for d in ct] + [seg]
    files += [fresh_copy(name, tmp_path / "named") for name in named]
    files = copy_files(files, tmp_path / "send")
    sr_uid = _series_uid(files[-2])
    rtdose_uid = _series_uid(files[-3])
    batch_id = spool_batch(platform, files, project="kinds", dataset="many")

    run = run_dag(platform, batch_id)
    assert run["state"] == "success", failed_logs(run)

    store = ObjectStore.from_settings(platform)
    index = open_index(platform)
    projects = ProjectStore(make_engine(platform.platform_db_url))
    series = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        series.setdefault(ds.SeriesInstanceUID, (ds.StudyInstanceUID, set()))[1].add(
            ds.SOPInstanceUID
        )
    with DicomWebClient.from_settings(platform) as pacs:
        for uid, (study, sops) in series.items():
            assert set(pacs.series_instances(study, uid)) == sops
            for project in ("kinds", "admin"):
                doc = index.get(project, uid)
                assert doc is not None, (project, uid)
                assert doc["instance_count"] == len(sops)
                assert doc["dataset"] == ["many"] and "kinds" in doc["project"]
                assert doc["validation"]["report_key"] == report_key(uid)
                assert store.exists(project, report_key(uid))
            assert "kinds" in projects.series_projects(uid)

    ct_uid = str(ct[0].SeriesInstanceUID)
    ct_doc = index.get("kinds", ct_uid)
    assert ct_doc is not None and ct_doc["00080060 Modality_keyword"] == "CT"
    assert ct_doc["thumbnail_key"] == thumbnail_key(ct_uid)
    assert _png(store, "kinds", thumbnail_key(ct_uid)).std() > 5  # an image, not a blank

    sr_doc = index.get("kinds", sr_uid)
    assert sr_doc is not None and sr_doc["thumbnail_key"] is None
    assert not store.exists("kinds", thumbnail_key(sr_uid))

    # The SEG's reference came in the same batch: segments in colour over the CT.
    seg_png = Image.open(io.BytesIO(store.get_bytes("kinds", thumbnail_key(_series_uid(seg)))))
    rgb = np.asarray(seg_png.convert("RGB")).astype(int)
    assert ((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum() > 50

    report = store.get_bytes("admin", report_key(rtdose_uid))
    assert b"<html" in report.lower()

    spool = Spool.from_settings(platform)
    record = spool.batch(batch_id)
    assert record.state is BatchState.DONE
    # Kept for the background validation lane, which removes them.
    assert batch_id in spool.validation_queue()
    assert all(e.path.exists() for e in spool.manifest(batch_id))
    index.close()


def test_resend_and_split_series_leave_one_document_with_the_right_count(
    platform: Settings, no_dispatcher: None, tmp_path: Path
) -> None:
    ct = [Path(str(d.filename)) for d in write_ct_series(tmp_path / "ct", count=6)]
    first = spool_batch(platform, copy_files(ct[:4], tmp_path / "a"), dataset="split")
    assert run_dag(platform, first)["state"] == "success"
    # The second association resends two instances and brings the last two.
    second = spool_batch(platform, copy_files(ct[2:], tmp_path / "b"), dataset="split")
    assert run_dag(platform, second)["state"] == "success"
    # Running a finished batch's processing again changes nothing either.
    uid = _series_uid(ct[0])
    index = open_index(platform)
    doc = index.get("admin", uid)
    assert doc is not None
    assert doc["instance_count"] == 6
    assert doc["batch_count"] == 2 and doc["last_batch_id"] in (first, second)
    result = index.search("admin", index_query(series_uid=uid))
    assert result.total == 1
    study = str(pydicom.dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID)
    with DicomWebClient.from_settings(platform) as pacs:
        assert len(pacs.series_instances(study, uid)) == 6
    index.close()
    # The background lane over both batches (as the dispatcher hands it over).
    with AirflowClient.from_settings(platform) as client:
        run_id = f"rest-{first}"
        client.trigger_dag_run(VALIDATION_DAG_ID, run_id, {"batch_ids": [first, second]})
        rest = wait_dag_run(client, VALIDATION_DAG_ID, run_id, timeout=240)
    assert rest["state"] == "success", failed_logs(
        {"task_logs": task_logs(platform, run_id, VALIDATION_DAG_ID)}
    )
    doc = open_index(platform).get("admin", uid)
    assert doc is not None and doc["validation"]["level"] == "complete"
    # One report over both batches: every instance once, the resent ones too.
    page = ObjectStore.from_settings(platform).get_bytes("admin", report_key(uid)).decode()
    summary = read_report_summary(page)
    assert summary is not None and summary["instances_checked"] == 6
    # The document counts each instance once too, though two were validated twice.
    assert doc["validation"]["instances_checked"] == 6
    assert doc["validation"]["warnings"] == summary["warnings"]


def index_query(series_uid: str):  # type: ignore[no-untyped-def]
    from dicomflow.index.base import SeriesQuery

    return SeriesQuery.from_params({"q": series_uid})


def test_same_uid_with_other_bytes_is_a_conflict_kept_aside(
    platform: Settings, tmp_path: Path
) -> None:
    ct = write_ct_series(tmp_path / "ct", count=2)
    original = [Path(str(d.filename)) for d in ct]
    assert (
        run_dag(platform, spool_batch(platform, copy_files(original, tmp_path / "a")))["state"]
        == "success"
    )
    changed = pydicom.dcmread(original[0])
    changed.PatientName = "Changed^Name"
    altered = tmp_path / "altered.dcm"
    changed.save_as(altered)
    batch_id = spool_batch(platform, [altered])
    assert run_dag(platform, batch_id)["state"] == "success"

    spool = Spool.from_settings(platform)
    reasons = [p for p in spool.problems() if ct[0].SOPInstanceUID in p.reason]
    assert len(reasons) == 1 and reasons[0].reason.startswith("conflict"), [
        (p.received_at, p.details) for p in reasons
    ]
    with DicomWebClient.from_settings(platform) as pacs:
        held = pacs.retrieve_instance(
            ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID, ct[0].SOPInstanceUID
        )
    assert b"Changed^Name" not in held


def test_pacs_down_fails_the_run_and_a_rerun_after_restart_succeeds(
    platform: Settings, tmp_path: Path
) -> None:
    ct = [Path(str(d.filename)) for d in write_ct_series(tmp_path / "ct", count=3)]
    batch_id = spool_batch(platform, copy_files(ct, tmp_path / "send"), dataset="outage")
    stack = Stack(platform, [Orthanc(platform)])
    stack.down(report=lambda _m: None)
    try:
        run = run_dag(platform, batch_id, run_id=f"down-{batch_id}", timeout=240)
    finally:
        stack.up(report=lambda _m: None)
    assert run["state"] == "failed"
    record = Spool.from_settings(platform).batch(batch_id)
    assert record.state is not BatchState.DONE
    assert len(list(record.path.rglob("*.dcm"))) == 3  # kept for the re-run

    rerun = run_dag(platform, batch_id, run_id=f"rerun-{batch_id}")
    assert rerun["state"] == "success", failed_logs(rerun)
    assert Spool.from_settings(platform).batch(batch_id).state is BatchState.DONE


def _coloured_pixels(store: ObjectStore, project: str, key: str) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(store.get_bytes(project, key))).convert("RGB"))
    spread = rgb.astype(int).max(axis=2) - rgb.astype(int).min(axis=2)
    return int((spread > 60).sum())


def test_seg_before_its_image_gets_a_placeholder_redone_when_the_image_arrives(
    platform: Settings, tmp_path: Path
) -> None:
    ct = write_ct_series(tmp_path / "ct", count=3)
    labels = np.zeros((3, ct[0].Rows, ct[0].Columns), dtype=np.uint8)
    labels[1, 20:60, 20:60] = 1
    seg = write_seg(tmp_path / "seg.dcm", ct, labels)
    seg_uid = _series_uid(seg)
    store = ObjectStore.from_settings(platform)

    assert (
        run_dag(platform, spool_batch(platform, copy_files([seg], tmp_path / "a")))["state"]
        == "success"
    )
    doc = open_index(platform).get("admin", seg_uid)
    assert doc is not None and doc["thumbnail_key"] == thumbnail_key(seg_uid)
    assert _coloured_pixels(store, "admin", thumbnail_key(seg_uid)) == 0  # a gray placeholder

    ct_files = [Path(str(d.filename)) for d in ct]
    run = run_dag(platform, spool_batch(platform, copy_files(ct_files, tmp_path / "b")))
    assert run["state"] == "success", failed_logs(run)
    assert _coloured_pixels(store, "admin", thumbnail_key(seg_uid)) > 50  # the segment, in colour
