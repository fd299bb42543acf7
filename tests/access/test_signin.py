"""Signing in and out: the session cookie, its end, CSRF, and the API description."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from tests.access.conftest import PASSWORD, World


def _form_token(client: httpx.Client) -> str:
    client.get("/signin")
    token = client.cookies.get("dicomflow_signin")
    assert token
    return token


def test_sign_in_sets_a_safe_session_cookie_and_sign_out_ends_it(world: World) -> None:
    with httpx.Client(base_url=world.url, timeout=30) as browser:
        # A page asked for without a session leads to the sign-in page, and back.
        page = browser.get("/series?project=x", headers={"Accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == "/signin?next=%2Fseries%3Fproject%3Dx"
        answer = browser.post(
            "/signin",
            data={
                "username": world.users["viewer"],
                "password": PASSWORD,
                "next": "/series?project=x",
                "signin_token": _form_token(browser),
            },
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/series?project=x"
        cookie = next(
            v
            for k, v in answer.headers.multi_items()
            if k == "set-cookie" and v.startswith("dicomflow_session=")
        )
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "max-age", "path"} <= attributes
        assert "samesite=lax" in cookie.lower()
        assert "secure" not in attributes  # plain HTTP here; see the next test for TLS
        assert browser.get("/api/projects").status_code == 200
        secret = browser.cookies["dicomflow_session"]
        # The database keeps a hash, never the cookie's value.
        with world.engine.connect() as conn:
            stored = conn.execute(text("SELECT id_hash FROM web_sessions")).scalars().all()
        assert secret not in stored and len(stored) >= 1

        csrf = world.csrf(browser)
        out = browser.post("/signout", data={"csrf_token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        # The old cookie opens nothing any more, even sent again by hand.
        replay = httpx.get(f"{world.url}/api/projects", cookies={"dicomflow_session": secret})
        assert replay.status_code == 401


def test_the_cookie_is_secure_behind_tls(world: World) -> None:
    with httpx.Client(base_url=world.url, timeout=30) as browser:
        # uvicorn takes the scheme from the proxy on this host (X-Forwarded-Proto).
        browser.headers["X-Forwarded-Proto"] = "https"
        token = _form_token(browser)
        answer = browser.post(
            "/signin",
            data={
                "username": world.users["viewer"],
                "password": PASSWORD,
                "next": "/",
                "signin_token": token,
            },
            # httpx keeps Secure cookies for https: the browser behind the proxy would send it.
            headers={"Cookie": f"dicomflow_signin={token}"},
        )
        assert answer.status_code == 303
        cookie = next(
            v
            for k, v in answer.headers.multi_items()
            if k == "set-cookie" and v.startswith("dicomflow_session=")
        )
        assert "secure" in cookie.lower() and "httponly" in cookie.lower()


def test_a_wrong_password_or_another_sites_next_is_refused(world: World) -> None:
    with httpx.Client(base_url=world.url, timeout=30) as browser:
        wrong = browser.post(
            "/signin",
            data={
                "username": world.users["viewer"],
                "password": "wrong password",
                "next": "/",
                "signin_token": _form_token(browser),
            },
        )
        assert wrong.status_code == 401
        assert "wrong user name or password" in wrong.text
        assert "dicomflow_session" not in browser.cookies
        # The same words for an account that does not exist.
        unknown = browser.post(
            "/signin",
            data={
                "username": "nobody-at-all",
                "password": "wrong password",
                "next": "/",
                "signin_token": _form_token(browser),
            },
        )
        assert unknown.status_code == 401 and "wrong user name or password" in unknown.text
        # A sign-in form posted from elsewhere (no form token of ours) is refused.
        forged = httpx.post(
            f"{world.url}/signin",
            data={"username": world.users["viewer"], "password": PASSWORD, "next": "/"},
        )
        assert forged.status_code == 403 and "dicomflow_session" not in forged.cookies
        away = browser.post(
            "/signin",
            data={
                "username": world.users["viewer"],
                "password": PASSWORD,
                "next": "//evil.example/",
                "signin_token": _form_token(browser),
            },
        )
        assert away.status_code == 303 and away.headers["location"] == "/"


def test_a_session_ends_after_its_lifetime_and_when_idle(world: World) -> None:
    now = datetime.now(UTC)
    for column, value in (
        ("expires_at", now - timedelta(seconds=1)),
        ("last_seen_at", now - timedelta(minutes=world.settings.auth.idle_minutes + 1)),
    ):
        browser = world.sign_in("owner")
        assert browser.get("/api/projects").status_code == 200
        with world.engine.begin() as conn:
            conn.execute(
                text(f"UPDATE web_sessions SET {column} = :t WHERE user_name = :u"),
                {"t": value, "u": world.users["owner"]},
            )
        api = browser.get("/api/projects")
        assert api.status_code == 401 and "session has ended" in api.json()["detail"]
        browser.cookies.clear()
        browser.close()
        # Its row is gone: nothing to replay.
        with world.engine.connect() as conn:
            left = conn.execute(
                text("SELECT count(*) FROM web_sessions WHERE user_name = :u"),
                {"u": world.users["owner"]},
            ).scalar()
        assert left == 0
    # A page of an ended session leads to the sign-in page.
    browser = world.sign_in("owner")
    with world.engine.begin() as conn:
        conn.execute(
            text("UPDATE web_sessions SET expires_at = :t WHERE user_name = :u"),
            {"t": now, "u": world.users["owner"]},
        )
    page = browser.get("/projects", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"].startswith("/signin?next=")


def test_state_changing_requests_of_a_session_need_its_csrf_token(world: World) -> None:
    browser = world.sign_in("uploader")
    announce = {"files": [{"path": "csrf.dcm", "size": 1}]}
    # As a page of another site would send it: the cookie, but no token.
    assert browser.post(f"/api/uploads/{world.a}", json=announce).status_code == 403
    wrong = browser.post(
        f"/api/uploads/{world.a}", json=announce, headers={"X-CSRF-Token": "guess"}
    )
    assert wrong.status_code == 403
    csrf = world.csrf(browser)
    ok = browser.post(f"/api/uploads/{world.a}", json=announce, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    # Forms carry it as a field; without it the form is refused and nothing changes.
    owner = world.sign_in("owner")
    form = {"member": world.users["other"], "role": "viewer"}
    assert owner.post(f"/projects/{world.a}/members", data=form).status_code == 403
    assert world.users["other"] not in {m.user for m in world.manager.accounts.members(world.a)}
    done = owner.post(
        f"/projects/{world.a}/members", data={**form, "csrf_token": world.csrf(owner)}
    )
    assert done.status_code == 303
    assert world.users["other"] in {m.user for m in world.manager.accounts.members(world.a)}
    world.manager.remove_member("test", world.a, world.users["other"])
    # Sign-out is a state change too.
    assert browser.post("/signout").status_code == 403
    # A token is no ambient credential: no CSRF token needed.
    with world.client("uploader") as script:
        assert script.post(f"/api/uploads/{world.a}", json=announce).status_code == 201


def test_the_api_description_is_for_signed_in_users_only(world: World) -> None:
    for path in ("/docs", "/openapi.json", "/redoc"):
        response = httpx.get(f"{world.url}{path}")
        assert response.status_code in (401, 404), path
        assert "openapi" not in response.text.lower() or response.status_code == 401
    with world.client("viewer") as client:
        spec = client.get("/openapi.json")
        assert spec.status_code == 200 and "/api/series" in spec.json()["paths"]
        assert "swagger" in client.get("/docs").text.lower()
    assert httpx.get(f"{world.url}/healthz").status_code == 200
