"""Failed sign-ins are refused per account and per address; tokens are shown once and revocable.

The web service trusts X-Forwarded-For from a proxy on its own host (uvicorn's default), so
each test signs in from an address of its own.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from dicomflow.access.policy import Role
from tests.access.conftest import PASSWORD, World


def _attempt(world: World, user: str, password: str, address: str) -> httpx.Response:
    with httpx.Client(
        base_url=world.url, timeout=30, headers={"X-Forwarded-For": address}
    ) as browser:
        browser.get("/signin")
        return browser.post(
            "/signin",
            data={
                "username": user,
                "password": password,
                "next": "/",
                "signin_token": browser.cookies.get("dicomflow_signin", ""),
            },
        )


@pytest.fixture
def person(world: World) -> str:
    """An account of this test alone."""
    name = f"throttled-{uuid.uuid4().hex[:6]}"
    world.manager.create_user("test", name, PASSWORD)
    return name


def test_wrong_passwords_of_one_account_get_it_refused_even_with_the_right_one(
    world: World, person: str
) -> None:
    limit = world.settings.auth.account_failures
    # From several addresses, so that only the account's limit is reached.
    for n in range(limit):
        assert _attempt(world, person, f"wrong {n}", f"10.1.0.{n + 1}").status_code == 401
    refused = _attempt(world, person, PASSWORD, "10.1.1.1")
    assert refused.status_code == 429
    assert "too many failed sign-ins for this account" in refused.text
    assert int(refused.headers["retry-after"]) >= 1
    # HTTP Basic is the same door: refused too, without a password check.
    basic = httpx.get(
        f"{world.url}/api/projects",
        auth=(person, PASSWORD),
        headers={"X-Forwarded-For": "10.1.1.2"},
    )
    assert basic.status_code == 429
    # Other accounts are not affected.
    assert _attempt(world, world.users["viewer"], PASSWORD, "10.1.1.3").status_code == 303
    events = world.manager.audit.store.query(actor=person, action="sign-in")
    assert [e.outcome for e in events].count("failed") == limit
    assert "refused" in [e.outcome for e in events]


def test_wrong_passwords_from_one_address_get_it_refused_for_every_account(
    world: World, person: str
) -> None:
    limit = world.settings.auth.address_failures
    address = f"10.2.{uuid.uuid4().int % 200}.9"
    # Many names, each below its own limit: a guesser spraying one password.
    for n in range(limit):
        answer = _attempt(world, f"sprayed-{n}", "Winter2024!", address)
        assert answer.status_code == 401
    refused = _attempt(world, person, PASSWORD, address)
    assert refused.status_code == 429 and "your address" in refused.text
    # The same account from another address signs in.
    assert _attempt(world, person, PASSWORD, "10.2.250.1").status_code == 303


def test_a_successful_sign_in_clears_the_accounts_count(world: World, person: str) -> None:
    limit = world.settings.auth.account_failures
    for n in range(limit - 1):
        assert _attempt(world, person, "wrong", f"10.3.0.{n + 1}").status_code == 401
    assert _attempt(world, person, PASSWORD, "10.3.1.1").status_code == 303
    for n in range(limit - 1):
        assert _attempt(world, person, "wrong", f"10.3.2.{n + 1}").status_code == 401
    assert _attempt(world, person, PASSWORD, "10.3.3.1").status_code == 303


def test_a_token_is_shown_once_works_as_bearer_and_basic_and_stops_when_revoked(
    world: World, person: str
) -> None:
    world.manager.set_member("test", world.a, person, Role.VIEWER)
    browser = world.sign_in_as(person, PASSWORD)
    csrf = world.csrf(browser)
    made = browser.post("/account/tokens", data={"name": "my script", "csrf_token": csrf})
    assert made.status_code == 200
    secret = made.text.split('id="token-secret">', 1)[1].split("<", 1)[0]
    assert secret.startswith("dft_")
    # Shown once: the page does not show it again, the database keeps only its hash.
    page = browser.get("/account").text
    assert secret not in page and secret[:10] in page
    with world.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT token_hash, prefix FROM api_tokens").all()
    assert all(secret not in row[0] for row in stored)

    bearer = httpx.get(f"{world.url}/api/projects", headers={"Authorization": f"Bearer {secret}"})
    assert bearer.status_code == 200 and [p["name"] for p in bearer.json()] == [world.a]
    basic = httpx.get(f"{world.url}/api/projects", auth=(person, secret))
    assert basic.status_code == 200
    token_id = next(t.id for t in world.manager.credentials.tokens(person) if t.name == "my script")
    revoked = browser.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 303
    for attempt in (
        httpx.get(f"{world.url}/api/projects", headers={"Authorization": f"Bearer {secret}"}),
        httpx.get(f"{world.url}/api/projects", auth=(person, secret)),
    ):
        assert attempt.status_code == 401
    # Somebody else's token cannot be revoked from one's own page (it is not there).
    others = world.manager.credentials.tokens(world.users["viewer"])[0].id
    assert (
        browser.post(f"/account/tokens/{others}/revoke", data={"csrf_token": csrf}).status_code
        == 404
    )
    assert world.manager.credentials.token(others).revoked_at is None


def test_a_disabled_account_stops_its_sessions_and_tokens(world: World, person: str) -> None:
    browser = world.sign_in_as(person, PASSWORD)
    token = world.manager.create_token("test", person, "before").secret
    assert browser.get("/api/projects").status_code == 200
    world.manager.set_disabled("test", person, True)
    assert browser.get("/api/projects").status_code == 401
    assert (
        httpx.get(
            f"{world.url}/api/projects", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 401
    )
    assert httpx.get(f"{world.url}/api/projects", auth=(person, PASSWORD)).status_code == 401
    world.manager.set_disabled("test", person, False)
    assert (
        httpx.get(
            f"{world.url}/api/projects", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )


def test_a_new_password_ends_sessions_and_the_old_one(world: World, person: str) -> None:
    browser = world.sign_in_as(person, PASSWORD)
    assert httpx.get(f"{world.url}/api/projects", auth=(person, PASSWORD)).status_code == 200
    world.manager.set_password("test", person, "another long password")
    assert browser.get("/api/projects").status_code == 401
    # HTTP Basic remembered the old password as verified: no more.
    assert httpx.get(f"{world.url}/api/projects", auth=(person, PASSWORD)).status_code == 401
    assert (
        httpx.get(f"{world.url}/api/projects", auth=(person, "another long password")).status_code
        == 200
    )
