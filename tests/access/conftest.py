"""Two projects, a person for each role, and the web service on the real PostgreSQL and S3.

Project A holds series ``only_a`` and ``shared``; project B holds ``only_b`` and ``shared``
(in a dataset of its own). Each project's index copy names that project and its datasets
only, as the pipeline writes them; ``admin``'s copy names both. Every person has a token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dicomflow.access.manage import AccessManager
from dicomflow.access.policy import Role
from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.index import open_index
from dicomflow.storage.client import ObjectStore
from dicomflow.storage.keys import report_key, thumbnail_key
from tests.uploads.web_server import running_web

ROOT = "1.2.826.0.1.3680043.8.498.77"
PASSWORD = "correct horse battery"
#: A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
)


@dataclass
class World:
    """What the access tests see: names, tokens, series and the service's address."""

    url: str
    settings: Settings
    engine: Engine
    a: str
    b: str
    users: dict[str, str]
    tokens: dict[str, str]
    series: dict[str, str]
    manager: AccessManager
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, who: str | None, **kw: Any) -> httpx.Client:
        """A client acting as ``who`` (a key of ``users``) with his token; ``None``: nobody."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def sign_in(self, who: str, *, address: str | None = None) -> httpx.Client:
        """A client with a browser session of ``who`` (signed in through the form)."""
        return self.sign_in_as(self.users[who], self.password(who), address=address)

    def sign_in_as(self, name: str, password: str, *, address: str | None = None) -> httpx.Client:
        """A client with a browser session of account ``name``."""
        client = httpx.Client(base_url=self.url, timeout=30)
        if address:
            client.headers["X-Forwarded-For"] = address
        client.get("/signin")
        answer = client.post(
            "/signin",
            data={
                "username": name,
                "password": password,
                "next": "/",
                "signin_token": client.cookies.get("dicomflow_signin", ""),
            },
        )
        assert answer.status_code == 303, answer.text
        return client

    def password(self, who: str) -> str:
        """The password of ``who`` (the first administrator's is generated)."""
        return self.settings.admin_password if who == "admin" else PASSWORD

    def csrf(self, client: httpx.Client) -> str:
        """The session's CSRF token as a page carries it."""
        page = client.get("/account").text
        marker = '<meta name="csrf-token" content="'
        return page.split(marker, 1)[1].split('"', 1)[0]


def _doc(uid: str, project: list[str], dataset: list[str]) -> dict[str, Any]:
    return {
        "0020000E SeriesInstanceUID_keyword": uid,
        "0020000D StudyInstanceUID_keyword": uid + ".9",
        "00080060 Modality_keyword": "CT",
        "00100020 PatientID_keyword": "ACCESS",
        "0008103E SeriesDescription_keyword": "access test",
        "project": project,
        "dataset": dataset,
        "instance_count": 1,
    }


@pytest.fixture(scope="session")
def world(postgres: Settings, s3: Settings, platform_engine: Engine) -> Iterator[World]:
    """The two projects, their series, thumbnails and reports, the people, the service."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"acc-a-{tag}", f"acc-b-{tag}"
    projects = ProjectStore(platform_engine)
    manager = AccessManager(platform_engine, postgres.auth)
    for name in (a, b):
        projects.create_project(name, f"access tests {name}")
    series = {
        "only_a": f"{ROOT}.1.{tag}",
        "only_b": f"{ROOT}.2.{tag}",
        "shared": f"{ROOT}.3.{tag}",
    }
    index = open_index(postgres, engine=platform_engine)
    index.ensure_project(a)
    index.ensure_project(b)
    index.put(a, [_doc(series["only_a"], [a], ["ds-a"]), _doc(series["shared"], [a], ["ds-a"])])
    index.put(b, [_doc(series["only_b"], [b], ["ds-b"]), _doc(series["shared"], [b], ["ds-b"])])
    index.put(
        "admin",
        [
            _doc(series["only_a"], [a], ["ds-a"]),
            _doc(series["only_b"], [b], ["ds-b"]),
            _doc(series["shared"], [a, b], ["ds-a", "ds-b"]),
        ],
    )
    projects.map_series(a, "ds-a", [(series["only_a"], ""), (series["shared"], "")])
    projects.map_series(b, "ds-b", [(series["only_b"], ""), (series["shared"], "")])
    store = ObjectStore.from_settings(postgres)
    for project, uids in ((a, ("only_a", "shared")), (b, ("only_b", "shared"))):
        store.ensure_bucket(project)
        for key in uids:
            store.put_bytes(project, thumbnail_key(series[key]), PNG, "image/png")
            store.put_bytes(
                project, report_key(series[key]), f"<p>report {project}</p>".encode(), "text/html"
            )
    users = {
        "admin": postgres.admin_user,
        "owner": f"owner-{tag}",
        "uploader": f"uploader-{tag}",
        "viewer": f"viewer-{tag}",
        "other": f"other-{tag}",
    }
    with running_web(postgres) as url:  # creates the first administrator
        for key, name in users.items():
            if key != "admin":
                manager.create_user("test", name, PASSWORD)
        manager.set_member("test", a, users["owner"], Role.OWNER)
        manager.set_member("test", a, users["uploader"], Role.UPLOADER)
        manager.set_member("test", a, users["viewer"], Role.VIEWER)
        manager.set_member("test", b, users["other"], Role.UPLOADER)
        tokens = {
            key: manager.create_token("test", name, "access tests").secret
            for key, name in users.items()
        }
        yield World(url, postgres, platform_engine, a, b, users, tokens, series, manager)
    index.close()


@pytest.fixture(autouse=True)
def _no_throttle_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Failed sign-ins of one test do not throttle the next (the counters are shared)."""
    yield
    if "world" in request.fixturenames:
        engine: Engine = request.getfixturevalue("platform_engine")
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM sign_in_failures"))
