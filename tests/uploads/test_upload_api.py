"""The upload API the page uses (tus + the uploads area), over real HTTP, S3 and PostgreSQL."""

from __future__ import annotations

import base64
import os
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from dicomflow.config import Settings
from dicomflow.storage.client import ObjectStore
from dicomflow.uploads.area import UploadArea
from tests.uploads.conftest import PROJECT
from tests.uploads.web_server import running_web

TUS = {"Tus-Resumable": "1.0.0"}


def _metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def _create(web: httpx.Client, upload_id: str, path: str, size: int) -> httpx.Response:
    return web.post(
        f"/api/uploads/tus/?upload={upload_id}",
        headers={
            **TUS,
            "Upload-Length": str(size),
            "Upload-Metadata": _metadata(
                upload_id=upload_id,
                project=PROJECT,
                path=path,
                filename=path,
                filetype="application/zip",
            ),
        },
    )


def _patch(web: httpx.Client, location: str, offset: int, data: bytes) -> httpx.Response:
    return web.patch(
        location,
        content=data,
        headers={
            **TUS,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
    )


def _interrupted_patch(
    settings: Settings, web: httpx.Client, location: str, data: bytes, sent: int
) -> None:
    """A PATCH whose connection drops after ``sent`` bytes of the body (a network failure)."""
    url = urlsplit(str(web.base_url.join(location)))
    token = base64.b64encode(f"{settings.admin_user}:{settings.admin_password}".encode()).decode()
    head = (
        f"PATCH {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Basic {token}\r\n"
        "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
        "Content-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80)) as sock:
        sock.sendall(head + data[:sent])
        sock.shutdown(socket.SHUT_RDWR)


def _offset(web: httpx.Client, location: str) -> int:
    response = web.head(location, headers=TUS)
    assert response.status_code == 200, response.text
    return int(response.headers["Upload-Offset"])


def test_interrupted_upload_resumes_where_it_stopped(web: httpx.Client, s3: Settings) -> None:
    data = os.urandom(3_000_000)
    answer = web.post(
        f"/api/uploads/{PROJECT}", json={"files": [{"path": "scans/a.zip", "size": len(data)}]}
    )
    assert answer.status_code == 201, answer.text
    upload_id = answer.json()["upload_id"]
    created = _create(web, upload_id, "scans/a.zip", len(data))
    assert created.status_code == 201, created.text
    location = created.headers["Location"]

    _interrupted_patch(s3, web, location, data, 1_200_000)
    offset = 0
    for _ in range(50):  # the server notices the dropped connection and keeps what arrived
        offset = _offset(web, location)
        if offset:
            break
        time.sleep(0.1)
    assert 0 < offset <= 1_200_000
    done = _patch(web, location, offset, data[offset:])
    assert done.status_code == 204, done.text
    assert int(done.headers["Upload-Offset"]) == len(data)

    check = web.post(f"/api/uploads/{PROJECT}/{upload_id}/complete").json()
    assert check == {"upload_id": upload_id, "complete": True, "missing": []}
    store = ObjectStore.from_settings(s3)
    assert store.get_bytes(PROJECT, UploadArea.key(upload_id, "scans/a.zip")) == data
    listed = {e["name"]: e for e in web.get(f"/api/uploads/{PROJECT}").json()["entries"]}
    entry = listed[f"{upload_id}/scans/a.zip"]
    assert entry["size"] == len(data) and entry["user"] == s3.admin_user and entry["uploaded_at"]

    deleted = web.delete(f"/api/uploads/{PROJECT}/{upload_id}/scans/a.zip")
    assert deleted.json() == {"deleted": [f"{upload_id}/scans/a.zip"]}
    assert f"{upload_id}/scans/a.zip" not in {
        e["name"] for e in web.get(f"/api/uploads/{PROJECT}").json()["entries"]
    }


def test_files_not_announced_or_unsafe_are_refused(web: httpx.Client) -> None:
    upload_id = web.post(
        f"/api/uploads/{PROJECT}", json={"files": [{"path": "x.dcm", "size": 10}]}
    ).json()["upload_id"]
    assert _create(web, upload_id, "x.dcm", 11).status_code == 400  # size differs
    assert _create(web, upload_id, "y.dcm", 10).status_code == 400  # not announced
    assert _create(web, "20990101T000000000-abcdef", "x.dcm", 10).status_code == 400
    slip = web.post(f"/api/uploads/{PROJECT}", json={"files": [{"path": "../x", "size": 1}]})
    assert slip.status_code == 400 and "'..'" in slip.json()["detail"]
    assert (
        web.post("/api/uploads/nope", json={"files": [{"path": "a", "size": 1}]}).status_code == 404
    )
    anonymous = httpx.post(
        f"{web.base_url}/api/uploads/tus/", headers={**TUS, "Upload-Length": "1"}
    )
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("files", "limit", "configured"),
    [
        ([("big.zip", 2_000)], "uploads.max_file_bytes", 1_000),
        ([("a", 900), ("b", 900), ("c", 900)], "uploads.max_upload_bytes", 2_500),
        ([(f"f{i}", 1) for i in range(6)], "uploads.max_files", 5),
    ],
)
def test_a_rejected_upload_names_the_limit_and_its_value(
    postgres: Settings,
    s3: Settings,
    upload_project: str,
    files: list[tuple[str, int]],
    limit: str,
    configured: int,
) -> None:
    small = postgres.replace(
        uploads=postgres.uploads.replace(max_file_bytes=1_000, max_upload_bytes=2_500, max_files=5)
    )
    with running_web(small) as url:
        auth = (small.admin_user, small.admin_password)
        answer = httpx.post(
            f"{url}/api/uploads/{PROJECT}",
            json={"files": [{"path": p, "size": s} for p, s in files]},
            auth=auth,
        )
        assert answer.status_code == 413
        body = answer.json()
        assert body["limit"] == limit and body["configured"] == configured
        assert f"{limit} = {configured}" in body["detail"]
        config = httpx.get(f"{url}/api/uploads/config", auth=auth).json()
        assert config["limits"]["max_files"] == 5


def test_limits_are_shown_and_refused_in_the_unit_of_the_setting(
    postgres: Settings, s3: Settings, upload_project: str
) -> None:
    mib = 1 << 20
    binary = postgres.replace(
        uploads=postgres.uploads.replace(max_file_bytes=3 * mib, max_upload_bytes=5 * mib)
    )
    with (
        running_web(binary) as url,
        httpx.Client(base_url=url, auth=(binary.admin_user, binary.admin_password)) as web,
    ):
        labels = web.get("/api/uploads/config").json()["limits"]["labels"]
        assert labels == {
            "max_file_bytes": "3 MiB",
            "max_upload_bytes": "5 MiB",
            "max_files": str(binary.uploads.max_files),
        }
        # Announced over the limit, and created through tus over it: both name 3 MiB.
        answer = web.post(
            f"/api/uploads/{PROJECT}", json={"files": [{"path": "big.zip", "size": 3 * mib + 1}]}
        )
        assert answer.status_code == 413
        assert answer.json()["detail"] == (
            "file 'big.zip' size: 3145729 bytes (about 3.0 MiB) is more than the configured "
            "limit uploads.max_file_bytes = 3 MiB"
        )
        created = _create(web, "someupload", "big.zip", 3 * mib + 1)
        assert created.status_code == 413
        assert "uploads.max_file_bytes = 3 MiB" in created.json()["detail"]
