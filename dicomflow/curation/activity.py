"""Activity: every batch, upload import, NIfTI import and watched-folder pass, newest first.

Read from where each already lives, nothing recorded twice:

* **batches** from the spool (every door: DIMSE, STOW-RS, ``dicomflow import``, uploads,
  watched folders): state, counts, duration, rate, series, Airflow run;
* **upload and NIfTI imports** from the audit trail (who started which run) and their stored
  reports (counts, outcome) in the project's bucket;
* **watched-folder passes** from the watcher's pass records.

States: ``receiving`` (a door is writing the batch), ``queued`` (closed, waiting for its
run), ``processing``, ``done``, ``failed`` (with the step and the message). What a user sees
is scoped to the projects he may read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from dicomflow.access.audit import AuditAction
from dicomflow.config import Settings
from dicomflow.db.audit import AuditStore
from dicomflow.importer.nifti import NIFTI_UPLOAD_IMPORT_DAG_ID
from dicomflow.importer.uploads import UPLOAD_IMPORT_DAG_ID, report_key
from dicomflow.importer.watch import read_passes
from dicomflow.pipeline.dispatcher import INCOMING_DAG_ID
from dicomflow.spool.records import BatchRecord, BatchState, Door
from dicomflow.spool.store import Spool, UnknownBatchError
from dicomflow.storage.client import ObjectNotFoundError, ObjectStore, ObjectStoreError

__all__ = ["RUNNING", "ActivityItem", "activity", "badge"]

#: States of something not finished yet.
RUNNING = ("receiving", "queued", "processing")
_STATES = {
    BatchState.OPEN: "receiving",
    BatchState.PENDING: "queued",
    BatchState.TRIGGERED: "processing",
    BatchState.FAILED: "failed",
    BatchState.DONE: "done",
}
#: Series listed per item (a link each); the count says how many there are.
_MAX_SERIES = 50


@dataclass
class ActivityItem:
    """One thing that happened or is happening.

    Attributes
    ----------
    kind
        ``batch``, ``upload-import``, ``nifti-import`` or ``watch-pass``.
    id
        The batch id, the run id or the pass id.
    who, what, project, dataset
        Who sent or started it, what it is (the door, the files), where it went.
    state, step, message
        See the module's description; ``step`` and ``message`` for a failure.
    started_at, finished_at, seconds
        When, and how long (so far, while running).
    found, imported, ignored, failed, bytes
        Counts (instances or files).
    instances_per_second, mb_per_second
        Rates over ``seconds`` (``None`` while nothing is counted).
    series, series_count
        Its series (at most 50 listed).
    run_id, run_url
        Its Airflow run and where to see it.
    """

    kind: str
    id: str
    who: str
    what: str
    project: str
    dataset: str
    state: str
    started_at: str
    finished_at: str | None = None
    seconds: float | None = None
    step: str | None = None
    message: str | None = None
    found: int = 0
    imported: int = 0
    ignored: int = 0
    failed: int = 0
    bytes: int = 0
    instances_per_second: float | None = None
    mb_per_second: float | None = None
    series: list[str] = field(default_factory=list)
    series_count: int = 0
    run_id: str | None = None
    run_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping."""
        return asdict(self)

    def _rate(self) -> None:
        count = self.imported or self.found
        if self.seconds and self.seconds > 0 and count:
            self.instances_per_second = round(count / self.seconds, 2)
            self.mb_per_second = round(self.bytes / 1e6 / self.seconds, 3)


def _seconds(start: str, end: str | None) -> float:
    began = datetime.fromisoformat(start)
    ended = datetime.fromisoformat(end) if end else datetime.now(UTC)
    return round(max((ended - began).total_seconds(), 0.0), 3)


def _run_url(settings: Settings, dag_id: str, run_id: str) -> str:
    return f"{settings.airflow.base_url}/dags/{dag_id}/runs/{run_id}"


def _batch_item(
    settings: Settings, spool: Spool, record: BatchRecord, starters: dict[str, str]
) -> ActivityItem:
    origin = record.origin
    if origin.door is Door.DIMSE:
        who = f"{origin.calling_ae or '-'}@{origin.peer}"
    elif origin.peer.startswith("upload:"):
        who = starters.get(origin.peer.removeprefix("upload:"), origin.peer)
    else:
        who = origin.peer
    state = _STATES[record.state]
    end = record.done_at or record.failed_at
    item = ActivityItem(
        kind="batch",
        id=record.id,
        who=who,
        what=f"{origin.door.value} batch",
        project=record.project,
        dataset=record.dataset,
        state=state,
        started_at=record.created_at,
        finished_at=end,
        seconds=_seconds(record.created_at, end),
        step=record.failed_step,
        message=record.failure,
        found=record.instances,
        imported=record.instances if state == "done" else 0,
        failed=record.instances if state == "failed" else 0,
        bytes=record.bytes,
        run_id=record.run_id,
        run_url=_run_url(settings, INCOMING_DAG_ID, record.run_id) if record.run_id else None,
    )
    try:
        uids = sorted({i.series_instance_uid for i in spool.manifest(record.id)})
    except (UnknownBatchError, OSError):
        uids = []
    item.series, item.series_count = uids[:_MAX_SERIES], len(uids)
    item._rate()
    return item


def _import_items(
    settings: Settings, audit: AuditStore, store: ObjectStore, projects: set[str] | None
) -> tuple[list[ActivityItem], dict[str, str]]:
    """Upload and NIfTI imports started from the pages, and who started each run."""
    items: list[ActivityItem] = []
    starters: dict[str, str] = {}
    for event in audit.query(action=AuditAction.IMPORT.value, limit=500):
        project = event.project or ""
        starters[event.target] = event.actor
        if projects is not None and project not in projects:
            continue
        nifti = event.detail.startswith("nifti")
        dag_id = NIFTI_UPLOAD_IMPORT_DAG_ID if nifti else UPLOAD_IMPORT_DAG_ID
        item = ActivityItem(
            kind="nifti-import" if nifti else "upload-import",
            id=event.target,
            who=event.actor,
            what=event.detail,
            project=project,
            dataset=event.detail.rsplit(" as dataset ", 1)[-1]
            if " as dataset " in event.detail
            else "",
            state="processing",
            started_at=event.at.isoformat(),
            run_id=event.target,
            run_url=_run_url(settings, dag_id, event.target),
        )
        report = _report(store, project, event.target)
        if report is not None:
            _apply_report(item, report)
        item.seconds = _seconds(item.started_at, item.finished_at)
        item._rate()
        items.append(item)
    return items, starters


def _report(store: ObjectStore, project: str, run_id: str) -> dict[str, Any] | None:
    try:
        data = json.loads(store.get_bytes(project, report_key(run_id)))
    except (ObjectNotFoundError, ObjectStoreError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _apply_report(item: ActivityItem, report: dict[str, Any]) -> None:
    nested = report.get("dicom")
    dicom: dict[str, Any] = nested if isinstance(nested, dict) else report  # NIfTI: nested
    failures = report.get("failures") or []
    item.found = int(dicom.get("found") or 0)
    item.imported = int(dicom.get("imported") or 0)
    item.bytes = int(dicom.get("imported_bytes") or 0)
    item.ignored = len(dicom.get("ignored") or [])
    item.failed = len(failures)
    item.finished_at = report.get("finished_at") or None
    outcome = str(report.get("outcome") or "")
    item.state = "failed" if outcome == "failed" else "done"
    if failures:
        first = failures[0]
        item.step = "import"
        item.message = str(first.get("detail") if isinstance(first, dict) else first)
    uids = [
        str(s.get("series_instance_uid") if isinstance(s, dict) else s)
        for s in report.get("series") or []
    ]
    item.series, item.series_count = uids[:_MAX_SERIES], len(uids)


def _watch_items(settings: Settings, projects: set[str] | None) -> list[ActivityItem]:
    items = []
    for record in read_passes(settings):
        if projects is not None and record.project not in projects:
            continue
        item = ActivityItem(
            kind="watch-pass",
            id=record.id,
            who="watcher",
            what=f"watched folder {record.folder}",
            project=record.project,
            dataset=record.dataset,
            state="failed" if record.error else "done",
            started_at=record.started_at,
            finished_at=record.finished_at or None,
            seconds=record.seconds,
            step="watch" if record.error else None,
            message=record.error
            or (f"{record.waiting} file(s) still changing" if record.waiting else None),
            found=record.found,
            imported=record.imported,
            ignored=record.waiting,
            failed=len(record.problems),
            bytes=record.imported_bytes,
        )
        item.series, item.series_count = record.series[:_MAX_SERIES], len(record.series)
        item._rate()
        items.append(item)
    return items


def activity(
    settings: Settings,
    spool: Spool,
    audit: AuditStore,
    store: ObjectStore,
    projects: Iterable[str] | None = None,
    *,
    limit: int = 200,
) -> list[ActivityItem]:
    """Every activity in ``projects`` (``None``: every project), newest first.

    Parameters
    ----------
    settings
        Where Airflow and the watcher's records are.
    spool, audit, store
        Where the batches, the started imports and their reports are.
    projects
        The projects the reader may see.
    limit
        At most this many items.
    """
    scope = set(projects) if projects is not None else None
    items, starters = _import_items(settings, audit, store, scope)
    for record in spool.batches():
        if scope is None or record.project in scope:
            items.append(_batch_item(settings, spool, record, starters))
    items += _watch_items(settings, scope)
    items.sort(key=lambda i: i.started_at, reverse=True)
    return items[:limit]


def badge(items: Iterable[ActivityItem]) -> dict[str, int]:
    """How many of ``items`` are running and how many failed."""
    counts = {"running": 0, "failed": 0}
    for item in items:
        if item.state in RUNNING:
            counts["running"] += 1
        elif item.state == "failed":
            counts["failed"] += 1
    return counts
