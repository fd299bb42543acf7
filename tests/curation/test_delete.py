"""Deleting series: gone everywhere, sent again imports again; refused while in use; only
unmapped while another project holds it; owners only."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

from dicomflow.access.manage import AccessManager
from dicomflow.access.policy import Role
from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.series import SeriesRecords
from dicomflow.db.session import make_engine
from dicomflow.db.validation import ValidationRecords
from dicomflow.dicom.instance import Instance
from dicomflow.index import open_index
from dicomflow.pacs.client import DicomWebClient
from dicomflow.spool.records import CloseReason, Door, Origin
from dicomflow.spool.store import Spool
from dicomflow.storage.client import ObjectStore
from dicomflow.storage.keys import report_key, thumbnail_key
from tests.curation.curation_testutil import wait_until_finished
from tests.stack_testutil import dcmsend
from tests.thumbnails.thumbnail_testutil import write_ct_series
from tests.uploads.web_server import running_web

PASSWORD = "correct horse battery"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomflow.cli", *args], env=env, capture_output=True, text=True
    )


def pacs_count(settings: Settings, study: str, series: str) -> int:
    with DicomWebClient.from_settings(settings) as pacs:
        return len(pacs.series_instances(study, series))


def objects_of(settings: Settings, project: str, uid: str) -> list[str]:
    store = ObjectStore.from_settings(settings)
    keys = (thumbnail_key(uid), report_key(uid))
    return [k for k in keys if store.exists(project, k)]


def test_deleted_series_is_gone_everywhere_and_comes_back_when_sent_again(
    full_stack: Settings, stack_env: dict[str, str], tmp_path: Path
) -> None:
    settings = full_stack
    project = f"del-{uuid.uuid4().hex[:6]}"
    engine = make_engine(settings.platform_db_url)
    projects = ProjectStore(engine)
    projects.create_project(project)
    ct = write_ct_series(tmp_path / "send", count=6)
    uid, study = str(ct[0].SeriesInstanceUID), str(ct[0].StudyInstanceUID)
    dcmsend(settings, tmp_path / "send", "scanner", project)
    wait_until_finished(settings, project, uid)
    assert pacs_count(settings, study, uid) == 6
    assert len(objects_of(settings, project, uid)) == 2
    assert uid in ValidationRecords(engine).get_many([uid])

    done = cli(stack_env, "series", "delete", uid, "--project", project, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["series"] == [
        {"series_uid": uid, "outcome": "deleted", "pacs_instances": 6, "kept_in": []}
    ]
    index = open_index(settings)
    assert index.get(project, uid) is None and index.get("admin", uid) is None
    assert pacs_count(settings, study, uid) == 0
    assert objects_of(settings, project, uid) == [] and objects_of(settings, "admin", uid) == []
    assert (
        projects.series_projects(uid) == [] and projects.series_of_dataset(project, "scanner") == []
    )
    assert SeriesRecords(engine).facts(uid) is None
    assert ValidationRecords(engine).get_many([uid]) == {}
    with engine.connect() as conn:
        action = conn.execute(
            text("SELECT action FROM audit_events WHERE project = :p AND target = :t"),
            {"p": project, "t": uid},
        ).scalar_one()
    assert action == "series-delete"

    # Sent again: imported again as a new series (not counted twice, not refused).
    dcmsend(settings, tmp_path / "send", "scanner", project)
    doc = wait_until_finished(settings, project, uid)
    assert doc["instance_count"] == 6 and doc["dataset"] == ["scanner"]
    assert pacs_count(settings, study, uid) == 6
    assert len(objects_of(settings, project, uid)) == 2
    assert index.get("admin", uid) is not None
    index.close()


def test_delete_is_refused_while_an_import_works_on_the_series(
    full_stack: Settings, stack_env: dict[str, str], tmp_path: Path
) -> None:
    settings = full_stack
    project = f"use-{uuid.uuid4().hex[:6]}"
    ProjectStore(make_engine(settings.platform_db_url)).create_project(project)
    ct = write_ct_series(tmp_path / "send", count=2)
    uid, study = str(ct[0].SeriesInstanceUID), str(ct[0].StudyInstanceUID)
    dcmsend(settings, tmp_path / "send", "scanner", project)
    wait_until_finished(settings, project, uid)

    # An import of the same series is under way: its batch is open in the spool.
    spool = Spool.from_settings(settings)
    batch = spool.open_batch(project, "scanner", Origin(Door.IMPORT, "test"))
    path = Path(str(ct[0].filename))
    batch.add(
        path,
        Instance(
            path=path,
            sop_instance_uid=str(ct[0].SOPInstanceUID),
            series_instance_uid=uid,
            study_instance_uid=study,
            sop_class_uid=str(ct[0].SOPClassUID),
        ),
        move=False,
    )
    try:
        refused = cli(stack_env, "series", "delete", uid, "--project", project, "--yes")
        assert refused.returncode == 3
        assert f"batch {batch.id} (open)" in refused.stderr and "in use" in refused.stderr
        assert pacs_count(settings, study, uid) == 2
        index = open_index(settings)
        assert index.get(project, uid) is not None
        index.close()
    finally:
        batch.close(CloseReason.IMPORT_END)
    wait_until_finished(settings, project, uid)


def test_removing_from_one_project_only_unmaps_while_another_holds_it(
    full_stack: Settings, tmp_path: Path
) -> None:
    settings = full_stack
    tag = uuid.uuid4().hex[:6]
    b, c = f"shb-{tag}", f"shc-{tag}"
    engine = make_engine(settings.platform_db_url)
    projects = ProjectStore(engine)
    for name in (b, c):
        projects.create_project(name)
    ct = write_ct_series(tmp_path / "send", count=3)
    uid, study = str(ct[0].SeriesInstanceUID), str(ct[0].StudyInstanceUID)
    dcmsend(settings, tmp_path / "send", "scanner", b)
    wait_until_finished(settings, b, uid)
    dcmsend(settings, tmp_path / "send", "other", c)
    wait_until_finished(settings, c, uid)

    manager = AccessManager(engine, settings.auth)
    with running_web(settings) as url:
        owner, viewer = f"owner-{tag}", f"viewer-{tag}"
        for name in (owner, viewer):
            manager.create_user("test", name, PASSWORD)
        manager.set_member("test", b, owner, Role.OWNER)
        manager.set_member("test", b, viewer, Role.VIEWER)
        tokens = {n: manager.create_token("test", n, "t").secret for n in (owner, viewer)}

        def delete(who: str) -> httpx.Response:
            return httpx.delete(
                f"{url}/api/series/{uid}",
                params={"project": b},
                headers={"Authorization": f"Bearer {tokens[who]}"},
                timeout=60,
            )

        denied = delete(viewer)
        assert denied.status_code == 403 and "delete-data" in denied.json()["detail"]
        assert open_index(settings).get(b, uid) is not None

        answer = delete(owner)
        assert answer.status_code == 200, answer.text
        assert answer.json()["series"] == [
            {"series_uid": uid, "outcome": "unmapped", "pacs_instances": 0, "kept_in": [c]}
        ]
        gone = delete(owner)
        assert gone.status_code == 404 and uid in gone.json()["detail"]

    index = open_index(settings)
    assert index.get(b, uid) is None
    kept, admin = index.get(c, uid), index.get("admin", uid)
    assert kept is not None and admin is not None
    assert admin["project"] == [c] and admin["dataset"] == ["other"]
    assert kept["instance_count"] == 3
    index.close()
    assert pacs_count(settings, study, uid) == 3
    assert objects_of(settings, b, uid) == []
    assert len(objects_of(settings, c, uid)) == 2
    assert projects.series_projects(uid) == ["admin", c]
    with engine.connect() as conn:
        outcomes = conn.execute(
            text(
                "SELECT actor, outcome FROM audit_events WHERE action = 'series-delete' "
                "AND project = :p ORDER BY id"
            ),
            {"p": b},
        ).all()
    assert [tuple(r) for r in outcomes] == [(f"owner-{tag}", "ok")]
