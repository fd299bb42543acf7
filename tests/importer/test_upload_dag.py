"""The DAG import-dicoms-from-data-upload through Airflow's REST API, on the whole real stack."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings
from dicomflow.importer.uploads import UPLOAD_IMPORT_DAG_ID, read_report, upload_area
from dicomflow.pacs.client import DicomWebClient
from dicomflow.spool.outbox import INCOMING_DAG_ID
from dicomflow.storage.client import ObjectStore
from tests.importer.conftest import PROJECT
from tests.importer.importer_testutil import make_zip, new_series


@pytest.fixture(scope="module")
def stack(postgres: Settings, orthanc: Settings, s3: Settings, airflow: Any) -> Settings:
    return postgres


def _wait(client: AirflowClient, dag_id: str, run_id: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get_dag_run(dag_id, run_id)
        if run and run["state"] in ("success", "failed"):
            return str(run["state"])
        time.sleep(0.5)
    raise AssertionError(f"{dag_id}/{run_id} did not end within {timeout} s")


def _upload(settings: Settings, files: dict[str, Path]) -> str:
    area = upload_area(settings)
    record = area.create(PROJECT, "tester", [(p, f.stat().st_size) for p, f in files.items()])
    for path, local in files.items():
        area.put_file(PROJECT, record.id, path, local)
    return record.id


def _conf(upload_id: str, dataset: str, delete: bool) -> dict[str, Any]:
    return {
        "project": PROJECT,
        "dataset": dataset,
        "uploads": [upload_id],
        "extension": ".dcm",
        "delete_upload": delete,
    }


def test_uploaded_zip_is_imported_processed_and_deleted_on_request(
    stack: Settings, projects: Any, tmp_path: Path
) -> None:
    series_uid, files = new_series(tmp_path / "s", 3, description="from upload")
    archive = make_zip(
        tmp_path / "study.zip",
        {f"study/{f.name}": f for f in files} | {"study/readme.txt": b"hi"},
    )
    upload_id = _upload(stack, {"study.zip": archive})
    run_id = f"test-import-{upload_id}"
    with AirflowClient.from_settings(stack) as client:
        client.trigger_dag_run(UPLOAD_IMPORT_DAG_ID, run_id, _conf(upload_id, "fromupload", True))
        assert _wait(client, UPLOAD_IMPORT_DAG_ID, run_id) == "success"
        report = read_report(ObjectStore.from_settings(stack), PROJECT, run_id)
        assert report is not None and report.imported == 3 and report.outcome.value == "imported"
        assert [i.name for i in report.ignored] == [f"{upload_id}/study.zip!study/readme.txt"]
        assert [s.series_instance_uid for s in report.series] == [series_uid]
        # One batch, triggered with the deterministic run id, processed by the usual DAG.
        assert report.triggered == [f"batch-{b}" for b in report.batches] and report.pending == []
        for batch_run in report.triggered:
            assert _wait(client, INCOMING_DAG_ID, batch_run) == "success"
    with DicomWebClient.from_settings(stack) as pacs:
        study = report.series[0].study_instance_uid
        assert len(pacs.series_instances(study, series_uid)) == 3
    # Asked for, and the import succeeded: the upload is gone.
    assert upload_id not in {e.upload_id for e in upload_area(stack).entries(PROJECT)}


def test_a_failed_import_keeps_the_upload_even_when_deletion_was_asked_for(
    stack: Settings, projects: Any, tmp_path: Path
) -> None:
    _, files = new_series(tmp_path / "s", 1)
    corrupt = tmp_path / "broken.zip"
    corrupt.write_bytes(make_zip(tmp_path / "x.zip", {"a.dcm": files[0]}).read_bytes()[:200])
    upload_id = _upload(stack, {"broken.zip": corrupt})
    run_id = f"test-import-{upload_id}"
    with AirflowClient.from_settings(stack) as client:
        client.trigger_dag_run(UPLOAD_IMPORT_DAG_ID, run_id, _conf(upload_id, "broken", True))
        assert _wait(client, UPLOAD_IMPORT_DAG_ID, run_id) == "failed"
    report = read_report(ObjectStore.from_settings(stack), PROJECT, run_id)
    assert report is not None and report.outcome.value == "failed"
    assert "broken.zip" in report.failures[0].detail
    assert upload_id in {e.upload_id for e in upload_area(stack).entries(PROJECT)}
