"""Failed batches: recorded where people look, and run again by themselves or on request.

When a step of a batch's run fails for good (after its task's own retries), the batch becomes
``failed`` in the spool (``dicomflow batches`` shows the step and the reason) and its series'
documents say so (``pacs_state: failed`` and ``failure``), instead of "storing" forever.

A failed batch runs again by clearing its run's failed tasks in Airflow (the run keeps its
id): on request (``dicomflow batches retry``) or by itself, when the dispatcher sees that the
service the failed step needs (the PACS, the object store, the index or the platform database)
answers again, with a growing pause between attempts.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from dicomflow.dicom.document import header_fields
from dicomflow.dicom.headers import SeriesGroup
from dicomflow.pipeline.batch import SpooledBatch
from dicomflow.pipeline.documents import DocumentWriter
from dicomflow.platform import Platform
from dicomflow.spool.records import BatchRecord, BatchState
from dicomflow.spool.store import UnknownBatchError

__all__ = [
    "FailureWatch",
    "Service",
    "fail_batch",
    "needed_service",
    "retry_batch",
    "retry_due",
    "service_answers",
]

log = logging.getLogger(__name__)

#: Seconds before the first automatic retry of a failed batch; doubled after each.
FIRST_RETRY_AFTER = 30.0
#: The longest pause between automatic retries.
LONGEST_RETRY_PAUSE = 900.0
#: Automatic retries of one batch before it waits for a person (``batches retry``).
MAX_AUTOMATIC_RETRIES = 10


class Service(StrEnum):
    """What a step needs besides the spool."""

    PACS = "pacs"
    OBJECT_STORE = "object store"
    INDEX = "index"
    DATABASE = "platform database"
    SPOOL = "spool"


_STEP_SERVICES: dict[str, tuple[Service, ...]] = {
    "store_to_pacs": (Service.PACS, Service.DATABASE),
    "thumbnails": (Service.OBJECT_STORE, Service.PACS, Service.DATABASE),
    "validate": (Service.OBJECT_STORE, Service.DATABASE),
    "index_series": (Service.INDEX, Service.DATABASE),
}


def needed_service(step: str) -> tuple[Service, ...]:
    """The services a step talks to (the spool alone for the others)."""
    return _STEP_SERVICES.get(step, (Service.SPOOL,))


def service_answers(platform: Platform, service: Service) -> bool:
    """Whether a service answers now (a cheap request; any failure is "no")."""
    try:
        if service is Service.PACS:
            return platform.pacs.ping()
        if service is Service.OBJECT_STORE:
            return platform.objects.reachable()
        if service is Service.INDEX:
            platform.index.get("admin", "0.0")
        elif service is Service.DATABASE:
            platform.projects.names()
        return True
    except Exception as exc:  # "does it answer": every failure means no
        log.debug("%s does not answer: %s", service.value, exc)
        return False


def fail_batch(platform: Platform, batch_id: str, step: str, reason: str) -> None:
    """Record that a batch's run failed in ``step``: in the spool, then in its documents.

    The documents are best effort: when the index or the database is what failed, the spool
    still says why, and the documents follow when the batch is retried.
    """
    reason = " ".join(reason.split())[:1000]
    try:
        platform.spool.mark_failed(batch_id, step, reason)
    except UnknownBatchError:
        # A worker on another host than the batch's spool (airflow.executor celery): the
        # dispatcher there marks it failed from Airflow's record of the run (FailureWatch).
        log.info("batch %s: not in this host's spool; its dispatcher records the failure", batch_id)
    log.error("batch %s failed in %s: %s", batch_id, step, reason)
    try:
        _show_failure(platform, batch_id, f"{step}: {reason}")
    except Exception as exc:
        log.warning("batch %s: the failure is not in its documents yet: %s", batch_id, exc)


def _show_failure(platform: Platform, batch_id: str, failure: str | None) -> None:
    writer = DocumentWriter(platform)
    series = writer.records.record_failure(batch_id, failure)
    if not series:
        return
    groups: dict[str, SeriesGroup] = {}
    try:
        groups = {g.series_instance_uid: g for g in SpooledBatch(platform.spool, batch_id).series}
    except Exception as exc:  # the documents usually exist: headers are only a fallback
        log.debug("batch %s: no headers to read (%s)", batch_id, exc)
    for uid in series:
        writer.write_series(uid, read_header=partial(_header_of, uid, groups.get(uid)))


def _header_of(uid: str, group: SeriesGroup | None) -> tuple[dict[str, Any], list[str]]:
    if group is None:
        raise ValueError(f"series {uid}: no document and no files to describe it")
    return header_fields(group)


def retry_due(record: BatchRecord, now: float, failed_at: float) -> bool:
    """Whether a failed batch's next automatic retry is due (its pause has passed)."""
    if record.state is not BatchState.FAILED or record.retries >= MAX_AUTOMATIC_RETRIES:
        return False
    pause = min(FIRST_RETRY_AFTER * 2**record.retries, LONGEST_RETRY_PAUSE)
    return now - failed_at >= pause


def retry_batch(platform: Platform, batch_id: str, dag_id: str) -> list[str]:
    """Run a failed batch's failed steps again (its run keeps its id).

    Returns
    -------
    list of str
        The steps cleared to run again.

    Raises
    ------
    ValueError
        When the batch has not failed or has no run.
    AirflowError
        When Airflow cannot be reached or refuses; the batch stays failed.
    """
    spool = platform.spool
    record = spool.batch(batch_id)
    if record.state is not BatchState.FAILED:
        raise ValueError(f"batch {batch_id} has not failed (it is {record.state.value})")
    if not record.run_id:
        raise ValueError(f"batch {batch_id} has no run to retry")
    run_id = record.run_id
    # The run's other batches failed with it, and run again with it.
    together = next((r.batch_ids for r in spool.runs() if r.run_id == run_id), [batch_id])
    failed = [b for b in together if _state(platform, b) is BatchState.FAILED] or [batch_id]
    # Triggered again before the tasks run: a step that fails at once marks them failed anew.
    retries = {b: spool.clear_failed(b) for b in failed}
    try:
        cleared = platform.airflow.clear_failed_tasks(dag_id, run_id)
    except Exception:
        for b in failed:
            spool.mark_failed(b, record.failed_step or "", record.failure or "")
        raise
    log.info(
        "batch(es) %s: retry %d of run %s (%s)",
        ", ".join(failed),
        retries.get(batch_id, 1),
        run_id,
        ", ".join(cleared),
    )
    for b in failed:
        try:
            _show_failure(platform, b, None)
        except Exception as exc:
            log.warning("batch %s: documents not yet updated for the retry: %s", b, exc)
    return cleared


def _state(platform: Platform, batch_id: str) -> BatchState | None:
    try:
        return platform.spool.batch(batch_id).state
    except Exception:
        return None


class FailureWatch:
    """The dispatcher's watch over failed batches: each runs again once it may succeed.

    Also catches the runs that failed without their step saying so (a task process that was
    killed reports nothing): their batches are marked failed from Airflow's own record.

    Parameters
    ----------
    platform
        The dispatcher's connections.
    dag_id
        The processing DAG.
    """

    def __init__(self, platform: Platform, dag_id: str) -> None:
        self.platform = platform
        self.dag_id = dag_id

    def check(self) -> None:
        """One look: mark silently failed runs, retry what is due and may now succeed."""
        try:
            self._notice_silent_failures()
        except Exception as exc:  # Airflow away: the next look tries again
            log.debug("failed runs not read: %s", exc)
        now = time.time()
        answering: dict[Service, bool] = {}
        for record in self.platform.spool.failed():
            failed_at = datetime.fromisoformat(record.failed_at or "1970-01-01T00:00:00+00:00")
            if not retry_due(record, now, failed_at.timestamp()):
                continue
            services = needed_service(record.failed_step or "")
            for service in services:
                if service not in answering:
                    answering[service] = service_answers(self.platform, service)
            if not all(answering[s] for s in services):
                continue
            try:
                retry_batch(self.platform, record.id, self.dag_id)
            except Exception as exc:
                log.warning("batch %s: automatic retry failed: %s", record.id, exc)

    def _notice_silent_failures(self) -> None:
        airflow = self.platform.airflow
        spool = self.platform.spool
        for run in airflow.list_dag_runs(self.dag_id, limit=100, states=("failed",)):
            conf = run.get("conf") or {}
            run_id = str(run["dag_run_id"])
            silent = []
            for batch_id in conf.get("batch_ids") or [conf.get("batch_id")]:
                try:
                    record = spool.batch(str(batch_id))
                except Exception:
                    continue
                if record.state is BatchState.TRIGGERED and record.run_id == run_id:
                    silent.append(record.id)
            if not silent:
                continue
            current = airflow.get_dag_run(self.dag_id, run_id)
            if current is None or current.get("state") != "failed":
                continue  # retried meanwhile
            tasks = airflow.task_instances(self.dag_id, run_id)
            step = next((t["task_id"] for t in tasks if t.get("state") == "failed"), "unknown")
            for batch_id in silent:
                fail_batch(
                    self.platform,
                    batch_id,
                    str(step),
                    "the step's task ended failed without saying why (its process was "
                    "killed?); see its log in Airflow",
                )
