"""The STOW-RS door through FastAPI's test client, on the real platform database."""

from __future__ import annotations

import uuid
from io import BytesIO
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from dicomflow.access.audit import Audit
from dicomflow.access.policy import Principal
from dicomflow.db.audit import AuditStore
from dicomflow.db.projects import ProjectStore
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool
from dicomflow.web.auth import principal_of
from dicomflow.web.stow import make_stow_router
from tests.intake_testutil import admission_for
from tests.receiver.receiver_helpers import bad_datasets, good_dataset


def _part10(ds: object) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # type: ignore[attr-defined]
    return buffer.getvalue()


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
        for p in parts
    )
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_stow_stores_good_instances_and_reports_failures(
    projects: ProjectStore, platform_engine: Engine, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    app = FastAPI()
    audit = Audit(AuditStore(platform_engine))
    app.include_router(make_stow_router(spool, admission_for(spool, projects), audit))
    # The door's own behaviour, as an administrator sees it (access: tests/access).
    app.dependency_overrides[principal_of] = lambda: Principal("stow-tests", is_admin=True)
    client = TestClient(app)
    good = [good_dataset() for _ in range(2)]
    bad, words = bad_datasets()["missing series"]
    parts = [_part10(good[0]), _part10(bad), _part10(good[1])]
    body, content_type = _multipart(parts)

    response = client.post(
        "/dicomweb/projects/kp-recv/studies?dataset=web-upload",
        content=body,
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 202, response.text
    result = response.json()
    referenced = [i["00081155"]["Value"][0] for i in result["00081199"]["Value"]]
    assert referenced == [g.SOPInstanceUID for g in good]
    (failed,) = result["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA900]
    assert words in failed["00000902"]["Value"][0]

    (batch,) = spool.batches()
    assert (batch.project, batch.dataset, batch.state) == ("recv", "web-upload", BatchState.PENDING)
    stored = [e.path.read_bytes() for e in spool.manifest(batch.id)]
    assert stored == [parts[0], parts[2]]
    assert len(spool.problems()) == 1

    all_ok, ct = _multipart([_part10(good_dataset())])
    ok = client.post(
        "/dicomweb/projects/recv/studies",
        content=all_ok,
        headers={"Content-Type": ct, "X-Dicomflow-Dataset": "web-upload"},
    )
    assert ok.status_code == 200
    all_bad, ct = _multipart([b"not dicom at all"])
    conflict = client.post(
        "/dicomweb/projects/recv/studies?dataset=x", content=all_bad, headers={"Content-Type": ct}
    )
    assert conflict.status_code == 409
    unknown = client.post(
        "/dicomweb/projects/nope/studies?dataset=x", content=all_ok, headers={"Content-Type": ct}
    )
    assert unknown.status_code == 404
    no_dataset = client.post(
        "/dicomweb/projects/recv/studies", content=all_ok, headers={"Content-Type": ct}
    )
    assert no_dataset.status_code == 400
