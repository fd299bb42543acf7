"""The dispatcher: the one hand-over from the spool to Airflow.

Every door closes its batches into the spool's outbox (:mod:`dicomflow.intake`); the
dispatcher, a small service of its own, takes each from there and

* makes its series searchable at once (``index.on_arrival``: documents marked "storing"
  until the processing DAG confirms the PACS holds them), then
* creates its run of ``service-process-incoming-dcm`` with the run id ``batch-<batch id>``:
  if the dispatcher dies after Airflow created the run but before the spool recorded it,
  the next attempt gets HTTP 409 and counts it as done, so a batch is never processed twice
  and never forgotten.

While Airflow cannot be reached, batches wait in the outbox and the dispatcher retries with
backoff; an index that is down only delays searchability (the DAG indexes in any case). It
also closes the batches that dead processes left open (:meth:`Spool.recover`), so a door that
crashed in the middle of a sender's session needs nobody to restart it for its data to flow.

Doors wake it through a datagram on ``<spool>/dispatcher.sock`` when they close a batch; it
also looks every :data:`POLL_INTERVAL` seconds, so a lost wake-up costs only time.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from dicomflow.airflow_api.client import AirflowError, AirflowRequestError, TriggerResult
from dicomflow.intake.session import recover_spool
from dicomflow.spool.records import BatchRecord
from dicomflow.spool.store import Spool

__all__ = [
    "INCOMING_DAG_ID",
    "DagTrigger",
    "Dispatcher",
    "dag_conf",
    "hand_over",
    "run_id_for",
]

LOGGER = logging.getLogger(__name__)

#: The DAG that processes a batch.
INCOMING_DAG_ID = "service-process-incoming-dcm"
#: Seconds between looks at the outbox when nothing wakes the dispatcher.
POLL_INTERVAL = 2.0
#: Seconds between looks for batches that dead processes left open.
RECOVERY_INTERVAL = 5.0
#: Seconds between looks at failed batches and runs.
WATCH_INTERVAL = 10.0


class DagTrigger(Protocol):
    """What the dispatcher needs of :class:`~dicomflow.airflow_api.client.AirflowClient`."""

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


def hand_over(
    spool: Spool, client: DagTrigger, batch: BatchRecord, dag_id: str = INCOMING_DAG_ID
) -> TriggerResult:
    """Create the DAG run of a closed batch and record it in the spool.

    Safe to call twice, from two processes at once: the run id is the batch's, so the second
    call finds the run (``created`` false) and records the same facts.

    Raises
    ------
    AirflowError
        When Airflow cannot be reached or refuses; the batch stays in the outbox.
    """
    run_id = run_id_for(batch.id)
    result = client.trigger_dag_run(dag_id, run_id, dag_conf(batch))
    spool.mark_triggered(batch.id, run_id, dag_id)
    return result


class Dispatcher:
    """Hands every batch of the outbox to Airflow exactly once; a thread of its own.

    Parameters
    ----------
    spool
        The spool whose outbox it empties.
    client
        The Airflow client.
    on_arrival
        Called with each batch id before its run is created (the platform indexes the batch
        there, so it is searchable before the run's first task starts, and while Airflow is
        away); what it raises is logged, and it is tried again while the batch waits in the
        outbox.
    dag_id
        The DAG to trigger.
    min_backoff, max_backoff
        First and longest wait (seconds) between attempts while Airflow fails.
    poll_interval
        Seconds between looks at the outbox when nothing wakes the dispatcher.
    recovery_interval
        Seconds between looks for batches left open by processes that died.
    watch
        Called every ``watch_interval`` seconds (the platform retries failed batches there);
        what it raises is logged.
    watch_interval
        Seconds between calls of ``watch``.
    """

    def __init__(
        self,
        spool: Spool,
        client: DagTrigger,
        *,
        on_arrival: Callable[[str], object] | None = None,
        dag_id: str = INCOMING_DAG_ID,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        poll_interval: float = POLL_INTERVAL,
        recovery_interval: float = RECOVERY_INTERVAL,
        watch: Callable[[], object] | None = None,
        watch_interval: float = WATCH_INTERVAL,
    ) -> None:
        self.spool = spool
        self.client = client
        self.on_arrival = on_arrival
        self.dag_id = dag_id
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self.recovery_interval = recovery_interval
        self.watch = watch
        self.watch_interval = watch_interval
        self.handed_over = 0
        self.failed_attempts = 0
        self._announced: set[str] = set()
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)

    def start(self) -> None:
        """Listen for wake-ups, recover the spool once in full, and start the thread."""
        self._socket = self._listen()
        recover_spool(self.spool, full=True)
        self._thread.start()
        LOGGER.info("dispatcher watching %s (DAG %s)", self.spool.outbox_dir, self.dag_id)

    def _listen(self) -> socket.socket:
        path = self.spool.dispatcher_socket
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead dispatcher's socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        return sock

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and wait for it (a hand-over in progress finishes)."""
        self._stopping.set()
        self.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
            with contextlib.suppress(FileNotFoundError):
                self.spool.dispatcher_socket.unlink()

    def wake(self) -> None:
        """Look at the outbox now."""
        self.spool.wake_dispatcher()

    def wait(self) -> None:
        """Block until :meth:`stop` is called."""
        self._stopping.wait()

    def _wait_for_wake(self, timeout: float) -> None:
        """Sleep until a door wakes us or ``timeout`` passes; swallow every queued wake-up."""
        sock = self._socket
        if sock is None:
            self._stopping.wait(timeout)
            return
        sock.settimeout(timeout)
        with contextlib.suppress(TimeoutError, OSError):
            sock.recv(64)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError, OSError):
            while sock.recv(64):
                pass

    def _run(self) -> None:
        backoff = self.min_backoff
        next_recovery = next_watch = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_recovery:
                try:
                    recover_spool(self.spool)
                except Exception:
                    LOGGER.exception("dispatcher: spool recovery failed")
                next_recovery = now + self.recovery_interval
            if self.watch is not None and now >= next_watch:
                try:
                    self.watch()
                except Exception:
                    LOGGER.exception("dispatcher: the watch over failed batches failed")
                next_watch = now + self.watch_interval
            try:
                self.drain()
            except AirflowError as exc:
                self.failed_attempts += 1
                LOGGER.warning("dispatcher: %s; next attempt in %.1f s", exc, backoff)
                self._wait_for_wake(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            except Exception:
                self.failed_attempts += 1
                LOGGER.exception("dispatcher: unexpected error; next attempt in %.1f s", backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.min_backoff
            self._wait_for_wake(min(self.poll_interval, max(0.0, next_recovery - time.monotonic())))

    def drain(self) -> int:
        """Hand over every batch in the outbox, oldest first; return how many were.

        Raises
        ------
        AirflowError
            On the first batch that could not be handed over (the rest wait for the retry).
        """
        count = 0
        for batch in self.spool.pending():
            if self._stopping.is_set():
                break
            self._arrive(batch.id)
            try:
                result = hand_over(self.spool, self.client, batch, self.dag_id)
            except AirflowRequestError as exc:
                LOGGER.error("dispatcher: batch %s not handed over: %s", batch.id, exc)
                raise
            self._announced.discard(batch.id)
            self.handed_over += 1
            count += 1
            LOGGER.info(
                "batch %s handed over as %s/%s%s",
                batch.id,
                self.dag_id,
                run_id_for(batch.id),
                "" if result.created else " (run already existed)",
            )
        return count

    def _arrive(self, batch_id: str) -> None:
        """Index a batch on arrival, once per dispatcher (retried while Airflow waits)."""
        if self.on_arrival is None or batch_id in self._announced:
            return
        try:
            self.on_arrival(batch_id)
        except Exception as exc:  # a nicety: the DAG indexes the batch in any case
            LOGGER.warning(
                "batch %s: not indexed on arrival (the DAG will index it): %s", batch_id, exc
            )
            return
        self._announced.add(batch_id)


def main() -> int:
    """``python -m dicomflow.pipeline.dispatcher``: run the dispatcher until SIGTERM/SIGINT."""
    import signal
    import sys
    from types import FrameType

    from dicomflow.config import ConfigError, load_settings
    from dicomflow.pipeline.failures import FailureWatch
    from dicomflow.pipeline.steps import announce_batch
    from dicomflow.platform import Platform

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(create_secrets=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    with Platform(settings) as platform:

        def arrive(batch_id: str) -> None:
            announce_batch(platform, batch_id)

        dispatcher = Dispatcher(
            platform.spool,
            platform.airflow,
            on_arrival=arrive if settings.index.on_arrival else None,
            watch=FailureWatch(platform, INCOMING_DAG_ID).check,
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            dispatcher.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        dispatcher.start()
        dispatcher.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
