"""The Data Upload page in headless Chromium: pick files, see progress, import, see the report."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from tests.importer.importer_testutil import make_zip, new_series
from tests.uploads.web_server import running_web

CHROMIUM = "/usr/bin/chromium"
PROJECT = "webpage"
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="chromium is installed by scripts/install.sh --test"
)


@pytest.fixture(scope="module")
def page_url(
    postgres: Settings, orthanc: Settings, s3: Settings, airflow: Any, platform_engine: Engine
) -> Any:
    ProjectStore(platform_engine).create_project(PROJECT, "page tests")
    with running_web(postgres) as url:
        yield url


def test_pick_files_upload_with_progress_import_and_read_the_report(
    page_url: str, postgres: Settings, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    series_uid, files = new_series(tmp_path / "s", 4, description="from the page")
    archive = make_zip(tmp_path / "series.zip", {f"ct/{f.name}": f for f in files})
    notes = tmp_path / "notes.txt"
    notes.write_text("not DICOM")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--headless",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(
            http_credentials={
                "username": postgres.admin_user,
                "password": postgres.admin_password,
            }
        )
        page = context.new_page()
        page.goto(f"{page_url}/uploads")
        page.select_option("#project", PROJECT)
        expect(page.locator(".project-name").first).to_have_text(PROJECT)
        page.locator("input.uppy-Dashboard-input").first.set_input_files([archive, notes])
        expect(page.locator(".uppy-Dashboard-Item")).to_have_count(2)
        page.locator(".uppy-StatusBar-actionBtn--upload").click()
        # Progress per file and in total, then the end.
        expect(page.locator(".uppy-StatusBar")).to_have_class(
            re.compile("is-complete"), timeout=30_000
        )
        expect(page.locator("#upload-status")).to_contain_text("complete: 2 files")
        rows = page.locator("#uploads-table tbody tr")
        expect(rows).to_have_count(2)
        expect(page.locator("#uploads-table tbody input:checked")).to_have_count(2)
        page.fill("#dataset", "pagetest")
        page.click("#import-button")
        page.wait_for_function(
            "/: (success|failed)/.test(document.querySelector('#import-status').textContent)",
            timeout=120_000,
        )
        status = page.locator("#import-status").text_content() or ""
        assert "success" in status, _task_logs(postgres)
        expect(page.locator("#report-outcome")).to_have_text("(imported)")
        expect(page.locator("#series-table tbody tr")).to_have_count(1)
        expect(page.locator("#series-table tbody")).to_contain_text(series_uid)
        expect(page.locator("#report-text")).to_contain_text("notes.txt: wrong extension")
        browser.close()


def _task_logs(settings: Settings) -> str:
    """The import runs' task logs, to say why a run failed."""
    root = settings.log_dir / "airflow-tasks" / "dag_id=import-dicoms-from-data-upload"
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(root.rglob("*.log")))
