"""``dicomflow import --review``, ``--select``, the subject override and ``--verify``, on the
test stack (PostgreSQL, Orthanc, S3, Airflow and the dispatcher, as an administrator runs it)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from dicomflow.config import Settings
from dicomflow.db.audit import AuditStore
from dicomflow.importer.report import ImportedInstance, ImportReport
from dicomflow.importer.verify import VerifyState, verify_import
from dicomflow.pacs.client import DicomWebClient
from dicomflow.spool.store import Spool
from tests.importer.conftest import PROJECT
from tests.importer.importer_testutil import new_series
from tests.importer.rt_testutil import rt_set

CLI = [str(Path(sys.executable).with_name("dicomflow"))]


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "import", *args, "--project", PROJECT, "--dataset", "review", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_review_select_override_and_verify(
    stack_env: dict[str, str],
    full_stack: Settings,
    projects: Any,
    platform_engine: Engine,
    tmp_path: Path,
) -> None:
    rt = rt_set(tmp_path / "in" / "rt", sex="M", dose_sex="F")
    other, _ = new_series(tmp_path / "in" / "other", 2)
    selection = tmp_path / "selection.json"

    # --review: the tree, nothing imported, a selection file with every new series ticked.
    done = _run(stack_env, str(tmp_path / "in"), "--review", "--selection-file", str(selection))
    assert done.returncode == 0, done.stderr
    assert f"-> references {rt.rtplan}" in done.stdout
    assert "selection written to" in done.stdout
    document = json.loads(selection.read_text())
    assert {s["series_uid"] for s in document["series"] if s["selected"]} == {
        rt.ct,
        rt.rtstruct,
        rt.rtplan,
        rt.rtdose,
        other,
    }
    # The user keeps only the dose; what it references comes along.
    for item in document["series"]:
        item["selected"] = item["series_uid"] == rt.rtdose
    selection.write_text(json.dumps(document))

    # The dose says F where M is expected: refused without an override, nothing imported.
    done = _run(stack_env, str(tmp_path / "in"), "--select", str(selection), "--expect-sex", "M")
    assert done.returncode == 1
    assert "PatientSex is 'F', expected 'M'" in done.stderr
    assert "--override-subject" in done.stderr and not done.stdout

    # With the override: the selection and its references, verified in the PACS.
    done = _run(
        stack_env,
        str(tmp_path / "in"),
        "--select",
        str(selection),
        "--expect-sex",
        "M",
        "--override-subject",
        "--verify",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {s["series_instance_uid"] for s in report["series"]} == {
        rt.ct,
        rt.rtstruct,
        rt.rtplan,
        rt.rtdose,
    }
    assert report["ignored_by_reason"] == {"not selected": 2}
    assert report["counts"] == {"analysed": 8, "uploaded": None, "imported": 6, "verified": 6}
    assert report["verification"]["state"] == "verified"
    assert report["overrides"] and "PatientSex is 'F'" in report["overrides"][0]
    # The override is in the audit trail, with who and what.
    [event] = AuditStore(platform_engine).query(project=PROJECT, action="import-override", limit=1)
    assert event.actor.startswith("cli") and "PatientSex is 'F', expected 'M'" in event.detail

    # Reviewed again: the project now holds those four, and only the other one is ticked.
    done = _run(stack_env, str(tmp_path / "in"), "--review", "--selection-file", str(selection))
    assert done.stdout.count("(already in the project)") == 4
    ticked = [s for s in json.loads(selection.read_text())["series"] if s["selected"]]
    assert [s["series_uid"] for s in ticked] == [other]

    # Verification says which instance is missing or different in the PACS.
    kept = ImportReport.from_dict(report)
    first = kept.instances[0]
    kept.instances = [
        replace(first, digest="0" * 64),
        ImportedInstance("1.2.3.4.5.6", first.series_instance_uid, first.study_instance_uid, "x"),
        *kept.instances[1:],
    ]
    with DicomWebClient.from_settings(full_stack) as pacs:
        outcome = verify_import(kept, Spool.from_settings(full_stack), pacs)
    assert outcome.state is VerifyState.INCOMPLETE
    assert (outcome.expected, outcome.verified) == (7, 5)
    assert outcome.different == [first.sop_instance_uid] and outcome.missing == ["1.2.3.4.5.6"]
