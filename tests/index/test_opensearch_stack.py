"""The platform on a real OpenSearch: the DAG indexes into it, `index rebuild` refills it.

The session's local OpenSearch node is the index; PostgreSQL, Orthanc and the S3 server are the
session's too. The DAG runs in a real Airflow of its own (``airflow dags test`` on a SQLite
metadata database), whose tasks load settings that choose OpenSearch: the session's Airflow
keeps the embedded index for the other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch

from dicomflow.cli import main
from dicomflow.config import REPO_ROOT, Settings, settings_json
from dicomflow.db.projects import ADMIN_PROJECT, ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.index import SeriesQuery, open_index
from dicomflow.index.base import MODALITY, SERIES_DESCRIPTION
from dicomflow.index.opensearch import OpenSearchSeriesIndex, connect
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool
from tests.dicomfiles import fresh_copy, write_ct_series
from tests.pipeline.conftest import DAG_ID, spool_batch


def run_dag_on(settings: Settings, batch_id: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run the processing DAG for a batch in a fresh Airflow whose tasks load ``settings``."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dicomflow.json"
    config.write_bytes(settings_json(settings))
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DICOMFLOW_", "AIRFLOW"))}
    env.update(
        {
            "DICOMFLOW_CONFIG": str(config),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, text=True)
    return subprocess.run(
        [airflow, "dags", "test", DAG_ID, "-c", json.dumps({"batch_id": batch_id})],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _describe(ds: Any, number: int) -> None:
    ds.SeriesDescription = "Thorax opensearch"


@pytest.fixture(scope="module")
def processed(
    opensearch: Settings,
    postgres: Settings,
    orthanc: Settings,
    s3: Settings,
    tmp_path_factory: Any,
) -> dict[str, Any]:
    """A 3-slice CT and an MR of a new project through the DAG, indexed into OpenSearch."""
    settings = opensearch
    folder = tmp_path_factory.mktemp("os-pipeline")
    project = f"os-{uuid.uuid4().hex[:8]}"
    engine = make_engine(settings.platform_db_url)
    ProjectStore(engine).create_project(project, "OpenSearch pipeline tests")
    engine.dispose()
    ct = write_ct_series(folder / "ct", [1, 2, 3], edit=_describe)
    mr = [fresh_copy("MR_small.dcm", folder / "mr")]
    batch_id = spool_batch(settings, [*ct, *mr], project=project, dataset="os-set")
    result = run_dag_on(settings, batch_id, folder / "airflow")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The finish step ran: every step before it succeeded.
    assert Spool.from_settings(settings).batch(batch_id).state is BatchState.DONE, (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
    return {"project": project, "ct": _uid(ct[0]), "mr": _uid(mr[0]), "batch": batch_id}


def _cluster(settings: Settings) -> OpenSearch:
    return connect(settings.index.opensearch_endpoint)


def test_the_dag_indexes_into_opensearch(opensearch: Settings, processed: dict[str, Any]) -> None:
    project, ct, mr = processed["project"], processed["ct"], processed["mr"]
    # The documents are in the cluster itself, in the project's and the admin index.
    client = _cluster(opensearch)
    try:
        for name in (f"project_{project}", "project_admin"):
            found = client.get(index=name, id=ct)["_source"]
            assert found["instance_count"] == 3
            assert found["dataset"] == ["os-set"]
            assert (found["batch_count"], found["last_batch_id"]) == (1, processed["batch"])
            assert found[MODALITY] == "CT"
            assert found["thumbnail_key"] == f"thumbnails/{ct}.png"
            assert found["validation"]["report_key"] == f"validation/{ct}.html"
        mapping = client.indices.get_mapping(index=f"project_{project}")
        props = mapping[f"project_{project}"]["mappings"]["properties"]
        # Mapped by the template, not guessed by dynamic mapping.
        assert props["00080020 StudyDate_date"]["type"] == "date"
        assert props["instance_count"]["type"] == "long"
    finally:
        client.close()
    index = open_index(opensearch)
    try:
        assert isinstance(index, OpenSearchSeriesIndex)
        result = index.search(project, SeriesQuery(description="thorax open"))
        assert [d["0020000E SeriesInstanceUID_keyword"] for d in result.items] == [ct]
        everything = index.search(project, SeriesQuery())
        assert everything.total == 2
        assert everything.facets["modality"] == {"CT": 1, "MR": 1}
        assert index.counts(project).instances == 4
        assert index.get(ADMIN_PROJECT, mr) is not None
    finally:
        index.close()


def test_index_rebuild_refills_opensearch(opensearch: Settings, processed: dict[str, Any]) -> None:
    project, ct, mr = processed["project"], processed["ct"], processed["mr"]
    index = open_index(opensearch)
    try:
        before = index.get(project, ct)
        for uid in (ct, mr):
            assert index.delete_series(ADMIN_PROJECT, uid)
        assert index.search(project, SeriesQuery()).total == 0
    finally:
        index.close()

    runner = CliRunner()
    result = runner.invoke(main, ["index", "rebuild", "--project", project], obj=opensearch)
    assert result.exit_code == 0, result.output
    assert f"rebuilt 2 series (4 instances) of project {project}" in result.output

    index = open_index(opensearch)
    try:
        for scope in (project, ADMIN_PROJECT):
            doc = index.get(scope, ct)
            assert doc is not None and before is not None
            assert doc["instance_count"] == 3
            assert doc["dataset"] == ["os-set"]
            assert doc[SERIES_DESCRIPTION] == "Thorax opensearch"
            assert doc["thumbnail_key"] == before["thumbnail_key"]
            assert doc["validation"]["errors"] == before["validation"]["errors"]
        found = index.search(project, SeriesQuery(modality=("MR",)))
        assert [d["0020000E SeriesInstanceUID_keyword"] for d in found.items] == [mr]
    finally:
        index.close()
