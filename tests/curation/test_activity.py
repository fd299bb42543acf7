"""Activity: a failed import shows its step and message, counts, series and run, to the
people of its project only (page JSON, badge, CLI)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pydicom
from click.testing import CliRunner

from dicomflow.access.manage import AccessManager
from dicomflow.access.policy import Role
from dicomflow.cli import main
from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.importer import import_paths
from dicomflow.pipeline.dispatcher import INCOMING_DAG_ID
from dicomflow.spool.store import Spool
from tests.dicomfiles import fresh_copy
from tests.uploads.web_server import running_web

PASSWORD = "correct horse battery"


def test_a_failed_import_shows_where_and_why_to_its_project_only(
    postgres: Settings, s3: Settings, tmp_path: Path
) -> None:
    # A site of its own (its own spool): the session's dispatcher must not take the batch.
    site = postgres.replace(data_dir=tmp_path / "site")
    tag = uuid.uuid4().hex[:6]
    mine, other = f"act-{tag}", f"act-o-{tag}"
    engine = make_engine(site.platform_db_url)
    for name in (mine, other):
        ProjectStore(engine).create_project(name)
    source = fresh_copy("CT_small.dcm", tmp_path / "in")
    series_uid = str(pydicom.dcmread(source).SeriesInstanceUID)
    report = import_paths(site, [source], mine, "ds1")
    [batch_id] = report.batches
    # What the dispatcher and its failure watch record when Airflow reports the batch's run
    # failed in store_to_pacs (a PACS outage is not caused here).
    spool = Spool.from_settings(site)
    run_id = f"batch-{batch_id}"
    spool.mark_triggered(batch_id, run_id, INCOMING_DAG_ID)
    spool.mark_failed(batch_id, "store_to_pacs", "the PACS at http://pacs did not answer")

    result = CliRunner().invoke(main, ["activity", "--project", mine, "--json"], obj=site)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    [item] = [i for i in shown["items"] if i["id"] == batch_id]
    assert (item["kind"], item["state"], item["step"]) == ("batch", "failed", "store_to_pacs")
    assert item["message"] == "the PACS at http://pacs did not answer"
    assert (item["found"], item["imported"], item["failed"]) == (1, 0, 1)
    assert (item["project"], item["dataset"], item["what"]) == (mine, "ds1", "import batch")
    assert item["series"] == [series_uid] and item["run_id"] == run_id
    assert item["run_url"] == f"{site.airflow.base_url}/dags/{INCOMING_DAG_ID}/runs/{run_id}"
    assert item["instances_per_second"] > 0 and item["seconds"] >= 0
    assert shown["counts"]["failed"] == 1
    text = CliRunner().invoke(main, ["activity", "--project", mine], obj=site).output
    assert "failed in store_to_pacs: the PACS at http://pacs did not answer" in text

    manager = AccessManager(engine, site.auth)
    with running_web(site) as url:
        viewer, stranger = f"view-{tag}", f"stranger-{tag}"
        for name in (viewer, stranger):
            manager.create_user("test", name, PASSWORD)
        manager.set_member("test", mine, viewer, Role.VIEWER)
        manager.set_member("test", other, stranger, Role.OWNER)
        tokens = {n: manager.create_token("test", n, "t").secret for n in (viewer, stranger)}

        def get(who: str, path: str, **params: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {tokens[who]}"}
            return httpx.get(url + path, params=params, headers=headers, timeout=30)

        seen = get(viewer, "/api/activity", state="failed").json()
        assert [i["id"] for i in seen["items"]] == [batch_id]
        assert get(viewer, "/api/activity/badge").json() == {"running": 0, "failed": 1}
        page = get(viewer, "/activity")
        assert page.status_code == 200 and 'id="activity"' in page.text
        assert 'id="activity-badge"' in page.text
        assert get(stranger, "/api/activity").json()["items"] == []
        assert get(stranger, "/api/activity/badge").json() == {"running": 0, "failed": 0}
        assert get(stranger, "/api/activity", project=mine).status_code == 404
