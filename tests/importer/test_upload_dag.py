"""The DAG import-dicoms-from-data-upload through Airflow's REST API, on the whole real stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings
from dicomflow.importer.report import ImportReport
from dicomflow.importer.uploads import UPLOAD_IMPORT_DAG_ID, read_report, upload_area
from dicomflow.pacs.client import DicomWebClient
from dicomflow.storage.client import ObjectStore
from tests.importer.conftest import PROJECT
from tests.importer.importer_testutil import make_zip, new_series, truncated_zip
from tests.stack_testutil import upload_files, wait_dag_run, wait_processed


@pytest.fixture(scope="module")
def stack(
    postgres: Settings, orthanc: Settings, s3: Settings, airflow: Any, dispatcher: Any
) -> Settings:
    return postgres


def _import_upload(
    settings: Settings, files: dict[str, Path], dataset: str
) -> tuple[str, str, ImportReport | None]:
    """Upload ``files``, import them with the DAG (deletion asked for) and wait for the end.

    Returns the upload id, the run's final state and its stored report.
    """
    upload_id = upload_files(settings, PROJECT, files)
    run_id = f"test-import-{upload_id}"
    conf = {
        "project": PROJECT,
        "dataset": dataset,
        "uploads": [upload_id],
        "extension": ".dcm",
        "delete_upload": True,
    }
    with AirflowClient.from_settings(settings) as client:
        client.trigger_dag_run(UPLOAD_IMPORT_DAG_ID, run_id, conf)
        state = str(wait_dag_run(client, UPLOAD_IMPORT_DAG_ID, run_id)["state"])
    return upload_id, state, read_report(ObjectStore.from_settings(settings), PROJECT, run_id)


def test_uploaded_zip_is_imported_processed_and_deleted_on_request(
    stack: Settings, projects: Any, tmp_path: Path
) -> None:
    series_uid, files = new_series(tmp_path / "s", 3, description="from upload")
    archive = make_zip(
        tmp_path / "study.zip",
        {f"study/{f.name}": f for f in files} | {"study/readme.txt": b"hi"},
    )
    upload_id, state, report = _import_upload(stack, {"study.zip": archive}, "fromupload")
    assert state == "success"
    assert report is not None and report.imported == 3 and report.outcome.value == "imported"
    assert [i.name for i in report.ignored] == [f"{upload_id}/study.zip!study/readme.txt"]
    assert [s.series_instance_uid for s in report.series] == [series_uid]
    # One batch, handed over by the dispatcher and processed by the usual DAG.
    assert len(report.batches) == 1
    wait_processed(stack, report.batches)
    with DicomWebClient.from_settings(stack) as pacs:
        study = report.series[0].study_instance_uid
        assert len(pacs.series_instances(study, series_uid)) == 3
    # Asked for, and the import succeeded: the upload is gone.
    assert upload_id not in {e.upload_id for e in upload_area(stack).entries(PROJECT)}


def test_a_failed_import_keeps_the_upload_even_when_deletion_was_asked_for(
    stack: Settings, projects: Any, tmp_path: Path
) -> None:
    _, files = new_series(tmp_path / "s", 1)
    corrupt = truncated_zip(tmp_path / "broken.zip", {"a.dcm": files[0]}, keep=200)
    upload_id, state, report = _import_upload(stack, {"broken.zip": corrupt}, "broken")
    assert state == "failed"
    assert report is not None and report.outcome.value == "failed"
    assert "broken.zip" in report.failures[0].detail
    assert upload_id in {e.upload_id for e in upload_area(stack).entries(PROJECT)}
