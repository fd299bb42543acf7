"""What a user gets back: the PACS holds compressed data as the modality sent it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pydicom

from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.index import open_index
from dicomflow.pacs.client import DicomWebClient
from tests.receiver.compressed_files import compressed_files
from tests.receiver.receiver_helpers import dataset_bytes


def test_the_pacs_returns_the_bytes_dcmsend_sent(full_stack: Settings, tmp_path: Path) -> None:
    settings = full_stack
    ProjectStore(make_engine(settings.platform_db_url)).create_project("compressed")
    files = compressed_files(tmp_path / "send")
    headers = {
        syntax: pydicom.dcmread(path, stop_before_pixels=True) for syntax, path in files.items()
    }

    port = str(settings.receiver.port)
    files_sent = [str(p) for p in files.values()]
    result = subprocess.run(
        ["dcmsend", "-aet", "MODALITY", "-aec", "compressed", "127.0.0.1", port, *files_sent],
        env={**os.environ, "TCP_NODELAY": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    index = open_index(settings)
    series = {str(ds.SeriesInstanceUID) for ds in headers.values()}
    deadline = time.monotonic() + 120
    stored: set[str] = set()
    while time.monotonic() < deadline and stored != series:
        for uid in series - stored:
            doc = index.get("compressed", uid)
            if doc is not None and doc["pacs_state"] == "stored":
                stored.add(uid)
        time.sleep(0.2)
    index.close()
    assert stored == series, f"in the PACS after 120 s: {len(stored)} of {len(series)} series"

    changed = []
    with DicomWebClient.from_settings(settings) as pacs:
        for syntax, ds in headers.items():
            held = pacs.retrieve_instance(
                str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
            )
            retrieved = tmp_path / "retrieved.dcm"
            retrieved.write_bytes(held)
            held_syntax = pydicom.dcmread(retrieved, stop_before_pixels=True).file_meta
            if held_syntax.TransferSyntaxUID != syntax:
                changed.append(f"{files[syntax].name}: held as {held_syntax.TransferSyntaxUID}")
            elif dataset_bytes(retrieved) != dataset_bytes(files[syntax]):
                changed.append(f"{files[syntax].name}: other data set bytes")
    assert changed == [], "\n".join(changed)
