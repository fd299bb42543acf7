"""Rebuilding the index from the PACS and the platform database, after the real pipeline ran."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydicom.uid import generate_uid
from sqlalchemy.engine import Engine

from dicomflow.cli import main
from dicomflow.config import Settings
from dicomflow.db.projects import ADMIN_PROJECT, ProjectStore
from dicomflow.dicom.document import is_dicom_field
from dicomflow.index import SeriesQuery, open_index
from dicomflow.index.base import MODALITY, PATIENT_ID, SERIES_DESCRIPTION
from dicomflow.pipeline.rebuild import rebuild_index
from dicomflow.platform import Platform
from tests.dicomfiles import fresh_copy, write_ct_series
from tests.pipeline.conftest import failed_logs, run_dag, spool_batch


class _Progress:
    """Records what a rebuild reports."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.seen: list[str] = []

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, series_uid: str) -> None:
        self.seen.append(series_uid)


def _describe(ds: Any, number: int) -> None:
    ds.SeriesDescription = "rebuild ct"


@pytest.fixture(scope="module")
def processed(
    postgres: Settings, orthanc: Settings, s3: Settings, airflow: Any, tmp_path_factory: Any
) -> dict[str, Any]:
    """A project with a 3-slice CT in dataset ct-set and an MR in mr-set, through the DAG."""
    folder = tmp_path_factory.mktemp("rebuild")
    project = f"rb-{uuid.uuid4().hex[:8]}"
    settings = postgres
    from dicomflow.db.session import make_engine

    engine = make_engine(settings.platform_db_url)
    ProjectStore(engine).create_project(project, "rebuild tests")
    engine.dispose()
    ct = write_ct_series(folder / "ct", [1, 2, 3], edit=_describe)
    mr = [fresh_copy("MR_small.dcm", folder / "mr")]
    batches = [
        spool_batch(settings, ct, project=project, dataset="ct-set"),
        spool_batch(settings, mr, project=project, dataset="mr-set"),
    ]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda b: run_dag(settings, b), batches))
    for run in runs:
        assert run["state"] == "success", failed_logs(run)
    ct_uid = str(_uid(ct[0]))
    mr_uid = str(_uid(mr[0]))
    index = open_index(settings)
    try:
        originals = {uid: index.get(project, uid) for uid in (ct_uid, mr_uid)}
    finally:
        index.close()
    assert all(originals.values())
    return {"project": project, "ct": ct_uid, "mr": mr_uid, "originals": originals}


def _uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def test_rebuild_of_stored_documents_keeps_counts_and_batches(
    postgres: Settings, processed: dict[str, Any]
) -> None:
    project, ct = processed["project"], processed["ct"]
    with Platform(postgres) as platform:
        before = platform.index.get(ADMIN_PROJECT, ct)
        report = rebuild_index(platform, project)
        assert report.ok, report.lines()
        after = platform.index.get(ADMIN_PROJECT, ct)
    assert before is not None and after is not None
    # Rewritten from the series' records: no count doubled, what only the pipeline knew kept.
    assert after["instance_count"] == 3
    assert (after["batch_count"], after["last_batch_id"]) == (1, before["last_batch_id"])
    assert after["received_at"] == before["received_at"]
    assert after["calling_ae"] == before["calling_ae"] and after["calling_ae"]
    assert after["validation"] == before["validation"]


def test_rebuild_brings_deleted_documents_back(
    postgres: Settings, processed: dict[str, Any]
) -> None:
    project, ct, mr = processed["project"], processed["ct"], processed["mr"]
    originals = processed["originals"]
    index = open_index(postgres)
    try:
        for uid in (ct, mr):
            assert index.delete_series(ADMIN_PROJECT, uid)
        assert index.search(project, SeriesQuery()).total == 0
        progress = _Progress()
        with Platform(postgres) as platform:
            report = rebuild_index(platform, project, progress=progress)
        assert report.ok, report.lines()
        assert report.rebuilt == {ct: 3, mr: 1}
        assert progress.total == 2
        assert sorted(progress.seen) == sorted([ct, mr])
        for uid, count, dataset, modality in ((ct, 3, "ct-set", "CT"), (mr, 1, "mr-set", "MR")):
            for scope in (project, ADMIN_PROJECT):
                doc = index.get(scope, uid)
                assert doc is not None, (scope, uid)
                assert doc["instance_count"] == count
                assert doc["dataset"] == [dataset]
                assert doc["project"] == [project]
                assert doc[MODALITY] == modality
            original = originals[uid]
            assert doc is not None and original is not None
            assert doc["thumbnail_key"] == original["thumbnail_key"] == f"thumbnails/{uid}.png"
            # The validation counts come back from the report in the object store.
            assert doc["validation"]["errors"] == original["validation"]["errors"]
            assert doc["validation"]["warnings"] == original["validation"]["warnings"]
            assert doc["validation"]["report_key"] == f"validation/{uid}.html"
            assert doc["received_at"]
            # The same header fields as the pipeline indexed from the files.
            fields = {k: v for k, v in original.items() if is_dicom_field(k)}
            assert {k: doc.get(k) for k in fields} == fields
        ct_doc = index.get(project, ct)
        assert ct_doc is not None
        assert ct_doc[SERIES_DESCRIPTION] == "rebuild ct"
        assert ct_doc[PATIENT_ID] == originals[ct][PATIENT_ID]
        found = index.search(project, SeriesQuery(modality=("CT",), description="rebuild"))
        assert [d["0020000E SeriesInstanceUID_keyword"] for d in found.items] == [ct]
        assert found.facets["dataset"] == {"ct-set": 1}
    finally:
        index.close()


def test_cli_index_rebuild(
    postgres: Settings, processed: dict[str, Any], platform_engine: Engine
) -> None:
    project, ct, mr = processed["project"], processed["ct"], processed["mr"]
    index = open_index(postgres)
    try:
        index.delete_series(ADMIN_PROJECT, mr)
    finally:
        index.close()
    runner = CliRunner()
    result = runner.invoke(main, ["index", "rebuild", "--project", project], obj=postgres)
    assert result.exit_code == 0, result.output
    assert f"rebuilt 2 series (4 instances) of project {project}" in result.output
    index = open_index(postgres)
    try:
        doc = index.get(project, mr)
    finally:
        index.close()
    assert doc is not None and doc["dataset"] == ["mr-set"]

    result = runner.invoke(main, ["index", "rebuild", "--project", project, "--json"], obj=postgres)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rebuilt"] == {ct: 3, mr: 1}

    # A series the database maps but the PACS does not hold: reported, exit code 1.
    lost = f"rbl-{uuid.uuid4().hex[:8]}"
    store = ProjectStore(platform_engine)
    store.create_project(lost)
    ghost = generate_uid()
    store.map_series(lost, "gone", [(ghost, generate_uid())])
    result = runner.invoke(main, ["index", "rebuild", "--project", lost], obj=postgres)
    assert result.exit_code == 1, result.output
    assert f"missing in the PACS (left as is): {ghost}" in result.output

    result = runner.invoke(main, ["index", "rebuild", "--project", "no-such"], obj=postgres)
    assert result.exit_code == 2
    assert "project 'no-such' does not exist" in result.output
