"""Sending series with dcmsend and waiting until the pipeline has finished with them."""

from __future__ import annotations

import time

from dicomflow.config import Settings
from dicomflow.index import open_index
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool


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
