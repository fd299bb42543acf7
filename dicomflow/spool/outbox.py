"""The outbox: hands closed batches to Airflow, retrying while Airflow is unreachable.

Each batch is triggered with the run id ``batch-<batch id>``: if the process dies after
Airflow created the run but before ``triggered.json`` was written, the next attempt gets
HTTP 409 and counts it as done, so a batch is never processed twice and never forgotten.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from dicomflow.airflow_api.client import AirflowError, AirflowRequestError, TriggerResult
from dicomflow.spool.records import BatchRecord
from dicomflow.spool.store import Spool

LOGGER = logging.getLogger(__name__)

#: The DAG that processes a batch.
INCOMING_DAG_ID = "service-process-incoming-dcm"


class DagTrigger(Protocol):
    """What the outbox needs of :class:`~dicomflow.airflow_api.client.AirflowClient`."""

    def trigger_dag_run(
        self, dag_id: str, run_id: str, conf: dict[str, object]
    ) -> TriggerResult: ...


def run_id_for(batch_id: str) -> str:
    """The deterministic DAG run id of a batch."""
    return f"batch-{batch_id}"


def dag_conf(batch: BatchRecord) -> dict[str, object]:
    """The conf of the DAG run that processes ``batch``."""
    return {
        "batch_id": batch.id,
        "batch_dir": str(batch.path),
        "project": batch.project,
        "dataset": batch.dataset,
        "instances": batch.instances,
    }


def trigger_batch(
    spool: Spool, client: DagTrigger, batch: BatchRecord, dag_id: str = INCOMING_DAG_ID
) -> TriggerResult:
    """Create the DAG run of a closed batch and record it in the spool.

    Safe to call twice, from two processes at once: the run id is the batch's, so the second
    call finds the run (``created`` false) and records the same facts.

    Raises
    ------
    AirflowError
        When Airflow cannot be reached or refuses; the batch stays pending.
    """
    run_id = run_id_for(batch.id)
    result = client.trigger_dag_run(dag_id, run_id, dag_conf(batch))
    spool.mark_triggered(batch.id, run_id, dag_id)
    return result


class Outbox(threading.Thread):
    """A background thread that triggers every pending batch exactly once.

    Parameters
    ----------
    spool
        Where the batches are; the outbox subscribes to its close events.
    client
        The Airflow client.
    dag_id
        The DAG to trigger.
    min_backoff, max_backoff
        First and longest wait (seconds) between attempts while Airflow fails.
    poll_interval
        How often the spool is rescanned when nothing wakes the outbox.
    on_triggered
        Called with each batch id right after its run was created (e.g. to index the batch at
        once while Airflow schedules the run); what it raises is logged and ignored.
    """

    def __init__(
        self,
        spool: Spool,
        client: DagTrigger,
        dag_id: str = INCOMING_DAG_ID,
        *,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        poll_interval: float = 10.0,
        on_triggered: Callable[[str], object] | None = None,
    ) -> None:
        super().__init__(name="outbox", daemon=True)
        self.spool = spool
        self.client = client
        self.dag_id = dag_id
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self.on_triggered = on_triggered
        self.triggered = 0
        self.failed_attempts = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        spool.add_close_listener(lambda _batch_id: self.wake())

    def wake(self) -> None:
        """Look at the spool now (a batch was closed)."""
        self._wake.set()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread and wait for it."""
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        """Trigger pending batches until stopped."""
        backoff = self.min_backoff
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.drain()
            except AirflowError as exc:
                self.failed_attempts += 1
                LOGGER.warning("outbox: %s; next attempt in %.1f s", exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            except Exception:
                self.failed_attempts += 1
                LOGGER.exception("outbox: unexpected error; next attempt in %.1f s", backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.min_backoff
            self._wake.wait(self.poll_interval)

    def drain(self) -> int:
        """Trigger every pending batch, oldest first; return how many were triggered.

        Raises
        ------
        AirflowError
            On the first batch that could not be triggered (the rest wait for the retry).
        """
        count = 0
        for batch in self.spool.pending():
            if self._stopping.is_set():
                break
            try:
                result = trigger_batch(self.spool, self.client, batch, self.dag_id)
            except AirflowRequestError as exc:
                LOGGER.error("outbox: batch %s not triggered: %s", batch.id, exc)
                raise
            run_id = run_id_for(batch.id)
            self.triggered += 1
            count += 1
            LOGGER.info(
                "batch %s triggered as %s/%s%s",
                batch.id,
                self.dag_id,
                run_id,
                "" if result.created else " (run already existed)",
            )
            if self.on_triggered is not None:
                try:
                    self.on_triggered(batch.id)
                except Exception:  # a follow-up nicety must not stop the triggers
                    LOGGER.exception("outbox: after triggering batch %s", batch.id)
        return count
