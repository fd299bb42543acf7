"""The Series pages in headless Chromium, over series the real processing DAG indexed."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from sqlalchemy.engine import Engine

from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.index import SeriesQuery, open_index
from dicomflow.storage.client import ObjectStore
from dicomflow.storage.keys import thumbnail_key
from tests.dicomfiles import fresh_copy, write_ct_series
from tests.pipeline.conftest import failed_logs, run_dag, spool_batch
from tests.uploads.web_server import running_web, sign_in

CHROMIUM = "/usr/bin/chromium"
# Markup in a DICOM header must be shown as text, never run or rendered.
XSS = 'xsstest <b>b</b><img src=x onerror="window.__xss=1">'
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="chromium is installed by scripts/install.sh --test"
)


def _xss_description(ds: Any, number: int) -> None:
    ds.SeriesDescription = XSS


@pytest.fixture(scope="module")
def series(
    postgres: Settings,
    orthanc: Settings,
    s3: Settings,
    airflow: Any,
    platform_engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """A project with two CT series and an MR in two datasets, processed by the DAG.

    Dataset ``pagea``: a 3-slice CT whose description carries markup, and the MR;
    dataset ``pageb``: a 2-slice CT. The MR's thumbnail is then removed (the fallback).
    """
    folder = tmp_path_factory.mktemp("series-page")
    project = f"sp-{uuid.uuid4().hex[:8]}"
    ProjectStore(platform_engine).create_project(project, "series page tests")
    xss_ct = write_ct_series(folder / "ct1", [1, 2, 3], edit=_xss_description)
    mr = fresh_copy("MR_small.dcm", folder / "mr")
    plain_ct = write_ct_series(folder / "ct2", [1, 2])
    batches = [
        spool_batch(postgres, [*xss_ct, mr], project=project, dataset="pagea"),
        spool_batch(postgres, plain_ct, project=project, dataset="pageb"),
    ]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda b: run_dag(postgres, b), batches))
    for run in runs:
        assert run["state"] == "success", failed_logs(run)
    uids = {
        "project": project,
        "xss": _series_uid(xss_ct[0]),
        "mr": _series_uid(mr),
        "plain": _series_uid(plain_ct[0]),
    }
    store = ObjectStore.from_settings(postgres)
    assert store.remove(project, [thumbnail_key(uids["mr"])]) == 1
    return uids


def _series_uid(path: Any) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


@pytest.fixture(scope="module")
def web_url(series: dict[str, str], postgres: Settings) -> Iterator[str]:
    with running_web(postgres) as url:
        yield url


@pytest.fixture
def page(web_url: str, postgres: Settings) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-sync"],
        )
        context = browser.new_context(base_url=web_url)
        yield sign_in(context.new_page(), "", postgres.admin_user, postgres.admin_password)
        browser.close()


def _facet(page: Any, name: str) -> dict[str, str]:
    items = page.locator(f"#facet-{name} li")
    return {
        items.nth(i).get_attribute("data-value"): items.nth(i).locator(".count").inner_text()
        for i in range(items.count())
    }


_FACET_JS = """([name, want]) => JSON.stringify(
  [...document.querySelectorAll(`#facet-${name} li`)]
    .map(li => [li.dataset.value, li.querySelector('.count').textContent]).sort()) === want"""


def _expect_facet(page: Any, name: str, expected: dict[str, str]) -> None:
    """Wait until the facet list shows ``expected`` (counts arrive after the results)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    want = json.dumps(sorted([k, v] for k, v in expected.items()), separators=(",", ":"))
    try:
        page.wait_for_function(_FACET_JS, arg=[name, want], timeout=5000)
    except PlaywrightTimeout:
        raise AssertionError(f"facet {name}: {_facet(page, name)} != {expected}") from None


def test_search_filter_by_modality_facets_and_paging(
    page: Any, series: dict[str, str], postgres: Settings
) -> None:
    from playwright.sync_api import expect

    project = series["project"]
    page.goto("/series")
    page.select_option("#project", project)
    expect(page.locator("#status")).to_have_text(f"3 series in {project}")
    expect(page.locator(".card")).to_have_count(3)
    _expect_facet(page, "modality", {"CT": "2", "MR": "1"})
    _expect_facet(page, "dataset", {"pagea": "2", "pageb": "1"})
    index = open_index(postgres)
    try:
        with_errors = index.search(project, SeriesQuery(has_errors=True, size=1)).total
    finally:
        index.close()
    expect(page.locator("#count-errors")).to_have_text(f"({with_errors} with)")

    # Filtering by modality: the results and the dataset counts follow.
    page.select_option("#modality", "MR")
    expect(page.locator("#status")).to_have_text(f"1 series in {project}")
    expect(page.locator(".card")).to_have_count(1)
    _expect_facet(page, "dataset", {"pagea": "1"})
    # The other modalities stay on offer, with their counts.
    _expect_facet(page, "modality", {"CT": "2", "MR": "1"})
    card = page.locator(".card")
    expect(card.locator(".modality")).to_have_text("MR")
    expect(card.locator(".dataset")).to_have_text("Dataset: pagea")
    # Its thumbnail was removed: the fallback instead of a broken image.
    expect(card.locator(".thumb .fallback")).to_contain_text("no thumbnail")

    # A click on a facet value filters too; the search box narrows further.
    page.locator("#facet-modality li[data-value='CT']").click()
    expect(page.locator("#status")).to_have_text(f"2 series in {project}")
    _expect_facet(page, "dataset", {"pagea": "1", "pageb": "1"})
    page.fill("#q", "xsstest")
    page.press("#q", "Enter")
    expect(page.locator("#status")).to_have_text(f"1 series in {project}")
    expect(page.locator(".card .instances")).to_have_text("3")

    # Paging, two per page.
    page.goto(f"/series?project={project}&size=2")
    expect(page.locator("#page-info")).to_have_text("page 1 of 2")
    expect(page.locator(".card")).to_have_count(2)
    page.click("#next-page")
    expect(page.locator("#page-info")).to_have_text("page 2 of 2")
    expect(page.locator(".card")).to_have_count(1)
    expect(page.locator("#next-page")).to_be_disabled()


def test_thumbnails_load_and_markup_is_shown_as_text(page: Any, series: dict[str, str]) -> None:
    from playwright.sync_api import expect

    project = series["project"]
    page.goto(f"/series?project={project}")
    card = page.locator(f".card[data-uid='{series['xss']}']")
    expect(card.locator(".description")).to_have_text(XSS)
    page.wait_for_function(
        "uid => { const img = document.querySelector(`.card[data-uid='${uid}'] img`);"
        " return img && img.complete && img.naturalWidth > 0; }",
        arg=series["plain"],
    )
    page.wait_for_function(
        "uid => { const img = document.querySelector(`.card[data-uid='${uid}'] img`);"
        " return img && img.complete && img.naturalWidth > 0; }",
        arg=series["xss"],
    )
    assert page.locator("img[src='x'], .card b, .card script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_detail_view_tags_report_and_pacs_links(
    page: Any, series: dict[str, str], postgres: Settings
) -> None:
    from playwright.sync_api import expect

    project, uid = series["project"], series["xss"]
    page.goto(f"/series?project={project}")
    page.locator(f".card[data-uid='{uid}']").click()
    expect(page).to_have_url(f"{page.url.split('/series')[0]}/series/{uid}?project={project}")
    expect(page.locator("#title")).to_have_text(XSS)
    row = page.locator("#tags tbody tr[data-keyword='SeriesDescription']")
    expect(row.locator("td").nth(0)).to_have_text("(0008,103E)")
    expect(row.locator("td").nth(2)).to_have_text("Series Description")
    expect(row.locator("td").nth(3)).to_have_text(XSS)
    patient = page.locator("#tags tbody tr[data-keyword='PatientID'] td")
    expect(patient.nth(0)).to_have_text("(0010,0020)")
    expect(patient.nth(2)).to_have_text("Patient ID")
    expect(page.locator("#summary")).to_contain_text("pagea")
    # The report, embedded.
    report = page.frame_locator("#report")
    expect(report.locator("h1")).to_have_text(f"Validation of series {uid}")
    # The PACS: Orthanc's explorer (managed locally) and the DICOMweb address.
    viewer = page.locator("#viewer-link")
    href = viewer.get_attribute("href") or ""
    assert href.startswith(f"{postgres.pacs.orthanc_url}/app/explorer.html#series?uuid=")
    orthanc_id = href.rsplit("=", 1)[1]
    answer = httpx.get(
        f"{postgres.pacs.orthanc_url}/series/{orthanc_id}",
        auth=(postgres.pacs.username, postgres.pacs.password),
    )
    assert answer.status_code == 200
    assert answer.json()["MainDicomTags"]["SeriesInstanceUID"] == uid
    expect(page.locator("#dicomweb-link")).to_have_attribute(
        "href", f"{postgres.pacs.base_url}/studies/{_study(postgres, project, uid)}/series/{uid}"
    )
    # The platform fields and the thumbnail.
    expect(page.locator("#platform")).to_contain_text("instance_count")
    page.wait_for_function(
        "() => { const img = document.querySelector('#thumb img');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )
    assert page.locator("img[src='x'], #detail b, #detail script").count() == 0
    assert page.evaluate("window.__xss") is None
    # The tag filter.
    page.fill("#tag-filter", "(0010,0020)")
    expect(page.locator("#tags tbody tr[data-keyword='SeriesDescription']")).to_be_hidden()
    expect(page.locator("#tags tbody tr[data-keyword='PatientID']")).to_be_visible()
    visible = page.locator("#tags tbody tr:visible")
    assert 1 <= visible.count() < page.locator("#tags tbody tr").count()
    assert all("(0010,0020)" in text for text in visible.all_inner_texts())


def test_details_api_and_unknown_series(
    web_url: str, series: dict[str, str], postgres: Settings
) -> None:
    auth = (postgres.admin_user, postgres.admin_password)
    project = series["project"]
    answer = httpx.get(f"{web_url}/api/series/{series['mr']}/details?project={project}", auth=auth)
    assert answer.status_code == 200
    body = answer.json()
    keywords = {row["keyword"]: row for row in body["tags"]}
    assert keywords["Modality"]["value"] == "MR"
    assert keywords["Modality"]["tag"] == "(0008,0060)"
    assert "sop_instance_uids" not in body["platform"]
    assert body["platform"]["dataset"] == ["pagea"]
    assert body["pacs"]["orthanc_id"]
    missing = httpx.get(f"{web_url}/api/series/1.2.3/details?project={project}", auth=auth)
    assert missing.status_code == 404
    assert httpx.get(f"{web_url}/series", auth=("admin", "wrong")).status_code == 401
    assert httpx.get(f"{web_url}/series/static/nope.js", auth=auth).status_code == 404


def _study(settings: Settings, project: str, uid: str) -> str:
    index = open_index(settings)
    try:
        doc = index.get(project, uid)
    finally:
        index.close()
    assert doc is not None
    return str(doc["0020000D StudyInstanceUID_keyword"])


def test_series_indexed_on_arrival_shows_storing_until_the_pacs_has_it(
    page: Any, postgres: Settings, platform_engine: Engine, tmp_path: Any
) -> None:
    from playwright.sync_api import expect

    from dicomflow.pipeline.steps import announce_batch
    from dicomflow.platform import Platform

    project = f"st-{uuid.uuid4().hex[:8]}"
    ProjectStore(platform_engine).create_project(project, "storing badge")
    ct = write_ct_series(tmp_path / "ct", [1, 2])
    batch_id = spool_batch(postgres, [Path(p) for p in ct], project=project)
    with Platform(postgres) as platform:
        announce_batch(platform, batch_id)
    uid = _series_uid(ct[0])

    page.goto(f"/series?project={project}")
    card = page.locator(f".card[data-uid='{uid}']")
    expect(card.locator(".badge.storing")).to_have_text("storing in PACS")
    card.click()
    expect(page.locator("#summary")).to_contain_text("not every instance is in the PACS yet")

    run = run_dag(postgres, batch_id)
    assert run["state"] == "success", failed_logs(run)
    page.goto(f"/series?project={project}")
    card = page.locator(f".card[data-uid='{uid}']")
    expect(card).to_be_visible()
    assert card.locator(".badge.storing").count() == 0
    assert card.locator(".badge.none").count() == 0, "validated by the DAG"


def test_a_series_without_description_is_named_by_modality_number_and_date(
    page: Any, series: dict[str, str]
) -> None:
    from playwright.sync_api import expect

    project = series["project"]
    page.goto(f"/series?project={project}")
    # CT_small.dcm: Series Number 1, Series Date 1997-04-30; MR_small.dcm: no Series Date, so
    # its Study Date. Neither has a Series Description.
    plain = page.locator(f".card[data-uid='{series['plain']}'] .description")
    expect(plain).to_have_text("CT series 1, 1997-04-30")
    mr = page.locator(f".card[data-uid='{series['mr']}'] .description")
    expect(mr).to_have_text("MR series 1, 2004-08-26")
    expect(mr).to_have_class(re.compile(r"\bderived\b"))
    # A real description stays as it is.
    xss = page.locator(f".card[data-uid='{series['xss']}'] .description")
    expect(xss).to_have_text(XSS)
    expect(xss).not_to_have_class(re.compile(r"\bderived\b"))
    mr.click()
    expect(page.locator("#title")).to_have_text("MR series 1, 2004-08-26")
    expect(page).to_have_title("dicomflow: MR series 1, 2004-08-26")


def test_home_page_counts_the_series_and_datasets_of_a_project(
    page: Any, series: dict[str, str]
) -> None:
    from playwright.sync_api import expect

    page.goto("/")
    row = page.locator(f"#projects tr[data-project='{series['project']}']")
    expect(row.locator(".series")).to_have_text("3")
    expect(row.locator(".datasets")).to_have_text("2")
    total = int(page.locator("#total-series").inner_text())
    assert total >= 3
    expect(page.locator("#projects tr[data-project='admin'] .series")).to_have_text(str(total))


def test_the_cli_asks_the_running_web_service(
    web_url: str, series: dict[str, str], postgres: Settings
) -> None:
    from click.testing import CliRunner

    from dicomflow.cli.series import series_group

    port = int(web_url.rsplit(":", 1)[1])
    # The command's own database login is wrong: only the web service can answer it.
    through_web = postgres.replace(
        web=postgres.web.replace(port=port),
        postgres=postgres.postgres.replace(password="not-the-password"),
    )
    runner = CliRunner()
    project = series["project"]
    listed = runner.invoke(series_group, ["list", "--project", project, "--json"], obj=through_web)
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["total"] == 3
    shown = runner.invoke(
        series_group, ["show", series["xss"], "--project", project, "--json"], obj=through_web
    )
    assert shown.exit_code == 0, shown.output
    described = json.loads(shown.output)
    assert described["pacs"]["instances"] == 3 and described["thumbnail"]
    bad = runner.invoke(series_group, ["list", "--from", "2024-13-01"], obj=through_web)
    assert bad.exit_code == 2 and "--from" in bad.output
    missing = runner.invoke(series_group, ["show", "1.2.3.4"], obj=through_web)
    assert missing.exit_code == 1 and "not in project" in missing.output
