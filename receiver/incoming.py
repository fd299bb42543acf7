"""The file a C-STORE data set streams into, and the thread that hashes it meanwhile.

For every C-STORE pynetdicom 3.0.4 creates a ``NamedTemporaryFile``, flushes that buffered
file after every fragment, and the receiver then read each file twice more, to hash it and
to check its header. Instead (see :class:`receiver.dimse.StreamingDIMSE`):

* a C-STORE data set streams into an :class:`IncomingFile` in the spool's ``incoming``
  area (``tempfile.tempdir``, see :func:`receiver.app.use_spool_for_temporary_files`):
  unbuffered writes, the file meta encoded directly (see
  :func:`receiver.encoding.encode_file_meta`), SHA-256 and the first bytes of the header
  taken as the fragments arrive (the spool reads the file no more);
* large fragments are hashed by a :class:`BackgroundWorker` thread of the association,
  which also creates the file for the next data set while the sender prepares it.

Only :func:`written_content` knows pynetdicom: it finds the file on pynetdicom's request
primitive (see :mod:`receiver.overrides`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import cast

from dicomflow.intake.checks import HEAD_BYTES
from dicomflow.spool.records import PendingContent, WrittenContent

__all__ = [
    "DIGEST_IN_WORKER_FROM",
    "WRITEBACK_AFTER",
    "BackgroundWorker",
    "IncomingFile",
    "create_empty_file",
    "remove_empty_file",
    "written_content",
]

LOGGER = logging.getLogger(__name__)

_PREAMBLE = b"\x00" * 128 + b"DICM"
#: Bytes of a data set after which its pages are handed to write-back as they arrive (see
#: :meth:`IncomingFile.write`). Below it the final ``fsync`` alone is cheaper: starting
#: write-back for every small file made the small-instance rate worse.
WRITEBACK_AFTER = 256 * 1024
#: Fragments at least this long are hashed by the association's :class:`BackgroundWorker`:
#: below it handing a fragment over costs more than hashing it (~4 µs per KB).
DIGEST_IN_WORKER_FROM = 32 * 1024
# ``posix_fadvise`` exists on Linux and most Unixes, not on Windows or macOS.
_CAN_START_WRITEBACK = hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED")


def create_empty_file(directory: Path | None = None) -> tuple[int, str]:
    """A new empty file for an incoming data set: its open descriptor and its name."""
    return tempfile.mkstemp(suffix=".dcm", dir=directory)


def remove_empty_file(created: tuple[int, str]) -> None:
    """Close and remove a file made by :func:`create_empty_file` that was never used."""
    fd, name = created
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


class BackgroundWorker:
    """A thread of an association that does, in order, what the sender need not wait for.

    * It hashes the large fragments of incoming files while more bytes arrive. The reactor
      thread receiving a data set used to hash each fragment itself: ~0.3 ms of a 500 KB
      instance during which it read nothing from the socket. ``hashlib`` releases the GIL
      on large buffers, so the worker hashes (and starts write-back, see
      :meth:`IncomingFile._start_writeback`) while the reactor reads and writes the next
      fragment; the spool asks for the hash only after it has checked the header and
      flushed the file. One worker per association hashes a file's fragments in order.
    * It creates the file for the next data set (see
      :meth:`~receiver.dimse.StreamingDIMSE.prepare_next_file`).

    The thread starts with the first job and ends at :meth:`close`; after that, jobs run in
    the calling thread.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` after the jobs submitted before it."""
        with self._lock:
            if self._closed:
                inline = True
            else:
                inline = False
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="receiver-background", daemon=True
                    )
                    self._thread.start()
                self._jobs.put(job)
        if inline:
            job()

    def close(self) -> None:
        """Run the jobs still queued, then end the thread."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            if thread is not None:
                self._jobs.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            # Jobs keep their own errors (see IncomingFile._digest); this only keeps the
            # worker alive for the files of other messages.
            try:
                job()
            except Exception:
                LOGGER.exception("background job failed")


class IncomingFile:
    """The file a C-STORE data set streams into: preamble, file meta, then the data set.

    It stands in for the ``NamedTemporaryFile`` pynetdicom would create (``name``,
    ``close()``; pynetdicom unlinks ``name`` after the handler if it is still there).

    Parameters
    ----------
    meta
        The encoded file meta information group (see
        :func:`~receiver.encoding.encode_file_meta`).
    directory
        Where to create it; by default ``tempfile.gettempdir()``.
    worker
        Hashes fragments of at least :data:`DIGEST_IN_WORKER_FROM` bytes in the background;
        without one, every fragment is hashed by :meth:`write`.
    created
        An empty file made beforehand by :func:`create_empty_file` (descriptor and name), to
        use instead of creating one (``directory`` is then ignored).
    """

    def __init__(
        self,
        meta: bytes,
        directory: Path | None = None,
        worker: BackgroundWorker | None = None,
        created: tuple[int, str] | None = None,
    ) -> None:
        fd, name = created if created is not None else create_empty_file(directory)
        self.name = name
        self.path = Path(name)
        self._fd = fd
        self._sha256 = hashlib.sha256()
        self._head = bytearray()
        self.size = 0
        # Bytes before this offset were handed to write-back already.
        self._writeback_from = 0
        self._worker = worker
        # Whether fragments go to the worker: once one did, all that follow must, in order.
        self._in_worker = False
        # Jobs of this file given to the worker and not yet run; notified when none is left.
        self._jobs_left = 0
        self._jobs_done = threading.Condition(threading.Lock())
        self._error: BaseException | None = None
        try:
            self.write(_PREAMBLE + meta)
        except OSError:
            self.discard()
            raise

    def write(self, data: bytes | memoryview, *, released: Callable[[], None] | None = None) -> int:
        """Append ``data``; return its length.

        ``data`` must not change until ``released`` runs: once it is hashed, at once or
        by the worker after the data written before it (not at all when the write fails).
        Handing the release over with the data, rather than as a job of its own, halves the
        hand-offs to the worker per received PDU.
        """
        view = memoryview(data)
        length = len(view)
        while view:
            view = view[os.write(self._fd, view) :]
        missing = HEAD_BYTES + 1 - len(self._head)
        if missing > 0:
            self._head += data[:missing]
        self.size += length
        writeback = self.size > WRITEBACK_AFTER and _CAN_START_WRITEBACK
        if self._worker is not None and (self._in_worker or length >= DIGEST_IN_WORKER_FROM):
            self._in_worker = True
            self._submit(partial(self._digest, data, writeback, self.size, released))
        else:
            self._digest(data, writeback, self.size, released)
        return length

    def _digest(
        self,
        data: bytes | memoryview,
        writeback: bool,
        end: int,
        released: Callable[[], None] | None = None,
    ) -> None:
        """Hash ``data``, start write-back up to ``end`` if ``writeback``, then release it."""
        try:
            self._sha256.update(data)
            if writeback:
                self._start_writeback(end)
        except Exception as exc:
            # Reported by result(): the handler then refuses the instance.
            self._error = exc
            raise
        finally:
            if released is not None:
                released()

    def _start_writeback(self, end: int) -> None:
        """Start writing the bytes up to ``end`` not yet handed over to the disk, no waiting.

        The spool flushes the whole file before the C-STORE is answered, and the sender waits
        for that answer. For a large data set most of the flush was writing its pages out;
        started here, fragment by fragment (the last one too: its write-back then overlaps
        with the header check), that overlaps with receiving the rest, and the final flush has
        little left (0.9 ms became 0.3 ms per 500 KB instance on ext4).

        On Linux ``POSIX_FADV_DONTNEED`` starts asynchronous write-back of the range's dirty
        pages (what ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` does; Python's ``os`` has no
        such call) without waiting for the disk. It drops only pages that are clean already,
        and the range is always the one just written, so the file stays cached. Elsewhere it
        may do no write-back: the final flush then does it all, as before. The advice is only
        about the page cache; errors are left to that final flush.
        """
        try:
            os.posix_fadvise(
                self._fd, self._writeback_from, end - self._writeback_from, os.POSIX_FADV_DONTNEED
            )
        except OSError:
            return
        self._writeback_from = end

    def _submit(self, job: Callable[[], None]) -> None:
        with self._jobs_done:
            self._jobs_left += 1
        cast(BackgroundWorker, self._worker).submit(partial(self._run_job, job))

    def _run_job(self, job: Callable[[], None]) -> None:
        try:
            job()
        finally:
            with self._jobs_done:
                self._jobs_left -= 1
                if not self._jobs_left:
                    self._jobs_done.notify_all()

    def _wait_for_worker(self) -> None:
        """Return once the worker has run every job of this file, and only those.

        Not a barrier behind everything queued: the worker makes the next instance's file
        while this one is checked and flushed (see ``StreamingDIMSE.prepare_next_file``), and
        the answer must not wait for that. Nothing left (close() after result()): no wait and
        no thread switch at all.
        """
        with self._jobs_done:
            while self._jobs_left:
                self._jobs_done.wait()

    def close(self) -> None:
        """Close the file (it stays on disk)."""
        if self._fd >= 0:
            # The worker may still start write-back on this descriptor.
            self._wait_for_worker()
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Close the file and remove it: its data set is not stored."""
        self.close()
        self.path.unlink(missing_ok=True)

    @property
    def head(self) -> bytes:
        """The first ``HEAD_BYTES + 1`` bytes written (all of them when fewer)."""
        return bytes(self._head)

    def result(self) -> WrittenContent:
        """What was written: SHA-256, size and the first bytes; waits for the worker.

        As :class:`~dicomflow.spool.records.PendingContent` promises: the spool asks for it
        once it has checked the header.

        Raises
        ------
        RuntimeError
            When hashing failed in the worker.
        """
        self._wait_for_worker()
        if self._error is not None:
            raise RuntimeError(f"hashing the received data set failed: {self._error}")
        return WrittenContent(self._sha256.hexdigest(), self.size, bytes(self._head))


def written_content(request: object) -> PendingContent | None:
    """What :class:`~receiver.dimse.StreamingDIMSE` wrote of a C-STORE request's data set.

    ``None`` when the data set did not stream into an :class:`IncomingFile`. The hash may
    still be in the works (see :class:`BackgroundWorker`); the spool asks for it once it has
    checked the header.
    """
    # pynetdicom keeps the file object of a streamed data set on the request primitive.
    incoming = getattr(request, "_dataset_file", None)
    return incoming if isinstance(incoming, IncomingFile) else None
