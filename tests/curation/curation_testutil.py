"""Sending series with dcmsend and waiting until the pipeline has finished with them."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from dicomflow.config import Settings
from dicomflow.index import open_index
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool


def dcmsend(settings: Settings, folder: Path, dataset: str, project: str) -> None:
    """Send every file under ``folder`` to the receiver, as ``dataset`` to ``project``."""
    result = subprocess.run(
        [
            "dcmsend",
            "127.0.0.1",
            str(settings.receiver.port),
            "--aetitle",
            dataset,
            "--call",
            project,
            "--scan-directories",
            "--recurse",
            str(folder),
        ],
        env={**os.environ, "TCP_NODELAY": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def wait_until_finished(settings: Settings, project: str, series_uid: str) -> dict[str, object]:
    """Wait until the series is stored with its thumbnail and every batch of ``project`` is
    done and validated; return the project's document."""
    spool = Spool.from_settings(settings)
    index = open_index(settings)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            doc = index.get(project, series_uid)
            mine = [b for b in spool.batches() if b.project == project]
            queued = set(spool.validation_queue())
            if (
                doc is not None
                and doc.get("pacs_state") == "stored"
                and doc.get("thumbnail_key")
                and mine
                and all(b.state is BatchState.DONE and b.id not in queued for b in mine)
            ):
                return doc
            time.sleep(0.3)
    finally:
        index.close()
    raise AssertionError(f"series {series_uid} of {project} not finished: {doc}, {mine}")
