"""The review page in headless Chromium: a CT + RTSTRUCT + RTPLAN + RTDOSE upload reviewed,
auto-selection of what the dose references, a sex mismatch that needs an override, the import
verified in the PACS with its four counts, the logs, and the retry of a failed import."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from dicomflow.config import Settings
from dicomflow.db.audit import AuditStore
from dicomflow.db.projects import ProjectStore
from dicomflow.importer.uploads import upload_area
from tests.importer.importer_testutil import make_zip
from tests.importer.rt_testutil import rt_set
from tests.stack_testutil import upload_files
from tests.uploads.web_server import running_web, sign_in

CHROMIUM = "/usr/bin/chromium"
PROJECT = "reviewpage"
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="chromium is installed by scripts/install.sh --test"
)


@pytest.fixture(scope="module")
def page_url(full_stack: Settings, platform_engine: Engine) -> Any:
    ProjectStore(platform_engine).create_project(PROJECT, "review page tests")
    with running_web(full_stack) as url:
        yield url


def test_review_auto_select_override_import_verify_and_retry(
    page_url: str, full_stack: Settings, platform_engine: Engine, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    settings = full_stack
    rt = rt_set(tmp_path / "rt", sex="M", dose_sex="F")
    archive = make_zip(tmp_path / "rt.zip", {str(f.relative_to(tmp_path)): f for f in rt.files})
    upload_id = upload_files(settings, PROJECT, {"rt.zip": archive})

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"]
        )
        page = sign_in(browser.new_page(), page_url, settings.admin_user, settings.admin_password)
        page.goto(f"{page_url}/uploads/review")
        page.select_option("#project", PROJECT)
        page.locator(f'#uploads-table input[value="{upload_id}"]').check()
        page.select_option("#expected-sex", "M")
        page.click("#review-button")
        rows = page.locator("#tree tbody tr")
        expect(rows).to_have_count(4, timeout=60_000)
        expect(page.locator("#review-summary")).to_contain_text("6 file(s) analysed")

        def row(uid: str) -> Any:
            return page.locator(f'#tree tr[data-series="{uid}"]')

        # The dose is flagged with the field and both values.
        expect(row(rt.rtdose)).to_contain_text("PatientSex is 'F', expected 'M'")
        # Untick everything, then tick the dose: its plan, structure set and CT come along.
        for box in page.locator("input.pick").all():
            box.uncheck()
        row(rt.rtdose).locator("input.pick").check()
        for uid in (rt.rtplan, rt.rtstruct, rt.ct):
            expect(row(uid).locator("input.pick")).to_be_checked()
        expect(page.locator("#selected-count")).to_have_text("4")
        # The mismatch needs the override before the import can start.
        expect(page.locator("#override-row")).to_be_visible()
        expect(page.locator("#import-button")).to_be_disabled()
        page.fill("#dataset", "reviewed")
        page.check("#override")
        expect(page.locator("#import-button")).to_be_enabled()
        page.click("#import-button")

        expect(page.locator("#run-state")).to_have_text(
            re.compile(r"state: (success|failed)"), timeout=300_000
        )
        expect(page.locator("#run-state")).to_have_text("state: success, verification verified")
        counts = [
            page.locator(f"#count-{n}").text_content()
            for n in ("analysed", "uploaded", "imported", "verified")
        ]
        assert counts == ["6", "1", "6", "6"]
        run_id = page.locator("#run-id").text_content() or ""
        log = page.request.get(f"{page_url}/api/imports/{PROJECT}/{run_id}/log.json").json()
        assert log["counts"] == {"analysed": 6, "uploaded": 1, "imported": 6, "verified": 6}
        text = page.request.get(f"{page_url}/api/imports/{PROJECT}/{run_id}/log.txt").text()
        assert "Analysed 6 / Uploaded 1 / Imported 6 / Verified 6" in text
        assert "OVERRIDDEN: series" in text

        # The override is in the audit trail, with the user and the flag.
        [event] = AuditStore(platform_engine).query(
            project=PROJECT, action="import-override", limit=1
        )
        assert event.actor == settings.admin_user and event.target == run_id
        assert "PatientSex is 'F', expected 'M'" in event.detail

        # The upload is gone before the next import of the same review: that import fails,
        # and the page offers a retry, which starts the import again.
        upload_area(settings).delete(PROJECT, [upload_id])
        page.click("#import-button")
        expect(page.locator("#run-state")).to_have_text(
            re.compile(r"state: failed"), timeout=120_000
        )
        expect(page.locator("#retry-button")).to_be_visible()
        failed_run = page.locator("#run-id").text_content()
        page.click("#retry-button")
        expect(page.locator("#import-status")).to_contain_text(f"of {failed_run} started")
        expect(page.locator("#run-id")).not_to_have_text(failed_run or "")
        browser.close()
