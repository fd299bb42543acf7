"""The pages as people use them, in headless Chromium: sign in, switch project, what a viewer
sees, the Projects page for an owner, a token shown once, sign out."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.access.conftest import PASSWORD, World
from tests.uploads.web_server import sign_in

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="chromium is installed by scripts/install.sh --test"
)


@pytest.fixture
def browser(world: World) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-sync"],
        )
        yield chromium
        chromium.close()


def test_a_member_of_two_projects_switches_between_them_and_signs_out(
    world: World, browser: Any
) -> None:
    from playwright.sync_api import expect

    from dicomflow.access.policy import Role

    name = "pages-" + world.a[-6:]
    world.manager.create_user("test", name, PASSWORD)
    world.manager.set_member("test", world.a, name, Role.VIEWER)
    world.manager.set_member("test", world.b, name, Role.UPLOADER)
    page = browser.new_context(base_url=world.url).new_page()
    # Any page leads to the sign-in page first, and back after it.
    page.goto(f"/series?project={world.b}")
    expect(page).to_have_url(re.compile(r"/signin\?next="))
    page.fill("#username", name)
    page.fill("#password", "not the password")
    page.click("#signin-button")
    expect(page.locator("#signin-error")).to_have_text("wrong user name or password")
    page.fill("#password", PASSWORD)
    page.click("#signin-button")
    expect(page).to_have_url(re.compile(rf"/series\?project={world.b}"))
    expect(page.locator("header .user")).to_have_text(name)
    # His projects only, B's series; then A's.
    expect(page.locator("#project option")).to_have_count(2)
    options = page.locator("#project option").evaluate_all("os => os.map(o => o.value)")
    assert sorted(options) == sorted([world.a, world.b])
    expect(page.locator(".card")).to_have_count(2)
    expect(page.locator("#results")).to_contain_text("Dataset: ds-b")
    page.select_option("#project", world.a)
    expect(page.locator("#status")).to_have_text(f"2 series in {world.a}")
    expect(page.locator("#results")).to_contain_text("Dataset: ds-a")
    expect(page.locator("#results")).not_to_contain_text("ds-b")
    # The administrators' areas are not in his navigation.
    nav = page.locator("header nav a").evaluate_all("as => as.map(a => a.dataset.nav)")
    assert nav == ["series", "uploads", "projects", "api"]
    # Uploads: into B (uploader), not into A (viewer).
    page.goto("/uploads")
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#project option")).to_have_count(1)
    options = page.locator("#project option").evaluate_all("os => os.map(o => o.value)")
    assert options == [world.b]
    # Sign out from the user menu: the session is over, pages lead to the sign-in again.
    page.click("header .user-menu summary")
    page.click("#signout")
    expect(page).to_have_url(re.compile(r"/signin$"))
    page.goto("/uploads")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fuploads"))


def test_a_viewer_sees_no_upload_controls(world: World, browser: Any) -> None:
    from playwright.sync_api import expect

    page = sign_in(browser.new_page(), world.url, world.users["viewer"], PASSWORD)
    page.goto(f"{world.url}/uploads")
    expect(page.locator("#no-upload")).to_contain_text("You may upload into no project")
    expect(page.locator("#dashboard")).to_have_count(0)
    expect(page.locator("#import-form")).to_have_count(0)
    page.goto(f"{world.url}/")
    expect(page.locator(f"#projects tr[data-project='{world.a}'] .role")).to_have_text("viewer")
    expect(page.locator("#projects tr")).to_have_count(2)  # the header and project A


def test_an_owner_manages_members_and_a_user_makes_a_token(world: World, browser: Any) -> None:
    from playwright.sync_api import expect

    page = sign_in(browser.new_page(), world.url, world.users["owner"], PASSWORD)
    page.goto(f"{world.url}/projects")
    members = page.locator(f"#members-{world.a}")
    add = members.locator("form.add-member")
    add.locator("input[name=member]").fill(world.users["other"])
    add.locator("select[name=role]").select_option("viewer")
    add.locator("button[type=submit]").click()
    expect(page.locator("#notice")).to_have_text(f"{world.users['other']} is viewer of {world.a}")
    row = page.locator(f"#members-{world.a} tr[data-member='{world.users['other']}']")
    expect(row.locator(".role")).to_have_text("viewer")
    row.locator("button.remove-member").click()
    expect(page.locator("#notice")).to_contain_text("no longer a member")
    expect(page.locator(f"tr[data-member='{world.users['other']}']")).to_have_count(0)
    # A user who is no member of the project gets the same answer as for no project at all.
    other = sign_in(browser.new_page(), world.url, world.users["other"], PASSWORD)
    other.goto(f"{world.url}/projects")
    expect(other.locator(f"#members-{world.a}")).to_have_count(0)

    page.goto(f"{world.url}/account")
    page.fill("#token-name", "pages test")
    page.click("#token-form button")
    secret = page.locator("#token-secret").inner_text()
    assert secret.startswith("dft_")
    page.goto(f"{world.url}/account")
    expect(page.locator("#new-token")).to_have_count(0)
    assert secret not in page.content()
    expect(page.locator("#token-table")).to_contain_text("pages test")
