"""The object store client's contract, on the local S3 server and on a real MinIO when given.

The platform talks to S3 only through :class:`ObjectStore` (the ``minio`` SDK). Locally the S3
server is SeaweedFS; MinIO cannot be installed on the development machines, so the MinIO half
runs only when a server is named by ``DICOMFLOW_TEST_MINIO_ENDPOINT`` (``host:port``), with
``DICOMFLOW_TEST_MINIO_ACCESS_KEY``, ``DICOMFLOW_TEST_MINIO_SECRET_KEY`` and optionally
``DICOMFLOW_TEST_MINIO_SECURE=1``; it is skipped, saying so, otherwise.
"""

from __future__ import annotations

import os
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from dicomflow.config import Settings
from dicomflow.storage.client import ObjectNotFoundError, ObjectStore, ObjectStoreError

MINIO = "DICOMFLOW_TEST_MINIO_ENDPOINT"


def _minio_settings(settings: Settings) -> Settings:
    endpoint = os.environ.get(MINIO)
    if not endpoint:
        pytest.skip(f"no MinIO server named ({MINIO} and its keys unset)")
    s3 = settings.s3.replace(
        endpoint=endpoint,
        access_key=os.environ.get("DICOMFLOW_TEST_MINIO_ACCESS_KEY", ""),
        secret_key=os.environ.get("DICOMFLOW_TEST_MINIO_SECRET_KEY", ""),
        secure=os.environ.get("DICOMFLOW_TEST_MINIO_SECURE", "") == "1",
    )
    return settings.replace(s3=s3)


@pytest.fixture(params=["seaweedfs", "minio"])
def store(request: pytest.FixtureRequest, settings: Settings) -> Iterator[tuple[ObjectStore, str]]:
    """A store and a project of its own (a fresh bucket), removed afterwards."""
    if request.param == "seaweedfs":
        chosen = request.getfixturevalue("s3")
    else:
        chosen = _minio_settings(settings)
    store = ObjectStore.from_settings(chosen)
    project = f"contract{uuid.uuid4().hex[:8]}"
    store.ensure_bucket(project)
    yield store, project
    store.remove(project, store.list_keys(project))


def test_objects_are_written_read_listed_and_removed(store: tuple[ObjectStore, str]) -> None:
    objects, project = store
    assert objects.ensure_bucket(project) == objects.bucket(project), "a second ensure is fine"
    objects.put_bytes(project, "series/1.2.3/thumbnail.png", b"png-bytes", "image/png")
    objects.put_bytes(project, "series/1.2.3/report.html", b"<p>ok</p>", "text/html")
    objects.put_bytes(project, "other/x", b"x", "application/octet-stream")
    assert objects.get_bytes(project, "series/1.2.3/thumbnail.png") == b"png-bytes"
    assert objects.exists(project, "series/1.2.3/report.html")
    assert not objects.exists(project, "series/1.2.3/missing")
    assert sorted(objects.list_keys(project, "series/")) == [
        "series/1.2.3/report.html",
        "series/1.2.3/thumbnail.png",
    ]
    sizes = {o.key: o.size for o in objects.list_objects(project, "series/1.2.3/")}
    assert sizes == {"series/1.2.3/report.html": 9, "series/1.2.3/thumbnail.png": 9}
    objects.put_bytes(project, "other/x", b"replaced", "application/octet-stream")
    assert objects.get_bytes(project, "other/x") == b"replaced"
    assert objects.remove(project, ["other/x", "never/written"]) == 2
    assert not objects.exists(project, "other/x")
    with pytest.raises(ObjectNotFoundError, match="other/x"):
        objects.get_bytes(project, "other/x")


def test_files_go_up_and_down_whole(store: tuple[ObjectStore, str], tmp_path: Path) -> None:
    objects, project = store
    # Larger than the SDK's multipart part size would need; random so that nothing compresses.
    source = tmp_path / "upload.zip"
    source.write_bytes(os.urandom(6 << 20))
    objects.put_file(project, "uploads/upload.zip", source, "application/zip")
    target = tmp_path / "back.zip"
    objects.download_file(project, "uploads/upload.zip", target)
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(ObjectNotFoundError):
        objects.download_file(project, "uploads/none.zip", tmp_path / "none.zip")


def test_a_presigned_url_reads_without_credentials(store: tuple[ObjectStore, str]) -> None:
    objects, project = store
    objects.put_bytes(project, "thumbs/a.png", b"\x89PNG...", "image/png")
    url = objects.presigned_get(project, "thumbs/a.png", timedelta(minutes=5))
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"\x89PNG..."


def test_a_missing_bucket_lists_nothing_and_reads_as_missing(
    store: tuple[ObjectStore, str],
) -> None:
    objects, _ = store
    absent = f"absent{uuid.uuid4().hex[:8]}"
    assert objects.list_objects(absent) == []
    assert not objects.exists(absent, "anything")
    with pytest.raises(ObjectNotFoundError):
        objects.get_bytes(absent, "anything")


def test_wrong_credentials_and_no_server_are_told_apart_from_missing_objects(
    s3: Settings,
) -> None:
    wrong = s3.replace(s3=s3.s3.replace(secret_key="wrong-key"))
    refused = ObjectStore.from_settings(wrong)
    assert not refused.reachable()
    with pytest.raises(ObjectStoreError):
        refused.exists("admin", "anything")
    gone = s3.replace(s3=s3.s3.replace(endpoint="127.0.0.1:1"))
    assert not ObjectStore.from_settings(gone).reachable()
    assert ObjectStore.from_settings(s3).reachable()
