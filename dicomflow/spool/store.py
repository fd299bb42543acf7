"""The spool: batches of received instances on disk, their states and the problem area.

Layout under the spool root::

    batches/<id>/batch.json         project, dataset, origin, owner process, creation time
    batches/<id>/manifest.jsonl     one durable line per accepted instance
    batches/<id>/000001.dcm ...     the instances, byte for byte as received
    batches/<id>/closed.json        present once closed (state: pending)
    batches/<id>/triggered.json     present once a DAG run exists (state: triggered)
    batches/<id>/failed.json        present while its run has failed (state: failed)
    batches/<id>/done.json          present once processed (state: done)
    open/<id>                       marks a batch its owner still writes
    outbox/<id>                     marks a closed batch the dispatcher has yet to hand over
    runs/<run id>.json              a run the dispatcher made, and its batches, until they end
    failed/<id>                     marks a failed batch (for the dispatcher's retries)
    validate/<id>                   a done batch the background validation lane has yet to check
    problems/<id>/instance.dcm      a rejected instance ...
    problems/<id>/reason.json       ... and why (peer, AE titles, time, reason)
    incoming/<process>/             temporary files of transfers in progress, per process
    dispatcher.sock                 where a closed batch wakes the dispatcher (best effort)

The manifest is the truth of what a batch holds. A sender is told "stored" only once the
instance file is durable with its SHA-256 kept beside it (an extended attribute, flushed with
the file) and its manifest line is written; the manifest is flushed when the batch closes,
and recovery rebuilds the lines a crash took from the files and their kept hashes, and
removes anything else. Where the file system keeps no user extended attributes, each line is
flushed before the answer instead.

Several processes write one spool (each door has its own), each into batches of its own. A
batch left open by a process that died is closed by :meth:`Spool.recover`, which whoever
runs it (the receiver at its start, the dispatcher all along) may call at any time: it
touches only batches whose owner is gone, one recovery at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomflow.dicom.instance import Instance
from dicomflow.spool import durable
from dicomflow.spool.owner import ProcessIdentity
from dicomflow.spool.records import (
    BatchRecord,
    BatchState,
    CloseReason,
    Origin,
    PendingContent,
    ProblemRecord,
    RunRecord,
    WrittenContent,
)

if TYPE_CHECKING:
    from dicomflow.config import Settings

LOGGER = logging.getLogger(__name__)

BATCH_FILE = "batch.json"
MANIFEST_FILE = "manifest.jsonl"
CLOSED_FILE = "closed.json"
TRIGGERED_FILE = "triggered.json"
DONE_FILE = "done.json"
FAILED_FILE = "failed.json"
PROBLEM_FILE = "instance.dcm"
REASON_FILE = "reason.json"
#: The dispatcher listens here for a word that a batch was closed.
DISPATCHER_SOCKET = "dispatcher.sock"
_HASH_CHUNK = 1 << 20
#: A problem folder left without its reason (a crash while keeping it) is removed after this.
_STALE_PROBLEM_SECONDS = 3600

#: Describes an instance file for recovery (:func:`dicomflow.intake.checks.inspect_instance`);
#: raises for a file that would not have been accepted.
Describe = Callable[[Path], Instance]


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_id() -> str:
    """A unique id that sorts by creation time, e.g. ``20250101T120000123-a1b2c3``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
    return f"{stamp}-{secrets.token_hex(3)}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BatchClosedError(Exception):
    """The batch was closed (idle timeout, limits) before the instance could be added."""


class UnknownBatchError(LookupError):
    """No batch with that id exists in the spool."""


class Batch:
    """An open batch: instances are added by one sender session, it may be closed by any thread.

    Create batches with :meth:`Spool.open_batch`. A session that ends may leave its batch open
    for a while for the sender's next session to continue (:meth:`linger`, :meth:`resume`).
    """

    def __init__(
        self,
        spool: Spool,
        batch_id: str,
        path: Path,
        project: str,
        dataset: str,
        origin: Origin,
    ) -> None:
        self.spool = spool
        self.id = batch_id
        self.path = path
        self.project = project
        self.dataset = dataset
        self.origin = origin
        self.instances = 0
        self.bytes = 0
        self.opened_at = self.last_activity = time.monotonic()
        #: While no session holds the batch: when it closes unless one resumes it.
        self.close_at: float | None = None
        self.closed = False
        self._lock = threading.Lock()
        self._manifest = durable.DurableLog(path / MANIFEST_FILE)

    def add(
        self,
        source: Path,
        instance: Instance,
        *,
        move: bool,
        content: PendingContent | None = None,
    ) -> Instance:
        """Make an instance file durable in this batch and record it in the manifest.

        Parameters
        ----------
        source
            The file.
        instance
            Its record, as the checks read it.
        move
            Take the file away instead of copying it.
        content
            The file's size and SHA-256 when its writer knows them.

        Returns
        -------
        Instance
            The record as the manifest keeps it: the file in the batch, its size, hash and
            arrival time.

        Raises
        ------
        BatchClosedError
            When the batch was closed meanwhile; nothing was written.
        OSError
            When the disk refuses; the manifest is unchanged, so the instance is not in it,
            and a moved ``source`` is back where it was (best effort). The error of a
            ``content`` that cannot give its hash is raised after the same undoing.
        """
        with self._lock:
            if self.closed:
                raise BatchClosedError(self.id)
            path = self.path / f"{self.instances + 1:06d}.dcm"
            written = WrittenContent("", 0, b"")

            def sha256() -> bytes | None:
                # Asked for once the file is under its final name: a writer hashing in the
                # background finishes meanwhile, and the rename does not meet the creation of
                # the next instance's file, which the writer starts after the hash.
                nonlocal written
                if content is not None:
                    written = content.result()
                else:
                    written = WrittenContent(_sha256(path), path.stat().st_size, b"")
                return bytes.fromhex(written.sha256) if self.spool.keeps_hashes else None

            # The hash goes with the file and its one flush: then the manifest line need not
            # be flushed on its own (one device cache flush less per instance: ~12 % more
            # small and ~4 % more 500 KB instances per second).
            kept = durable.adopt_file(source, path, move=move, sha256=sha256)
            if self.spool.keeps_hashes and not kept:
                self.spool._hashes_not_kept()
            try:
                entry = dataclasses.replace(
                    instance,
                    path=path,
                    size=written.size,
                    sha256=written.sha256,
                    received_at=utc_now(),
                )
                self._manifest.append(entry.manifest_record(), flush=not kept)
            except BaseException:
                durable.give_back(path, source, move=move)
                raise
            self.instances += 1
            self.bytes += entry.size
            self.last_activity = time.monotonic()
            full = self._full_reason()
        if full is not None:
            self.close(full)
        return entry

    def _full_reason(self) -> CloseReason | None:
        if self.instances >= self.spool.max_instances:
            return CloseReason.MAX_INSTANCES
        if self.bytes >= self.spool.max_bytes:
            return CloseReason.MAX_BYTES
        return None

    def age(self) -> float:
        """Seconds since the batch was opened."""
        return time.monotonic() - self.opened_at

    def linger(self, seconds: float) -> None:
        """Leave the batch open, with no session, for ``seconds`` (see :meth:`Spool.close_idle`)."""
        with self._lock:
            self.close_at = time.monotonic() + seconds

    def resume(self) -> bool:
        """Take a lingering batch for a new session; ``False`` when it has closed meanwhile."""
        with self._lock:
            if self.closed:
                return False
            self.close_at = None
            self.last_activity = time.monotonic()
            return True

    def expired(self, now: float, idle_seconds: float) -> CloseReason | None:
        """Why the batch should close at ``now`` (monotonic), or ``None``."""
        # Read without the lock: :meth:`add` holds it through a disk flush, and the
        # housekeeping looks at every open batch ten times a second. A stale read at worst
        # closes a batch that a new session has just resumed; that session's next instance
        # then opens a batch of its own (:class:`BatchClosedError` is retried).
        close_at = self.close_at
        if self.closed:
            return None
        if close_at is not None:
            return CloseReason.STREAM_END if now >= close_at else None
        return CloseReason.IDLE if now - self.last_activity >= idle_seconds else None

    def close(self, reason: CloseReason) -> bool:
        """Close the batch (state ``pending``); return ``False`` when it was already closed.

        Raises
        ------
        OSError
            When the manifest cannot be flushed or the close cannot be recorded; the batch
            takes no more instances and stays open on disk, for the next start's recovery.
        """
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            try:
                self._manifest.flush()  # its lines were written unflushed (see add)
            finally:
                self._manifest.close()
            durable.write_json(
                self.path / CLOSED_FILE,
                {
                    "reason": reason.value,
                    "closed_at": utc_now(),
                    "instances": self.instances,
                    "bytes": self.bytes,
                },
            )
        LOGGER.info(
            "batch %s closed (%s): %d instances, %d bytes",
            self.id,
            reason.value,
            self.instances,
            self.bytes,
        )
        self.spool._batch_closed(self)
        return True


@dataclass(frozen=True)
class RecoveryReport:
    """What :meth:`Spool.recover` did."""

    closed: list[str]
    removed_empty: list[str]
    dropped_files: int
    pending: list[str]
    #: Instance files whose manifest line a crash took, listed again from their kept hash.
    restored_files: int = 0


class Spool:
    """The spool directory: open batches, batch states, listings and the problem area.

    Parameters
    ----------
    root
        The spool directory (``settings.spool_dir``); created when missing.
    max_instances, max_bytes
        A batch closes when it reaches either.
    idle_seconds
        An open batch closes after this long without a new instance (see :meth:`close_idle`).

    Attributes
    ----------
    keeps_hashes
        Whether instance files keep their SHA-256 in an extended attribute (see
        :func:`~dicomflow.spool.durable.adopt_file`); turned off, with a warning, by the first
        file the file system refuses it for. Each manifest line is then flushed on its own.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_instances: int = 5000,
        max_bytes: int = 4 << 30,
        idle_seconds: float = 10.0,
    ) -> None:
        self.root = Path(root)
        self.max_instances = max_instances
        self.max_bytes = max_bytes
        self.idle_seconds = idle_seconds
        self.batches_dir = self.root / "batches"
        self.problems_dir = self.root / "problems"
        self.open_dir = self.root / "open"
        self.outbox_dir = self.root / "outbox"
        self.runs_dir = self.root / "runs"
        self.failed_dir = self.root / "failed"
        self.validate_dir = self.root / "validate"
        self.incoming_root = self.root / "incoming"
        for directory in (
            self.batches_dir,
            self.problems_dir,
            self.open_dir,
            self.outbox_dir,
            self.runs_dir,
            self.failed_dir,
            self.validate_dir,
            self.incoming_root,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        self.owner = ProcessIdentity.current()
        self._open: dict[str, Batch] = {}
        self._lock = threading.Lock()
        self.keeps_hashes = True
        self._close_listeners: list[Callable[[str], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> Spool:
        """The spool at ``settings.spool_dir`` with the receiver's batch limits."""
        rs = settings.receiver
        return cls(
            settings.spool_dir,
            max_instances=rs.batch_max_instances,
            max_bytes=rs.batch_max_bytes,
            idle_seconds=rs.batch_idle_seconds,
        )

    @cached_property
    def incoming_dir(self) -> Path:
        """This process's folder for transfers in progress (removed by recovery once it dies).

        On the spool's file system, so that a finished transfer joins its batch by a rename.
        """
        path = self.incoming_root / self.owner.key
        path.mkdir(exist_ok=True)
        return path

    @property
    def dispatcher_socket(self) -> Path:
        """Where the dispatcher listens for closed batches."""
        return self.root / DISPATCHER_SOCKET

    # -- writing -------------------------------------------------------------------------

    def open_batch(self, project: str, dataset: str, origin: Origin) -> Batch:
        """Create a new open batch, durably, owned by this process."""
        batch_id = new_id()
        path = self.batches_dir / batch_id
        # The marker first, naming the owner: recovery finds every batch whose folder exists,
        # and leaves alone one whose owner lives, even before its batch.json is written.
        durable.write_json(self.open_dir / batch_id, {"owner": self.owner.as_dict()})
        durable.make_dir(path)
        durable.write_json(
            path / BATCH_FILE,
            {
                "id": batch_id,
                "project": project,
                "dataset": dataset,
                "origin": origin.as_dict(),
                "owner": self.owner.as_dict(),
                "created_at": utc_now(),
            },
        )
        batch = Batch(self, batch_id, path, project, dataset, origin)
        with self._lock:
            self._open[batch_id] = batch
        return batch

    def keep_problem(
        self,
        source: Path | bytes,
        reason: str,
        origin: Origin,
        project: str = "",
        *,
        move: bool = False,
        details: dict[str, Any] | None = None,
        problem_id: str | None = None,
    ) -> ProblemRecord | None:
        """Keep a rejected instance and its reason in ``problems/<id>/``.

        Parameters
        ----------
        source
            The file (or the bytes) as received.
        reason
            Why it was rejected.
        origin
            Who sent it.
        project
            The project it was sent to.
        move
            Take the file away instead of copying it.
        details
            Extra JSON-able facts for ``reason.json``.
        problem_id
            A name derived from the problem itself, so that keeping the same problem twice
            (a retried task, two attempts at once) keeps it once.

        Returns
        -------
        ProblemRecord or None
            The kept problem; ``None`` when ``problem_id`` was already kept.
        """
        problem_id = problem_id or new_id()
        path = self.problems_dir / problem_id
        try:
            durable.make_dir(path)
        except FileExistsError:
            return None
        if isinstance(source, bytes):
            durable.write_bytes(path / PROBLEM_FILE, source)
        else:
            durable.place_file(source, path / PROBLEM_FILE, move=move)
        received_at = utc_now()
        durable.write_json(
            path / REASON_FILE,
            {
                "id": problem_id,
                "reason": reason,
                "received_at": received_at,
                "project": project,
                **origin.as_dict(),
                "details": details or {},
            },
        )
        LOGGER.warning(
            "rejected instance from %s (calling %r, called %r) kept as problem %s: %s",
            origin.peer,
            origin.calling_ae,
            origin.called_ae,
            problem_id,
            reason,
        )
        return ProblemRecord(problem_id, reason, origin, project, received_at, path, details or {})

    def _hashes_not_kept(self) -> None:
        if self.keeps_hashes:
            self.keeps_hashes = False
            LOGGER.warning(
                "the file system of %s keeps no user extended attributes: each manifest line "
                "is flushed before its instance is acknowledged (one more disk flush each)",
                self.root,
            )

    def add_close_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(batch_id)`` whenever a batch of this process closes."""
        self._close_listeners.append(listener)

    def _batch_closed(self, batch: Batch) -> None:
        with self._lock:
            self._open.pop(batch.id, None)
        if batch.instances == 0:
            # Nothing was acknowledged into it: an empty batch has nothing to process.
            shutil.rmtree(batch.path, ignore_errors=True)
        else:
            self._to_outbox(batch.id)
        durable.remove(self.open_dir / batch.id)
        if batch.instances:
            for listener in self._close_listeners:
                listener(batch.id)

    def _to_outbox(self, batch_id: str) -> None:
        durable.touch(self.outbox_dir / batch_id)
        self.wake_dispatcher()

    def wake_dispatcher(self) -> None:
        """Tell the dispatcher, if it runs, that a batch is waiting (it also looks by itself)."""
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        ):
            sock.setblocking(False)
            sock.sendto(b"closed", str(self.dispatcher_socket))

    def close_idle(self) -> list[str]:
        """Close open batches that are due; return their ids.

        Due are a batch without a new instance for ``idle_seconds`` and a lingering batch
        (:meth:`Batch.linger`) whose time is up.
        """
        now = time.monotonic()
        with self._lock:
            batches = list(self._open.values())
        due = [(b, b.expired(now, self.idle_seconds)) for b in batches]
        return [b.id for b, reason in due if reason is not None and b.close(reason)]

    def close_all(self, reason: CloseReason = CloseReason.SHUTDOWN) -> list[str]:
        """Close every batch this process has open (on shutdown)."""
        with self._lock:
            batches = list(self._open.values())
        return [b.id for b in batches if b.close(reason)]

    def mark_triggered(self, batch_id: str, run_id: str, dag_id: str) -> None:
        """Record that a DAG run exists for a closed batch (state ``triggered``)."""
        path = self._batch_path(batch_id)
        durable.write_json(
            path / TRIGGERED_FILE,
            {"run_id": run_id, "dag_id": dag_id, "triggered_at": utc_now()},
        )
        durable.remove(self.outbox_dir / batch_id)

    def mark_done(self, batch_id: str) -> None:
        """Record that a batch was processed (state ``done``); called by the processing DAG."""
        path = self._batch_path(batch_id)
        durable.write_json(path / DONE_FILE, {"done_at": utc_now()})
        durable.remove(path / FAILED_FILE)
        durable.remove(self.failed_dir / batch_id)
        self.wake_dispatcher()  # a run slot may be free

    def record_run(self, run_id: str, dag_id: str, batch_ids: list[str]) -> RunRecord:
        """Record, durably, the run about to be made for ``batch_ids``."""
        record = RunRecord(run_id, dag_id, list(batch_ids), utc_now())
        durable.write_json(self.runs_dir / f"{run_id}.json", record.as_dict())
        return record

    def runs(self) -> list[RunRecord]:
        """The runs the dispatcher made whose batches have not all ended, oldest first."""
        found = []
        for path in sorted(self.runs_dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
            data = _read_json(path)
            if data is not None:
                found.append(
                    RunRecord(
                        data["run_id"], data["dag_id"], list(data["batch_ids"]), data["created_at"]
                    )
                )
        return found

    def forget_run(self, run_id: str) -> None:
        """Drop the record of a run whose batches have all ended."""
        durable.remove(self.runs_dir / f"{run_id}.json")

    def closed_since(self, batch_id: str) -> float:
        """When a pending batch joined the outbox (epoch seconds; now if it is not there)."""
        try:
            return (self.outbox_dir / batch_id).stat().st_mtime
        except FileNotFoundError:
            return time.time()

    def open_batches(self) -> int:
        """How many batches some door is writing now."""
        return sum(1 for _ in self.open_dir.iterdir())

    def queue_validation(self, batch_id: str) -> None:
        """Put a done batch in the background validation lane's queue (files kept till then)."""
        durable.touch(self.validate_dir / batch_id)
        self.wake_dispatcher()

    def validation_queue(self) -> list[str]:
        """The batches waiting for the background validation lane, oldest first."""
        return sorted(p.name for p in self.validate_dir.iterdir())

    def validation_done(self, batch_id: str) -> None:
        """Take a batch out of the background validation lane's queue."""
        durable.remove(self.validate_dir / batch_id)

    def mark_failed(self, batch_id: str, step: str, reason: str) -> None:
        """Record that a batch's run failed in ``step`` (state ``failed``), and why.

        The count of retries so far is kept (see :meth:`clear_failed`).
        """
        path = self._batch_path(batch_id)
        if (path / DONE_FILE).exists():
            return
        earlier = _read_json(path / FAILED_FILE) or _read_json(path / TRIGGERED_FILE) or {}
        durable.write_json(
            path / FAILED_FILE,
            {
                "failed_at": utc_now(),
                "step": step,
                "reason": reason,
                "retries": int(earlier.get("retries", 0)),
            },
        )
        durable.touch(self.failed_dir / batch_id)
        self.wake_dispatcher()  # a run slot may be free

    def clear_failed(self, batch_id: str) -> int:
        """Take a failed batch back to ``triggered`` for a retry; return its retry count.

        The count survives in ``triggered.json``, so a batch that fails again says how often
        it was tried.
        """
        path = self._batch_path(batch_id)
        failed = _read_json(path / FAILED_FILE)
        if failed is None:
            return 0
        retries = int(failed.get("retries", 0)) + 1
        triggered = _read_json(path / TRIGGERED_FILE) or {}
        durable.write_json(path / TRIGGERED_FILE, {**triggered, "retries": retries})
        durable.remove(path / FAILED_FILE)
        durable.remove(self.failed_dir / batch_id)
        return retries

    def failed(self) -> list[BatchRecord]:
        """The failed batches, oldest first (from their markers: no scan of every batch)."""
        records = []
        for marker in sorted(self.failed_dir.iterdir()):
            try:
                record = self.batch(marker.name)
            except UnknownBatchError:
                durable.remove(marker)
                continue
            if record.state is BatchState.FAILED:
                records.append(record)
            else:
                durable.remove(marker)
        return records

    # -- reading -------------------------------------------------------------------------

    def _batch_path(self, batch_id: str) -> Path:
        path = self.batches_dir / batch_id
        if "/" in batch_id or batch_id.startswith(".") or not (path / BATCH_FILE).is_file():
            raise UnknownBatchError(f"no batch {batch_id!r} in {self.batches_dir}")
        return path

    def batch_path(self, batch_id: str) -> Path:
        """The directory of a batch (the processing DAG reads the instances from there)."""
        return self._batch_path(batch_id)

    def manifest(self, batch_id: str) -> list[Instance]:
        """The durable instances of a batch."""
        path = self._batch_path(batch_id)
        records, _ = durable.read_json_lines(path / MANIFEST_FILE)
        return [Instance.from_manifest_record(r, path) for r in records]

    def batch(self, batch_id: str) -> BatchRecord:
        """One batch as a record."""
        record = self._read_record(self._batch_path(batch_id))
        if record is None:
            raise UnknownBatchError(batch_id)
        return record

    def batches(self, states: Iterable[BatchState] | None = None) -> list[BatchRecord]:
        """Every batch (oldest first), optionally only those in ``states``."""
        wanted = set(states) if states is not None else None
        records = []
        for path in sorted(self.batches_dir.iterdir()):
            record = self._read_record(path)
            if record is not None and (wanted is None or record.state in wanted):
                records.append(record)
        return records

    def pending(self) -> list[BatchRecord]:
        """Closed batches waiting to be handed to Airflow, oldest first (the outbox)."""
        records = []
        for marker in sorted(self.outbox_dir.iterdir()):
            try:
                record = self.batch(marker.name)
            except UnknownBatchError:
                LOGGER.warning("outbox: no batch %s; marker removed", marker.name)
                durable.remove(marker)
                continue
            if record.state is BatchState.PENDING:
                records.append(record)
            else:  # triggered by an earlier attempt that stopped short of removing it
                durable.remove(marker)
        return records

    def problems(self) -> list[ProblemRecord]:
        """Every rejected instance kept in the problem area, oldest first."""
        found = []
        for path in sorted(self.problems_dir.iterdir()):
            data = _read_json(path / REASON_FILE)
            if data is None:
                continue
            found.append(
                ProblemRecord(
                    id=data["id"],
                    reason=data["reason"],
                    origin=Origin.from_dict(data),
                    project=data.get("project", ""),
                    received_at=data["received_at"],
                    path=path,
                    details=data.get("details", {}),
                )
            )
        return found

    def _read_record(self, path: Path) -> BatchRecord | None:
        meta = _read_json(path / BATCH_FILE)
        if meta is None:
            return None
        closed = _read_json(path / CLOSED_FILE)
        triggered = _read_json(path / TRIGGERED_FILE)
        failed = _read_json(path / FAILED_FILE)
        done = _read_json(path / DONE_FILE)
        if closed is not None:
            instances, size = closed["instances"], closed["bytes"]
        else:
            entries, _ = durable.read_json_lines(path / MANIFEST_FILE)
            instances, size = len(entries), sum(e["size"] for e in entries)
        if done is not None:
            state = BatchState.DONE
        elif failed is not None:
            state = BatchState.FAILED
        elif triggered is not None:
            state = BatchState.TRIGGERED
        elif closed is not None:
            state = BatchState.PENDING
        else:
            state = BatchState.OPEN
        return BatchRecord(
            id=meta["id"],
            state=state,
            project=meta["project"],
            dataset=meta["dataset"],
            origin=Origin.from_dict(meta["origin"]),
            path=path,
            created_at=meta["created_at"],
            instances=instances,
            bytes=size,
            closed_at=_get(closed, "closed_at"),
            close_reason=_get(closed, "reason"),
            triggered_at=_get(triggered, "triggered_at"),
            run_id=_get(triggered, "run_id"),
            done_at=_get(done, "done_at"),
            failed_at=_get(failed, "failed_at"),
            failed_step=_get(failed, "step"),
            failure=_get(failed, "reason"),
            retries=int((failed or triggered or {}).get("retries", 0)),
        )

    # -- recovery ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _recovery_lock(self) -> Iterator[None]:
        """One recovery at a time across processes (the receiver's and the dispatcher's)."""
        fd = os.open(self.root / "recovery.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def recover(self, describe: Describe, *, full: bool = False) -> RecoveryReport:
        """Close what processes that died left open; safe to call at any time, from any process.

        A batch left open by a dead owner is closed: its manifest keeps its complete lines,
        and gets back the lines of instance files that are durable with their kept hash but
        whose line did not reach the disk (it is flushed only at the close); other files
        (never acknowledged, or temporary) are removed, and a batch left empty is removed.
        A dead process's transfers in progress are removed. Batches of live processes are
        not touched.

        Parameters
        ----------
        describe
            Reads an instance file's record (the checks of the doors); a file it refuses was
            never acknowledged.
        full
            Also look at every batch, not only at the marked ones: puts closed batches that a
            crash kept out of the outbox back into it (once, when a dispatcher starts).
        """
        closed: list[str] = []
        removed: list[str] = []
        dropped = restored = 0
        with self._recovery_lock():
            candidates = {m.name for m in self.open_dir.iterdir()}
            if full:
                candidates |= {p.name for p in self.batches_dir.iterdir()}
            for batch_id in sorted(candidates):
                if batch_id.startswith(durable.TMP_PREFIX) or batch_id in self._open:
                    continue
                outcome = self._recover_batch(batch_id, describe)
                if outcome is None:
                    continue
                kind, listed_again, lost = outcome
                restored += listed_again
                dropped += lost
                (closed if kind == "closed" else removed).append(batch_id)
            self._sweep_incoming()
            self._sweep_problems()
        pending = [m.name for m in sorted(self.outbox_dir.iterdir())]
        if closed or removed or dropped:
            LOGGER.warning(
                "spool recovery: closed %d half-open batches (%d instance files listed again "
                "from their kept hash), removed %d empty ones, dropped %d unacknowledged "
                "files; %d batches pending",
                len(closed),
                restored,
                len(removed),
                dropped,
                len(pending),
            )
        return RecoveryReport(closed, removed, dropped, pending, restored)

    def _recover_batch(self, batch_id: str, describe: Describe) -> tuple[str, int, int] | None:
        """Recover one batch if its owner is gone; ``(closed|removed, restored, dropped)``."""
        path = self.batches_dir / batch_id
        marker = self.open_dir / batch_id
        try:
            marked = _read_json(marker)
        except ValueError:  # an empty marker of an earlier layout: the batch.json says
            marked = None
        owner = ProcessIdentity.from_dict((marked or {}).get("owner"))
        if owner is not None and owner.alive():
            return None  # its owner is still writing it
        if not path.is_dir():
            # Crashed between the marker and the folder: nothing was acknowledged into it.
            durable.remove(marker)
            return None
        meta = _read_json(path / BATCH_FILE)
        if meta is None:
            # Crashed between mkdir and batch.json: nothing was acknowledged into it.
            shutil.rmtree(path, ignore_errors=True)
            durable.remove(marker)
            return ("removed", 0, 0)
        if (path / CLOSED_FILE).exists():
            # Closed: make sure a pending batch is in the outbox (a crash may have come
            # between the close and the marker) and that it is no longer marked open.
            if not (path / TRIGGERED_FILE).exists() and not (self.outbox_dir / batch_id).exists():
                self._to_outbox(batch_id)
            durable.remove(marker)
            return None
        owner = ProcessIdentity.from_dict(meta.get("owner"))
        if owner is not None and owner.alive():
            return None
        entries, listed_again, lost = _recover_manifest(path, describe)
        if not entries:
            shutil.rmtree(path)
            durable.remove(marker)
            return ("removed", listed_again, lost)
        durable.write_json(
            path / CLOSED_FILE,
            {
                "reason": CloseReason.RECOVERED.value,
                "closed_at": utc_now(),
                "instances": len(entries),
                "bytes": sum(e["size"] for e in entries),
            },
        )
        self._to_outbox(batch_id)
        durable.remove(marker)
        return ("closed", listed_again, lost)

    def _sweep_incoming(self) -> None:
        """Remove the transfers in progress of processes that died."""
        for child in self.incoming_root.iterdir():
            if child.is_dir():
                owner = ProcessIdentity.from_key(child.name)
                if owner is None or not owner.alive():
                    shutil.rmtree(child, ignore_errors=True)
            elif time.time() - _mtime(child) > _STALE_PROBLEM_SECONDS:
                # A loose file: a temporary file of a version before per-process folders.
                child.unlink(missing_ok=True)

    def _sweep_problems(self) -> None:
        """Remove problem folders a crash left without their reason (never acknowledged)."""
        for problem in self.problems_dir.iterdir():
            stale = time.time() - _mtime(problem) > _STALE_PROBLEM_SECONDS
            if stale and not (problem / REASON_FILE).exists():
                shutil.rmtree(problem, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _recover_manifest(path: Path, describe: Describe) -> tuple[list[dict[str, Any]], int, int]:
    """The durable manifest of a half-open batch, written back.

    Returns
    -------
    tuple
        The manifest's records, how many of them were restored from kept hashes, and how
        many files were dropped.
    """
    manifest = path / MANIFEST_FILE
    entries, good = durable.read_json_lines(manifest)
    listed = {e["file"] for e in entries} | {BATCH_FILE, MANIFEST_FILE}
    restored: list[dict[str, Any]] = []
    dropped = 0
    for child in sorted(path.iterdir()):
        if child.name in listed:
            continue
        if not child.is_file() or child.is_symlink():
            # Nothing the spool writes there: left to whoever made it (a batch left with no
            # instance is still removed whole, as nothing in it was acknowledged).
            LOGGER.warning("spool recovery: %s is not an instance file; left as it is", child)
            continue
        entry = _restore_entry(child, describe)
        if entry is None:
            child.unlink()
            dropped += 1
        else:
            restored.append(entry.manifest_record())
    if restored or (manifest.exists() and manifest.stat().st_size != good):
        durable.write_bytes(manifest, b"".join(map(durable.json_line, entries + restored)))
    durable.fsync_dir(path)
    return entries + restored, len(restored), dropped


def _restore_entry(path: Path, describe: Describe) -> Instance | None:
    """The record of an instance file that is durable with its kept hash, if it is."""
    if not (path.suffix == ".dcm" and path.stem.isdigit()):
        return None
    kept = durable.recorded_sha256(path)
    if kept is None:
        return None
    digest = _sha256(path)
    if bytes.fromhex(digest) != kept:
        return None  # its flush never finished: the sender was never told "stored"
    try:
        instance = describe(path)
    except Exception:  # it passed the checks once: not the file that was acknowledged
        return None
    stat = path.stat()
    received_at = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="milliseconds")
    return dataclasses.replace(
        instance, path=path, size=stat.st_size, sha256=digest, received_at=received_at
    )


def _get(data: dict[str, Any] | None, key: str) -> str | None:
    return None if data is None else str(data[key])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None
