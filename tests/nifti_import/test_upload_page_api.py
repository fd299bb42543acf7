"""The Data Upload page's import API starting a NIfTI import (kind "nifti") and reading it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from dicomflow.config import Settings
from dicomflow.importer.nifti import NIFTI_UPLOAD_IMPORT_DAG_ID
from tests.importer.importer_testutil import make_zip
from tests.nifti_import.conftest import PROJECT
from tests.nifti_import.nifti_import_testutil import basic_folder
from tests.stack_testutil import upload_files
from tests.uploads.web_server import running_web


def test_the_page_api_starts_a_nifti_import_and_shows_its_report(
    stack: Settings, tmp_path: Path
) -> None:
    folder = basic_folder(tmp_path / "case", ["W01"], seed=80, meta={})
    archive = make_zip(tmp_path / "w.zip", {f"case/{p.name}": p for p in folder.iterdir()})
    with (
        running_web(stack) as url,
        httpx.Client(
            base_url=url, auth=(stack.admin_user, stack.admin_password), timeout=30
        ) as web,
    ):
        # The page sends bytes with tus; the uploads area's own code stands in for it here.
        upload_id = upload_files(stack, PROJECT, {"w.zip": archive})

        request = {"project": PROJECT, "dataset": "page", "uploads": [upload_id], "kind": "nifti"}
        refused = web.post("/api/imports", json={**request, "modality": "PET"})
        assert refused.status_code == 422  # only MR or CT
        started = web.post("/api/imports", json={**request, "modality": "CT"})
        assert started.status_code == 201, started.text
        answer = started.json()
        assert answer["dag_id"] == NIFTI_UPLOAD_IMPORT_DAG_ID
        assert answer["conf"]["modality"] == "CT" and "extension" not in answer["conf"]
        deadline = time.monotonic() + 180
        while True:
            state = web.get(f"/api/imports/{PROJECT}/{answer['run_id']}").json()
            if state["state"] in ("success", "failed") or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert state["state"] == "success", state
    report = state["report"]
    # What the page's report table reads: outcome and series, like a DICOM import's.
    assert report["outcome"] == "imported"
    assert {s["modality"] for s in report["series"]} == {"CT", "SEG"}
    assert any(
        f"{upload_id}/w.zip!case: W01: 1 image series, SEG" in line
        for line in state["report_lines"]
    )
