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
from tests.uploads.web_server import running_web, sign_in

CHROMIUM = "/usr/bin/chromium"
PROJECT = "webpage"
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="chromium is installed by scripts/install.sh --test"
)


@pytest.fixture(scope="module")
def page_url(
    postgres: Settings,
    orthanc: Settings,
    s3: Settings,
    airflow: Any,
    dispatcher: Any,
    platform_engine: Engine,
) -> Any:
    # The dispatcher: an import's run ends once its batches are processed and verified.
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
        page = sign_in(browser.new_page(), page_url, postgres.admin_user, postgres.admin_password)
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


def test_limits_are_shown_and_refused_in_the_unit_of_the_setting(
    postgres: Settings, s3: Settings, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    mib = 1 << 20
    small = postgres.replace(
        uploads=postgres.uploads.replace(
            max_file_bytes=3 * mib, max_upload_bytes=5 * mib, max_files=10
        )
    )
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (3 * mib + 1))
    halves = [tmp_path / "half1.bin", tmp_path / "half2.bin"]
    for half in halves:
        half.write_bytes(b"\0" * (3 * mib))
    with running_web(small) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"]
        )
        page = sign_in(browser.new_page(), url, small.admin_user, small.admin_password)
        page.goto(f"{url}/uploads")
        expect(page.locator("#limits")).to_have_text(
            "limits: 3 MiB per file, 5 MiB per upload, 10 files"
        )
        expect(page.locator(".uppy-Dashboard-note")).to_have_text(
            "files and folders; limits: 3 MiB per file, 5 MiB and 10 files per upload"
        )
        # Uppy's own refusals name the limits as configured too.
        dashboard_input = page.locator("input.uppy-Dashboard-input").first
        dashboard_input.set_input_files([big])
        expect(page.locator("#upload-status")).to_have_text(
            "file refused: big.bin exceeds the limit of 3 MiB per file (uploads.max_file_bytes)"
        )
        dashboard_input.set_input_files(halves)
        expect(page.locator("#upload-status")).to_have_text(
            "file refused: the selected files exceed the limit of 5 MiB per upload "
            "(uploads.max_upload_bytes)"
        )
        browser.close()


def _task_logs(settings: Settings) -> str:
    """The import runs' task logs, to say why a run failed."""
    root = settings.log_dir / "airflow-tasks" / "dag_id=import-dicoms-from-data-upload"
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(root.rglob("*.log")))
