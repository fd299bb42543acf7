"""Every page in headless Chromium: one header, one navigation, the current page marked;
the home page says what the platform holds and how to send DICOM to it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from tests.uploads.web_server import running_web, sign_in

CHROMIUM = "/usr/bin/chromium"
PROJECT = "navpages"
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="chromium is installed by scripts/install.sh --test"
)
#: Every page of the platform and the navigation key it marks (``home``: the brand link).
PAGES = [
    ("/", "home"),
    ("/series", "series"),
    ("/series/1.2.3?project=admin", "series"),
    ("/uploads", "uploads"),
    ("/projects", "projects"),
    ("/users", "users"),
    ("/audit", "audit"),
]
_HEADER_JS = """() => {
  const header = document.querySelector("header.app-header");
  if (!header) return null;
  return {
    headers: document.querySelectorAll("header").length,
    navs: document.querySelectorAll("nav[aria-label=main]").length,
    links: [...header.querySelectorAll("nav a")].map(a => [a.textContent, a.getAttribute("href")]),
    current: [...header.querySelectorAll("[aria-current=page]")]
      .map(a => a.dataset.nav || (a.classList.contains("brand") ? "home" : a.textContent)),
    background: getComputedStyle(header).backgroundColor,
    user: header.querySelector(".user").textContent,
  };
}"""


@pytest.fixture(scope="module")
def web_url(postgres: Settings, s3: Settings, platform_engine: Engine) -> Iterator[str]:
    store = ProjectStore(platform_engine)
    store.create_project(PROJECT, "navigation <b>tests</b>")
    store.ensure_dataset(PROJECT, "navset")
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


def test_every_page_has_the_same_navigation_with_its_page_marked(
    page: Any, postgres: Settings
) -> None:
    from playwright.sync_api import expect

    expected = [
        ["Series", "/series"],
        ["Data Upload", "/uploads"],
        ["Projects", "/projects"],
        ["Users", "/users"],
        ["Audit", "/audit"],
        ["Airflow", postgres.airflow.base_url],
        ["API", "/docs"],
    ]
    for path, current in PAGES:
        page.goto(path)
        header = page.evaluate(_HEADER_JS)
        assert header is not None, f"{path}: no app header"
        assert (header["headers"], header["navs"]) == (1, 1), path
        assert header["links"] == expected, path
        assert header["current"] == [current], path
        # Styled by the shared stylesheet, the same on every page.
        assert header["background"] == "rgb(29, 53, 87)", path
        assert header["user"] == postgres.admin_user, path

    # The links lead where they say, and the mark follows.
    page.goto("/")
    page.click("header nav a[data-nav=uploads]")
    expect(page).to_have_url(re.compile(r"/uploads$"))
    expect(page.locator("header [aria-current=page]")).to_have_attribute("data-nav", "uploads")
    page.click("header nav a[data-nav=series]")
    expect(page).to_have_url(re.compile(r"/series(\?.*)?$"))
    expect(page.locator("header [aria-current=page]")).to_have_attribute("data-nav", "series")
    page.click("header a.brand")
    expect(page).to_have_url(re.compile(r"/$"))
    # Airflow is another application: a new tab.
    expect(page.locator("header nav a[data-nav=airflow]")).to_have_attribute("target", "_blank")


def test_home_page_lists_projects_and_areas(page: Any, postgres: Settings) -> None:
    from playwright.sync_api import expect

    page.goto("/")
    expect(page).to_have_title("dicomflow")
    row = page.locator(f"#projects tr[data-project='{PROJECT}']")
    # The description is text, never markup.
    expect(row.locator("td").nth(1)).to_have_text("navigation <b>tests</b>")
    expect(row.locator(".datasets")).to_have_text("1")
    expect(row.locator(".series")).to_have_text("0")
    expect(row.locator("a")).to_have_attribute("href", f"/series?project={PROJECT}")
    expect(page.locator("#projects tr[data-project='admin']")).to_have_count(1)
    assert page.locator("#index-error").count() == 0
    # Each area of the navigation, with what is found there; the PACS when it is ours.
    areas = page.locator("#areas a").evaluate_all("links => links.map(a => a.dataset.area)")
    pacs = ["pacs"] if postgres.pacs.managed else []
    assert areas == ["series", "uploads", "projects", "users", "audit", "airflow", "api", *pacs]
    expect(page.locator("#areas li").first).to_contain_text("Search every received series")


def test_home_page_says_how_to_send_dicom_and_its_echo_answers(
    page: Any, full_stack: Settings
) -> None:
    from playwright.sync_api import expect

    receiver = full_stack.receiver
    page.goto("/")
    # The test stack's receiver listens on loopback: the page says so.
    expect(page.locator("#receiver-host")).to_have_text(receiver.host)
    expect(page.locator("#receiver-port")).to_have_text(str(receiver.port))
    expect(page.locator("#receiver-note")).to_contain_text("this machine only")
    expect(page.locator("#called-ae")).to_contain_text("project")
    expect(page.locator("#calling-ae")).to_contain_text("dataset")
    example = page.locator("#send-example").inner_text()
    assert f"dcmsend {receiver.host} {receiver.port} --aetitle DATASET --call " in example
    # The C-ECHO as shown reaches the receiver and is answered.
    echo = next(line for line in example.splitlines() if line.startswith("echoscu "))
    done = subprocess.run(shlex.split(echo), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
