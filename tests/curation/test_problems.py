"""``dicomflow problems``: read the problem area, retry what can go in now, delete the rest."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pydicom

from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.intake.admission import Destination
from dicomflow.intake.checks import InstanceRejectedError
from dicomflow.intake.session import IntakeSession
from dicomflow.spool.records import CloseReason, Door, Origin
from dicomflow.spool.store import Spool
from tests.dicomfiles import fresh_copy


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomflow.cli", *args], env=env, capture_output=True, text=True
    )


def test_problems_are_listed_shown_retried_and_deleted(
    postgres: Settings, stack_env: dict[str, str], tmp_path: Path
) -> None:
    project = f"prob-{uuid.uuid4().hex[:6]}"
    ProjectStore(make_engine(postgres.platform_db_url)).create_project(project)
    spool = Spool.from_settings(postgres)
    origin = Origin(Door.DIMSE, "127.0.0.1:4000", "SCANNER7", project.upper())
    # A file without a SOP Instance UID: intake refuses it and keeps it with the reason.
    broken = fresh_copy("CT_small.dcm", tmp_path)
    ds = pydicom.dcmread(broken)
    del ds.SOPInstanceUID
    ds.save_as(broken)
    session = IntakeSession(spool, Destination(project, "scanner7"), origin)
    with contextlib.suppress(InstanceRejectedError):
        session.store(broken, move=False)
    session.close(CloseReason.RELEASED)
    # A good instance kept because the disk was full when it came (a failure that cannot be
    # caused for real here, so its problem is written as intake writes one).
    good = fresh_copy("MR_small.dcm", tmp_path)
    kept = spool.keep_problem(good, "spool write failed: No space left on device", origin, project)
    assert kept is not None

    listed = cli(stack_env, "problems", "list", "--project", project, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 2
    bad = next(r for r in rows if r["id"] != kept.id)
    assert (
        bad["reason"] == "SOPInstanceUID is missing" and bad["origin"]["calling_ae"] == "SCANNER7"
    )
    shown = cli(stack_env, "problems", "show", kept.id)
    assert "No space left on device" in shown.stdout and "SCANNER7" in shown.stdout

    retried = cli(stack_env, "problems", "retry", bad["id"], kept.id)
    assert retried.returncode == 1  # the broken one is still refused
    assert f"{bad['id']}: still refused" in retried.stderr
    assert f"{kept.id}: accepted into batch" in retried.stdout
    batch_id = retried.stdout.split("accepted into batch ", 1)[1].split()[0]
    batch = spool.batch(batch_id)
    assert (batch.project, batch.dataset, batch.instances) == (project, "scanner7", 1)
    [instance] = spool.manifest(batch_id)
    assert instance.sop_instance_uid == str(pydicom.dcmread(good).SOPInstanceUID)

    left = json.loads(cli(stack_env, "problems", "list", "--project", project, "--json").stdout)
    assert [r["id"] for r in left] == [bad["id"]]
    deleted = cli(stack_env, "problems", "delete", bad["id"], "--yes")
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    assert (
        json.loads(cli(stack_env, "problems", "list", "--project", project, "--json").stdout) == []
    )
    missing = cli(stack_env, "problems", "show", bad["id"])
    assert missing.returncode == 1 and "no problem" in missing.stderr
