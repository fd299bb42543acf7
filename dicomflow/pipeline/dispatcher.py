"""The dispatcher: the one hand-over from the spool to Airflow.

Every door closes its batches into the spool's outbox (:mod:`dicomflow.intake`); the
dispatcher, a small service of its own, takes them from there:

* it makes each batch's series searchable at once (``index.on_arrival``: documents marked
  "storing" until the processing DAG confirms the PACS holds them);
* it hands batches to runs of ``service-process-incoming-dcm``, several batches to one run
  when they close together. At most ``dispatcher.max_runs`` runs are in flight; batches that
  close meanwhile wait and the next run takes them all, so twenty senders at once, or one
  sender's stream of single-image associations, pay Airflow's per-run and per-task costs once
  rather than once per batch. A batch also waits up to ``dispatcher.gather_seconds`` while
  other senders are still sending, to share their run;
* it hands done batches to the background validation lane (``service-validate-instances``),
  one run at a time.

Each run is recorded in the spool (``runs/<run id>.json``) before Airflow is asked: if the
dispatcher dies in between, it makes the same run (same id, same batches) when it starts
again, and Airflow answers 409 for a run that exists; so a batch is never processed twice and
never forgotten. While Airflow cannot be reached, batches wait and the dispatcher retries with
backoff; an index that is down only delays searchability (the DAG indexes in any case). The
dispatcher also closes the batches that dead processes left open (:meth:`Spool.recover`).

Doors wake it through a datagram on ``<spool>/dispatcher.sock`` when they close a batch (and
tasks when a batch is done); it also looks every :data:`POLL_INTERVAL` seconds, so a lost
wake-up costs only time.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from dicomflow.airflow_api.client import AirflowError, AirflowRequestError, TriggerResult
from dicomflow.intake.session import recover_spool
from dicomflow.spool.records import BatchRecord, BatchState, RunRecord
from dicomflow.spool.store import Spool, UnknownBatchError

__all__ = [
    "INCOMING_DAG_ID",
    "VALIDATION_DAG_ID",
    "DagTrigger",
    "Dispatcher",
    "dag_conf",
    "run_id_for",
]

LOGGER = logging.getLogger(__name__)

#: The DAG that processes batches.
INCOMING_DAG_ID = "service-process-incoming-dcm"
#: The background validation lane.
VALIDATION_DAG_ID = "service-validate-instances"
#: Seconds between looks at the outbox when nothing wakes the dispatcher.
POLL_INTERVAL = 2.0
#: Seconds between looks for batches that dead processes left open.
RECOVERY_INTERVAL = 5.0
#: Seconds between looks at failed batches and runs.
WATCH_INTERVAL = 10.0
#: Seconds between questions to Airflow about a background validation run that still holds
#: queued batches (whether it ended without taking them out of the queue).
LANE_CHECK_INTERVAL = 10.0
#: The longest pause before a new lane run after lane runs ended with batches still queued.
LANE_MAX_PAUSE = 600.0
#: Seconds a queued batch's background validation waits for the processing runs in flight to
#: end before its lane run starts beside them: the lane yields the cores to what makes series
#: complete, but a site that never stops receiving still gets every instance checked.
LANE_YIELDS_FOR = 60.0
#: Airflow's states of a DAG run that has ended.
ENDED_RUN_STATES = frozenset({"success", "failed"})


class DagTrigger(Protocol):
    """What the dispatcher needs of :class:`~dicomflow.airflow_api.client.AirflowClient`."""

    def trigger_dag_run(
        self, dag_id: str, run_id: str, conf: dict[str, object]
    ) -> TriggerResult: ...

    def get_dag_run(self, dag_id: str, run_id: str) -> dict[str, object] | None: ...


def run_id_for(batch_ids: str | Sequence[str], prefix: str = "batch") -> str:
    """The deterministic id of the run of ``batch_ids`` (``batch-<id>`` for one batch)."""
    ids = [batch_ids] if isinstance(batch_ids, str) else list(batch_ids)
    return f"{prefix}-{ids[0]}" if len(ids) == 1 else f"{prefix}-{ids[0]}-{len(ids)}"


def dag_conf(batches: Sequence[BatchRecord]) -> dict[str, object]:
    """The conf of the run that processes ``batches``."""
    conf: dict[str, object] = {"batch_ids": [b.id for b in batches]}
    if len(batches) == 1:
        batch = batches[0]
        conf.update(
            batch_id=batch.id,
            project=batch.project,
            dataset=batch.dataset,
            instances=batch.instances,
        )
    return conf


class Dispatcher:
    """Hands the outbox's batches to Airflow, gathered into as few runs as it can.

    Parameters
    ----------
    spool
        The spool whose outbox it empties.
    client
        The Airflow client.
    on_arrival
        Called with each batch id before its run is created (the platform indexes the batch
        there, so it is searchable before the run's first task starts, and while Airflow is
        away); what it raises is logged, and it is tried again while the batch waits.
    dag_id
        The processing DAG.
    validation_dag_id
        The background validation lane's DAG; ``None``: no lane.
    max_runs
        Processing runs in flight at once.
    gather_seconds
        Longest wait of a closed batch for others while some door still has a batch open.
    max_run_instances
        Most instances in one run (a batch is never split).
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
    before_run
        Called with each batch id before the run that holds it is created (with the Celery
        executor, the platform uploads the batch to the object store there, so a worker on any
        host can read it); what it raises leaves the batch waiting, tried again with backoff.
    settle
        Called before each look at the outbox (with the Celery executor, the platform marks
        done the batches whose runs Airflow records as succeeded, since their ``finish`` step
        may have run where this spool is not).
    """

    def __init__(
        self,
        spool: Spool,
        client: DagTrigger,
        *,
        on_arrival: Callable[[str], object] | None = None,
        dag_id: str = INCOMING_DAG_ID,
        validation_dag_id: str | None = None,
        max_runs: int = 2,
        gather_seconds: float = 3.0,
        max_run_instances: int = 20000,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        poll_interval: float = POLL_INTERVAL,
        recovery_interval: float = RECOVERY_INTERVAL,
        watch: Callable[[], object] | None = None,
        watch_interval: float = WATCH_INTERVAL,
        before_run: Callable[[str], object] | None = None,
        settle: Callable[[], object] | None = None,
    ) -> None:
        self.spool = spool
        self.client = client
        self.on_arrival = on_arrival
        self.dag_id = dag_id
        self.validation_dag_id = validation_dag_id
        self.max_runs = max_runs
        self.gather_seconds = gather_seconds
        self.max_run_instances = max_run_instances
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self.recovery_interval = recovery_interval
        self.watch = watch
        self.watch_interval = watch_interval
        self.before_run = before_run
        self.settle = settle
        self.handed_over = 0
        self.runs_made = 0
        self.failed_attempts = 0
        self._announced: set[str] = set()
        self._look_again: float | None = None
        self._lane_checked = 0.0
        self._lane_not_before = 0.0
        self._lane_failures = 0
        self._lane_waits_since: float | None = None
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)

    # -- life ------------------------------------------------------------------------------

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
        sock.settimeout(max(timeout, 0.001))
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
            wait = min(self.poll_interval, max(0.0, next_recovery - time.monotonic()))
            if self._look_again is not None:
                wait = min(wait, self._look_again)
            self._wait_for_wake(wait)

    # -- hand-over -------------------------------------------------------------------------

    def drain(self) -> int:
        """Hand over what may go now; return how many batches were handed over.

        Raises
        ------
        AirflowError
            When Airflow could not be asked (the batches wait for the retry).
        """
        self._look_again = None
        if self.settle is not None:
            self.settle()
        pending = self.spool.pending()
        for batch in pending:
            self._arrive(batch.id)
        runs = self.spool.runs()
        count = self._finish_recorded_runs(runs)
        in_flight = sum(1 for r in runs if r.dag_id == self.dag_id and self._in_flight(r))
        recorded = {b for r in runs for b in r.batch_ids}
        waiting = [b for b in pending if b.id not in recorded]
        while waiting and in_flight < self.max_runs and not self._stopping.is_set():
            chosen = self._gather(waiting)
            if not chosen:
                break
            ids = [b.id for b in chosen]
            count += self._hand_over(self.spool.record_run(run_id_for(ids), self.dag_id, ids))
            in_flight += 1
            waiting = waiting[len(chosen) :]
        self._hand_over_validation(runs, busy=in_flight > 0 or bool(waiting))
        return count

    def _gather(self, waiting: list[BatchRecord]) -> list[BatchRecord]:
        """The next run's batches, or none while it is better to wait for more."""
        chosen: list[BatchRecord] = []
        instances = 0
        for batch in waiting:
            if chosen and instances + batch.instances > self.max_run_instances:
                break
            chosen.append(batch)
            instances += batch.instances
        full = len(chosen) < len(waiting) or instances >= self.max_run_instances
        waited = time.time() - self.spool.closed_since(chosen[0].id)
        if full or waited >= self.gather_seconds or self.spool.open_batches() == 0:
            return chosen
        # Some door is still writing: it may close its batch in a moment and share the run.
        self._look_again = self.gather_seconds - waited
        return []

    def _in_flight(self, run: RunRecord) -> bool:
        """Whether a recorded run still holds a batch that is neither done nor failed."""
        for batch_id in run.batch_ids:
            try:
                state = self.spool.batch(batch_id).state
            except UnknownBatchError:
                continue
            if state not in (BatchState.DONE, BatchState.FAILED):
                return True
        return False

    def _finish_recorded_runs(self, runs: list[RunRecord]) -> int:
        """Make the recorded runs whose batches are not handed over yet; forget ended ones."""
        count = 0
        for run in runs:
            if run.dag_id != self.dag_id:
                continue
            states = []
            for batch_id in run.batch_ids:
                with contextlib.suppress(UnknownBatchError):
                    states.append(self.spool.batch(batch_id).state)
            if BatchState.PENDING in states:
                count += self._hand_over(run)
            elif all(s is BatchState.DONE for s in states):
                self.spool.forget_run(run.run_id)
        return count

    def _hand_over(self, run: RunRecord) -> int:
        batches = []
        for batch_id in run.batch_ids:
            with contextlib.suppress(UnknownBatchError):
                batches.append(self.spool.batch(batch_id))
        if self.before_run is not None:
            for batch in batches:
                if batch.state is BatchState.PENDING:
                    self.before_run(batch.id)
        try:
            result = self.client.trigger_dag_run(run.dag_id, run.run_id, dag_conf(batches))
        except AirflowRequestError as exc:
            LOGGER.error("dispatcher: run %s not made: %s", run.run_id, exc)
            raise
        handed = 0
        for batch in batches:
            if batch.state is BatchState.PENDING:
                self.spool.mark_triggered(batch.id, run.run_id, run.dag_id)
                self._announced.discard(batch.id)
                handed += 1
        self.handed_over += handed
        self.runs_made += 1
        LOGGER.info(
            "%d batch(es), %d instance(s) handed over as %s/%s%s",
            len(batches),
            sum(b.instances for b in batches),
            run.dag_id,
            run.run_id,
            "" if result.created else " (run already existed)",
        )
        return handed

    def _hand_over_validation(self, runs: list[RunRecord], *, busy: bool = False) -> None:
        """One background validation run at a time, for every done batch that waits.

        While processing runs are in flight or batches wait for one (``busy``), a new lane run
        waits for them, up to :data:`LANE_YIELDS_FOR` seconds: with 20 senders at once, the
        lane of the first run's batches competed with the second run for the cores.
        """
        if self.validation_dag_id is None:
            return
        queued = set(self.spool.validation_queue())
        lane = [r for r in runs if r.dag_id == self.validation_dag_id]
        holding = []
        for run in lane:
            if queued & set(run.batch_ids):
                holding.append(run)
            else:  # it took its batches out of the queue: the lane works
                self.spool.forget_run(run.run_id)
                self._lane_failures = 0
        if holding:
            self._look_after_lane(holding)
            return
        if not queued:
            self._lane_waits_since = None
            return
        now = time.monotonic()
        if now < self._lane_not_before:
            return
        if self._lane_waits_since is None:
            self._lane_waits_since = now
        if busy and now - self._lane_waits_since < LANE_YIELDS_FOR:
            return
        self._lane_waits_since = None
        batch_ids = sorted(queued)
        # A fresh id each time: the batches of a lane run that ended without them come back
        # here, and Airflow would answer the old id with the old, ended run.
        run_id = f"{run_id_for(batch_ids, prefix='validate')}-{time.time_ns() // 1_000_000}"
        run = self.spool.record_run(run_id, self.validation_dag_id, batch_ids)
        self.client.trigger_dag_run(run.dag_id, run.run_id, {"batch_ids": batch_ids})
        LOGGER.info("%d batch(es) handed to the background validation lane", len(batch_ids))

    def _look_after_lane(self, holding: list[RunRecord]) -> None:
        """Make lane runs that were recorded but never made; forget those that have ended.

        A lane run that failed (its task out of retries) or was recorded just before a crash
        would otherwise hold its batches in the queue for good, and the lane would stop.
        """
        now = time.monotonic()
        if now - self._lane_checked < LANE_CHECK_INTERVAL:
            return
        self._lane_checked = now
        for run in holding:
            found = self.client.get_dag_run(run.dag_id, run.run_id)
            if found is None:
                self.client.trigger_dag_run(run.dag_id, run.run_id, {"batch_ids": run.batch_ids})
                LOGGER.info("background validation run %s made again", run.run_id)
            elif found.get("state") in ENDED_RUN_STATES:
                # A lane that keeps failing (a check that crashes on some file) is tried
                # again with a growing pause, not in a loop.
                pause = min(LANE_MAX_PAUSE, LANE_CHECK_INTERVAL * 2**self._lane_failures)
                self._lane_failures += 1
                self._lane_not_before = now + pause
                LOGGER.warning(
                    "background validation run %s ended (%s) with batches still queued; "
                    "they go to a new run in %.0f s",
                    run.run_id,
                    found.get("state"),
                    pause,
                )
                self.spool.forget_run(run.run_id)

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
    from dicomflow.pipeline.handover import Settlement, upload_batch
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

        def upload(batch_id: str) -> None:
            sent = upload_batch(platform.objects, platform.spool, batch_id)
            if sent:
                LOGGER.info("batch %s handed over to the object store (%d bytes)", batch_id, sent)

        ds = settings.dispatcher
        validation_dag = VALIDATION_DAG_ID if settings.validation.background else None
        celery = settings.airflow.celery
        dispatcher = Dispatcher(
            platform.spool,
            platform.airflow,
            on_arrival=arrive if settings.index.on_arrival else None,
            validation_dag_id=validation_dag,
            max_runs=ds.max_runs,
            gather_seconds=ds.gather_seconds,
            max_run_instances=ds.max_run_instances,
            watch=FailureWatch(platform, INCOMING_DAG_ID).check,
            before_run=upload if celery else None,
            settle=Settlement(platform, INCOMING_DAG_ID, validation_dag).settle if celery else None,
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
