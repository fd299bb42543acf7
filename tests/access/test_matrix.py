"""The access matrix: every door of the web service, for every role, on the real service.

Project A has an owner, an uploader and a viewer; ``other`` is an uploader of project B only;
``nobody`` sends no credentials; ``revoked`` a revoked token; ``expired`` the cookie of a
session that has ended. Each denial is checked for its status and for leaking nothing: a
project the user may not read answers exactly as one that does not exist, whether or not the
series asked for exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.access.conftest import World

#: Outcomes: OK passes access (whatever the door answers next); HIDDEN is the 404 of a
#: project that does not exist; DENIED a 403; SIGN_IN a 401.
OK, HIDDEN, DENIED, SIGN_IN = "ok", "hidden", "denied", "sign-in"
WHO = ["admin", "owner", "uploader", "viewer", "other", "nobody", "revoked", "expired"]
_OUTSIDERS = {"other": HIDDEN, "nobody": SIGN_IN, "revoked": SIGN_IN, "expired": SIGN_IN}


def _expect(**roles: str) -> dict[str, str]:
    return {**roles, **_OUTSIDERS}


READ = _expect(admin=OK, owner=OK, uploader=OK, viewer=OK)
UPLOAD = _expect(admin=OK, owner=OK, uploader=OK, viewer=DENIED)
MEMBERS = _expect(admin=OK, owner=OK, uploader=DENIED, viewer=DENIED)
ADMIN_ONLY = {
    "admin": OK,
    "owner": DENIED,
    "uploader": DENIED,
    "viewer": DENIED,
    "other": DENIED,
    "nobody": SIGN_IN,
    "revoked": SIGN_IN,
    "expired": SIGN_IN,
}


def _stow_body() -> tuple[bytes, str]:
    """A STOW-RS request whose one part is no DICOM: refused by intake, after access."""
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--{boundary}--\r\n"
    ).encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


# (name, expectations, request(world, client, uid) -> response)
Door = tuple[str, dict[str, str], Callable[[World, httpx.Client, str], httpx.Response]]
DOORS: list[Door] = [
    ("search", READ, lambda w, c, u: c.get("/api/series", params={"project": w.a})),
    ("document", READ, lambda w, c, u: c.get(f"/api/series/{u}", params={"project": w.a})),
    (
        "thumbnail",
        READ,
        lambda w, c, u: c.get(f"/api/series/{u}/thumbnail", params={"project": w.a}),
    ),
    (
        "report",
        READ,
        lambda w, c, u: c.get(f"/api/series/{u}/validation-report", params={"project": w.a}),
    ),
    ("details", READ, lambda w, c, u: c.get(f"/api/series/{u}/details", params={"project": w.a})),
    ("summary", READ, lambda w, c, u: c.get(f"/api/series/{u}/summary", params={"project": w.a})),
    ("datasets", READ, lambda w, c, u: c.get(f"/api/projects/{w.a}/datasets")),
    ("import report", READ, lambda w, c, u: c.get(f"/api/imports/{w.a}/upload-import-none")),
    ("uploads area", UPLOAD, lambda w, c, u: c.get(f"/api/uploads/{w.a}")),
    (
        "announce upload",
        UPLOAD,
        lambda w, c, u: c.post(
            f"/api/uploads/{w.a}", json={"files": [{"path": "a.dcm", "size": 1}]}
        ),
    ),
    (
        "start import",
        UPLOAD,
        lambda w, c, u: c.post(
            "/api/imports", json={"project": w.a, "dataset": "ds", "uploads": ["nope"]}
        ),
    ),
    (
        "stow",
        UPLOAD,
        lambda w, c, u: c.post(
            f"/dicomweb/projects/{w.a}/studies?dataset=ds",
            content=_stow_body()[0],
            headers={"Content-Type": _stow_body()[1]},
        ),
    ),
    ("members", MEMBERS, lambda w, c, u: c.get(f"/api/projects/{w.a}/members")),
    ("audit", ADMIN_ONLY, lambda w, c, u: c.get("/api/audit")),
]


@pytest.fixture(scope="module")
def clients(world: World) -> Iterator[dict[str, httpx.Client]]:
    """A client per person: tokens, none, a revoked token, an ended session."""
    revoked = world.manager.create_token("test", world.users["uploader"], "to revoke")
    world.manager.revoke_token("test", revoked.info.id)
    expired = world.sign_in("uploader")
    with world.engine.begin() as conn:
        conn.execute(
            text("UPDATE web_sessions SET expires_at = :t WHERE user_name = :u"),
            {"t": datetime.now(UTC) - timedelta(seconds=1), "u": world.users["uploader"]},
        )
    made = {who: world.client(who) for who in ("admin", "owner", "uploader", "viewer", "other")}
    made["nobody"] = world.client(None)
    made["revoked"] = httpx.Client(
        base_url=world.url, headers={"Authorization": f"Bearer {revoked.secret}"}, timeout=30
    )
    made["expired"] = expired
    yield made
    for client in made.values():
        client.close()


def _outcome(response: httpx.Response) -> str:
    if response.status_code == 401:
        return SIGN_IN
    if response.status_code == 403:
        return DENIED
    if (
        response.status_code == 404
        and "does not exist" in response.text
        and "project" in (response.json().get("detail", ""))
        and "upload" not in response.text
    ):
        return HIDDEN
    return OK


@pytest.mark.parametrize("door", DOORS, ids=[d[0] for d in DOORS])
def test_every_door_answers_each_role_as_the_policy_says(
    world: World, clients: dict[str, httpx.Client], door: Door
) -> None:
    name, expected, call = door
    uid = world.series["only_a"]
    for who in WHO:
        response = call(world, clients[who], uid)
        assert _outcome(response) == expected[who], (name, who, response.status_code, response.text)
        if expected[who] == OK:
            assert response.status_code < 500 or response.status_code == 503, (name, who)
        if expected[who] == HIDDEN:
            # Nothing said beyond what a project that does not exist gets.
            detail = response.json()["detail"]
            assert detail == f"project {world.a!r} does not exist", (name, who)
        if expected[who] == SIGN_IN:
            assert response.headers["www-authenticate"].startswith("Bearer"), (name, who)


@pytest.mark.parametrize(
    "path",
    [
        "/api/series/{uid}",
        "/api/series/{uid}/thumbnail",
        "/api/series/{uid}/validation-report",
        "/api/series/{uid}/details",
        "/api/series/{uid}/summary",
    ],
)
def test_another_projects_series_is_answered_like_one_that_does_not_exist(
    world: World, clients: dict[str, httpx.Client], path: str
) -> None:
    other = clients["other"]  # uploader of B, nothing in A
    viewer = clients["viewer"]  # viewer of A, nothing in B
    for client, project, uid in ((other, world.a, "only_a"), (viewer, world.b, "only_b")):
        existing = client.get(path.format(uid=world.series[uid]), params={"project": project})
        missing = client.get(
            path.format(uid=f"{world.series[uid]}.404"), params={"project": project}
        )
        unknown = client.get(path.format(uid=world.series[uid]), params={"project": "acc-none"})
        assert existing.status_code == missing.status_code == unknown.status_code == 404
        assert existing.json() == missing.json()
        assert unknown.json()["detail"] == existing.json()["detail"].replace(project, "acc-none")
    # Read through his own project, a series only B holds is simply not there, as one that
    # exists nowhere.
    in_a = viewer.get(path.format(uid=world.series["only_b"]), params={"project": world.a})
    nowhere = viewer.get(
        path.format(uid=f"{world.series['only_b']}.404"), params={"project": world.a}
    )
    assert in_a.status_code == nowhere.status_code == 404
    assert in_a.json()["detail"].replace(world.series["only_b"], "X") == nowhere.json()[
        "detail"
    ].replace(f"{world.series['only_b']}.404", "X")


def test_a_project_document_names_that_project_and_its_datasets_only(
    world: World, clients: dict[str, httpx.Client]
) -> None:
    viewer = clients["viewer"]
    shared = world.series["shared"]
    found = viewer.get("/api/series", params={"project": world.a}).json()
    uids = {d["0020000E SeriesInstanceUID_keyword"] for d in found["items"]}
    assert uids == {world.series["only_a"], shared}
    assert set(found["facets"].get("project", {})) <= {world.a}
    doc = viewer.get(f"/api/series/{shared}", params={"project": world.a}).json()
    assert (doc["project"], doc["dataset"]) == ([world.a], ["ds-a"])
    details = viewer.get(f"/api/series/{shared}/details", params={"project": world.a}).json()
    assert (details["document"]["project"], details["document"]["dataset"]) == ([world.a], ["ds-a"])
    assert world.b not in str(details) and "ds-b" not in str(details)
    # B's words in the search: nothing of B.
    assert (
        viewer.get("/api/series", params={"project": world.a, "dataset": "ds-b"}).json()["total"]
        == 0
    )
    # The admin copy, with both projects, is the administrators' alone.
    denied = viewer.get(f"/api/series/{shared}", params={"project": "admin"})
    assert denied.status_code == 404
    admin_doc = clients["admin"].get(f"/api/series/{shared}", params={"project": "admin"}).json()
    assert sorted(admin_doc["project"]) == sorted([world.a, world.b])


def test_lists_show_only_the_users_projects(world: World, clients: dict[str, httpx.Client]) -> None:
    listed = clients["viewer"].get("/api/projects").json()
    assert [(p["name"], p["role"]) for p in listed] == [(world.a, "viewer")]
    other = {p["name"] for p in clients["other"].get("/api/projects").json()}
    assert other == {world.b}
    everything = {p["name"] for p in clients["admin"].get("/api/projects").json()}
    assert {world.a, world.b, "admin"} <= everything
    # Without a project, a user who is no administrator is asked to name one of his.
    answer = clients["viewer"].get("/api/series")
    assert answer.status_code == 400 and world.a in answer.json()["detail"]
    config = clients["viewer"].get("/api/uploads/config").json()
    assert config["projects"] == []
    assert clients["uploader"].get("/api/uploads/config").json()["projects"] == [world.a]


def test_pages_show_only_the_users_projects(world: World) -> None:
    viewer = world.sign_in("viewer")
    home = viewer.get("/").text
    assert world.a in home and world.b not in home and 'data-project="admin"' not in home
    projects = viewer.get("/projects").text
    assert world.a in projects and world.b not in projects
    assert "members-" not in projects  # members are for owners
    owner = world.sign_in("owner").get("/projects").text
    assert f'id="members-{world.a}"' in owner and world.users["viewer"] in owner
    # Administrators' pages: 403 for everybody else; their entries are not in the navigation.
    for path in ("/users", "/audit"):
        assert viewer.get(path).status_code == 403
    assert 'data-nav="users"' not in home and 'data-nav="airflow"' not in home
    uploads = viewer.get("/uploads").text
    assert 'id="no-upload"' in uploads and 'id="dashboard"' not in uploads


def test_what_users_did_is_in_the_audit_trail(world: World, clients: dict[str, Any]) -> None:
    uploader = clients["uploader"]
    announced = uploader.post(
        f"/api/uploads/{world.a}", json={"files": [{"path": "audit.dcm", "size": 3}]}
    )
    assert announced.status_code == 201
    upload_id = announced.json()["upload_id"]
    events = (
        clients["admin"]
        .get("/api/audit", params={"actor": world.users["uploader"], "project": world.a})
        .json()
    )
    assert any(e["action"] == "upload" and e["target"] == upload_id for e in events)
    assert all(e["address"] == "127.0.0.1" for e in events)
    members = clients["admin"].get("/api/audit", params={"action": "member-set"}).json()
    assert any(e["target"] == world.users["viewer"] and e["detail"] == "viewer" for e in members)


#: Pages: (path, who gets it); everyone else who is signed in gets 403.
PAGES = [
    ("/", {"admin", "owner", "uploader", "viewer", "other"}),
    ("/series", {"admin", "owner", "uploader", "viewer", "other"}),
    ("/uploads", {"admin", "owner", "uploader", "viewer", "other"}),
    ("/projects", {"admin", "owner", "uploader", "viewer", "other"}),
    ("/account", {"admin", "owner", "uploader", "viewer", "other"}),
    ("/docs", {"admin", "owner", "uploader", "viewer", "other"}),
    ("/users", {"admin"}),
    ("/audit", {"admin"}),
]


def test_every_page_for_every_role(world: World) -> None:
    sessions = {
        who: world.sign_in(who) for who in ("admin", "owner", "uploader", "viewer", "other")
    }
    try:
        for path, allowed in PAGES:
            for who, browser in sessions.items():
                status = browser.get(path, headers={"Accept": "text/html"}).status_code
                assert status == (200 if who in allowed else 403), (path, who, status)
            # Without a session, a page leads to the sign-in page.
            anonymous = httpx.get(f"{world.url}{path}", headers={"Accept": "text/html"})
            assert anonymous.status_code == 303, path
            assert anonymous.headers["location"].startswith("/signin?next="), path
    finally:
        for browser in sessions.values():
            browser.close()
