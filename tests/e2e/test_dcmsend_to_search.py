"""What a user sees: seconds after `dcmsend` finishes, the series are archived and searchable."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pydicom
from fastapi.testclient import TestClient
from PIL import Image

from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.index import open_index
from dicomflow.pacs.client import DicomWebClient
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool
from dicomflow.storage.client import ObjectStore
from dicomflow.storage.keys import thumbnail_key
from dicomflow.web.app import create_app
from tests.dicomfiles import fresh_copy
from tests.stack_testutil import dcmsend
from tests.thumbnails.thumbnail_testutil import write_ct_series


def test_dcmsend_series_become_archived_searchable_with_thumbnails(
    full_stack: Settings, stack_env: dict[str, str], tmp_path: Path
) -> None:
    settings = full_stack
    ProjectStore(make_engine(settings.platform_db_url)).create_project("e2e")
    ct = write_ct_series(tmp_path / "send" / "ct", count=8)
    mr = pydicom.dcmread(fresh_copy("MR_small.dcm", tmp_path / "send"))
    expected = {str(ct[0].SeriesInstanceUID): 8, str(mr.SeriesInstanceUID): 1}

    sent = time.monotonic()
    # Kaapana senders use the kp- prefix on both AE titles.
    dcmsend(settings, tmp_path / "send", "kp-scanner1", "kp-e2e")

    index = open_index(settings)
    deadline = time.monotonic() + 120
    # Searchable on arrival (the receiver indexes the closed batch), then stored by the DAG.
    first_seen: dict[str, dict[str, object]] = {}
    stored: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline and len(stored) < len(expected):
        for uid in expected:
            doc = index.get("e2e", uid)
            if doc is not None:
                first_seen.setdefault(uid, doc)
                if doc["pacs_state"] == "stored" and doc["thumbnail_key"]:
                    stored[uid] = doc
        time.sleep(0.2)
    latency = time.monotonic() - sent
    assert set(stored) == set(expected), f"stored after {latency:.0f} s: {sorted(stored)}"
    for uid, count in expected.items():
        for doc in (first_seen[uid], stored[uid]):
            assert doc["instance_count"] == count
            assert doc["dataset"] == ["scanner1"]
        assert first_seen[uid]["pacs_state"] in ("storing", "stored")
        assert index.get("admin", uid) is not None

    store = ObjectStore.from_settings(settings)
    with DicomWebClient.from_settings(settings) as pacs:
        assert (
            len(pacs.series_instances(str(ct[0].StudyInstanceUID), str(ct[0].SeriesInstanceUID)))
            == 8
        )
    # "stored" is written after the PACS and the thumbnail step: both are there by then.
    assert store.exists("e2e", thumbnail_key(str(ct[0].SeriesInstanceUID)))

    spool = Spool.from_settings(settings)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        mine = [b for b in spool.batches() if b.project == "e2e"]
        if mine and all(b.state is BatchState.DONE for b in mine):
            break
        time.sleep(0.5)
    assert len(mine) == 1 and mine[0].state is BatchState.DONE and mine[0].instances == 9
    index.close()

    # What a user then does with the series: the CLI and the REST API.
    ct_uid = str(ct[0].SeriesInstanceUID)
    shown = dicomflow(stack_env, "series", "show", ct_uid, "--project", "e2e", "--json")
    described = json.loads(shown)
    assert described["pacs"]["instances"] == 8
    assert described["thumbnail"] == f"s3://project-e2e/{thumbnail_key(ct_uid)}"
    assert described["validation_report"].endswith(f"validation/{ct_uid}.html")
    dicomflow(stack_env, "series", "thumbnail", ct_uid, "-o", str(tmp_path / "t.png"))
    assert Image.open(tmp_path / "t.png").format == "PNG"
    dicomflow(stack_env, "series", "report", ct_uid, "-o", str(tmp_path / "r.html"))
    assert ct_uid in (tmp_path / "r.html").read_text()
    dicomflow(stack_env, "series", "export", ct_uid, "-o", str(tmp_path / "export"))
    exported = {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()}
    for ds in ct:
        # dcmsend itself drops the trailing padding element (FFFC,FFFC) of these files, so the
        # check is on every other element and the transfer syntax; the receiver tests check
        # bytes with a sender that sends files as they are.
        held = pydicom.dcmread(io.BytesIO(exported[f"{ds.SOPInstanceUID}.dcm"]))
        sent_ds = pydicom.dcmread(str(ds.filename))
        del sent_ds[0xFFFCFFFC]
        assert held == sent_ds
        assert held.file_meta.TransferSyntaxUID == sent_ds.file_meta.TransferSyntaxUID

    client = TestClient(create_app(settings))
    auth = (settings.admin_user, settings.admin_password)
    assert client.get("/api/series", params={"project": "e2e"}).status_code == 401
    found_api = client.get("/api/series", params={"project": "e2e"}, auth=auth).json()
    assert found_api["total"] == 2
    png = client.get(f"/api/series/{ct_uid}/thumbnail", params={"project": "e2e"}, auth=auth)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    html = client.get(f"/api/series/{ct_uid}/validation-report", auth=auth)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    missing = client.get("/api/series/1.2.3/thumbnail", auth=auth)
    assert missing.status_code == 404 and "1.2.3" in missing.json()["detail"]


def dicomflow(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dicomflow.cli", *args], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
