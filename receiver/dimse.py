"""A DIMSE provider that streams C-STORE data sets into the spool and answers them cheaply.

Per small instance, pynetdicom 3.0.4 spent more time in its own Python than the receiver
spent making the instance durable: it builds and encodes a pydicom file meta data set and a
``NamedTemporaryFile`` for every C-STORE, flushes that buffered file after every fragment,
and builds, validates and encodes a pydicom command data set for every response. The
receiver then read each file twice more, to hash it and to check its header.

:class:`StreamingDIMSE` keeps pynetdicom's message handling and changes these things:

* a C-STORE data set streams into an :class:`IncomingFile` in the spool's ``incoming``
  area (``tempfile.tempdir``, see :func:`receiver.app.use_spool_for_temporary_files`):
  unbuffered writes, the file meta encoded directly, SHA-256 and the first bytes of the
  header taken as the fragments arrive (the spool reads the file no more);
* large fragments are hashed by a :class:`BackgroundWorker` thread of the association,
  which also creates the file for the next data set while the sender prepares it;
* a plain C-STORE response (no error comment or offending element) is encoded directly;
* everything else is done by the parent, as before.

The overridden ``receive_primitive`` mirrors pynetdicom 3.0.4's ``receive_primitive`` and
``DIMSEMessage.decode_msg``; like the reactors it is used only on that release (see
:func:`receiver.reactor.fast_reactor_supported`). Tests compare the file meta and the
responses byte for byte with what pynetdicom and pydicom write.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pynetdicom import (
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    _config,
    evt,
)
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import _MESSAGE_TYPES, C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_CANCEL, C_STORE, N_EVENT_REPORT, DimseServiceType
from pynetdicom.dsutils import create_file_meta, decode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.utils import make_target

from dicomflow.intake.checks import HEAD_BYTES
from dicomflow.spool.records import PendingContent, WrittenContent

if TYPE_CHECKING:
    from pydicom.uid import UID

__all__ = [
    "IncomingFile",
    "StoreRequest",
    "StreamingDIMSE",
    "WakeableQueue",
    "encode_file_meta",
    "encode_store_response",
    "parse_store_request",
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
_C_STORE_RSP = 0x8001
_NO_DATA_SET = 0x0101


def create_empty_file(directory: Path | None = None) -> tuple[int, str]:
    """A new empty file for an incoming data set: its open descriptor and its name."""
    return tempfile.mkstemp(suffix=".dcm", dir=directory)


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
      :meth:`StreamingDIMSE.prepare_next_file`).

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


class WakeableQueue(queue.Queue[Any]):
    """The DIMSE message queue, whose waiting association thread can be woken without a message.

    The association thread waits on this queue for requests and looks for a release or an
    abort request (which arrive on the DUL's ``to_user_queue``) when the wait ends. Waking
    it (:meth:`wake`) when one arrives answers an A-RELEASE at once instead of after the
    rest of the wait. Putting a ``(None, None)`` item instead would be taken for a timed-out
    response by a handler waiting in ``DIMSEServiceProvider.get_msg``; a plain ``get``
    ignores a wake-up.
    """

    def __init__(self) -> None:
        super().__init__()
        self._woken = False

    def wake(self) -> None:
        """End a waiting :meth:`get_or_wake` (or the next one) without an item."""
        with self.not_empty:
            self._woken = True
            self.not_empty.notify_all()

    def get_or_wake(self, timeout: float) -> Any:
        """The next item, or ``None`` after ``timeout`` seconds or a :meth:`wake`."""
        with self.not_empty:
            if not self._qsize() and not self._woken:
                self.not_empty.wait(timeout)
            self._woken = False
            if not self._qsize():
                return None
            item = self._get()
            self.not_full.notify()
            return item


class IncomingFile:
    """The file a C-STORE data set streams into: preamble, file meta, then the data set.

    It stands in for the ``NamedTemporaryFile`` pynetdicom would create (``name``,
    ``close()``; pynetdicom unlinks ``name`` after the handler if it is still there).

    Parameters
    ----------
    meta
        The encoded file meta information group (see :func:`encode_file_meta`).
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
    """What :class:`StreamingDIMSE` wrote of a C-STORE request's data set, if it wrote it.

    The hash may still be in the works (see :class:`BackgroundWorker`); the spool asks for it
    once it has checked the header.
    """
    # pynetdicom keeps the file object of a streamed data set on the request primitive.
    incoming = getattr(request, "_dataset_file", None)
    return incoming if isinstance(incoming, IncomingFile) else None


def _discard(created: tuple[int, str]) -> None:
    fd, name = created
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def _ui(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def _explicit(tag: int, vr: bytes, value: bytes) -> bytes:
    """One Explicit VR Little Endian element of a short VR."""
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def encode_file_meta(
    sop_class_uid: str | None, sop_instance_uid: str | None, transfer_syntax_uid: str
) -> bytes:
    """The file meta group pynetdicom writes for a received data set, byte for byte.

    As ``write_file_meta_info(fp, create_file_meta(...))`` encodes it; a missing value or
    one that is not plain ASCII goes through pydicom itself (and fails as it fails there).
    """
    if sop_class_uid is None or sop_instance_uid is None:
        return _pydicom_file_meta(sop_class_uid, sop_instance_uid, transfer_syntax_uid)
    try:
        body = (
            # (0002,0001) File Meta Information Version, OB: a long VR.
            struct.pack("<HH2sHL", 0x0002, 0x0001, b"OB", 0, 2)
            + b"\x00\x01"
            + _explicit(0x00020002, b"UI", _ui(sop_class_uid))
            + _explicit(0x00020003, b"UI", _ui(sop_instance_uid))
            + _explicit(0x00020010, b"UI", _ui(transfer_syntax_uid))
            + _explicit(0x00020012, b"UI", _ui(PYNETDICOM_IMPLEMENTATION_UID))
            + _explicit(0x00020013, b"SH", _sh(PYNETDICOM_IMPLEMENTATION_VERSION))
        )
    except UnicodeEncodeError:
        return _pydicom_file_meta(sop_class_uid, sop_instance_uid, transfer_syntax_uid)
    return _explicit(0x00020000, b"UL", struct.pack("<L", len(body))) + body


def _sh(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b" " if len(data) % 2 else data


def _pydicom_file_meta(
    sop_class_uid: str | None, sop_instance_uid: str | None, transfer_syntax: str
) -> bytes:
    meta: FileMetaDataset = create_file_meta(
        sop_class_uid=cast("UID", sop_class_uid),
        sop_instance_uid=cast("UID", sop_instance_uid),
        transfer_syntax=cast("UID", transfer_syntax),
    )
    buffer = DicomBytesIO()
    write_file_meta_info(buffer, meta)
    return buffer.getvalue()


def encode_plain_store_response(primitive: C_STORE) -> bytes | None:
    """The command set of a C-STORE response without optional fields, or ``None``.

    Implicit VR Little Endian, elements in tag order, as pynetdicom encodes it; ``None``
    when the response carries more than the fixed fields (error comment, offending element)
    or lacks one of them: pynetdicom encodes those.
    """
    if (
        primitive.MessageIDBeingRespondedTo is None
        or primitive.Status is None
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
        or not primitive.AffectedSOPClassUID
        or not primitive.AffectedSOPInstanceUID
    ):
        return None
    try:
        return encode_store_response(
            int(primitive.MessageIDBeingRespondedTo),
            str(primitive.AffectedSOPClassUID),
            str(primitive.AffectedSOPInstanceUID),
            int(primitive.Status),
        )
    except UnicodeEncodeError:
        return None


def encode_store_response(
    message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int
) -> bytes:
    """The command set of a C-STORE response with only the fixed fields, as pynetdicom encodes it.

    Raises
    ------
    UnicodeEncodeError
        When a UID is not ASCII.
    """
    body = (
        _implicit(0x00000002, _ui(sop_class_uid))
        + _implicit(0x00000100, struct.pack("<H", _C_STORE_RSP))
        + _implicit(0x00000120, struct.pack("<H", message_id))
        + _implicit(0x00000800, struct.pack("<H", _NO_DATA_SET))
        + _implicit(0x00000900, struct.pack("<H", status))
        + _implicit(0x00001000, _ui(sop_instance_uid))
    )
    return _implicit(0x00000000, struct.pack("<L", len(body))) + body


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """The fields of a plain C-STORE request's command set (PS3.7 9.3.1.1)."""

    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    priority: int
    move_originator_aet: str | None = None
    move_originator_message_id: int | None = None


#: The elements a C-STORE request may have and :func:`parse_store_request` reads:
#: tag -> fixed value length (``None``: a UID or AE title, of any length).
_STORE_RQ_ELEMENTS: dict[int, int | None] = {
    0x00000000: 4,  # Command Group Length (UL)
    0x00000002: None,  # Affected SOP Class UID
    0x00000100: 2,  # Command Field
    0x00000110: 2,  # Message ID
    0x00000700: 2,  # Priority
    0x00000800: 2,  # Command Data Set Type
    0x00001000: None,  # Affected SOP Instance UID
    0x00001030: None,  # Move Originator Application Entity Title
    0x00001031: 2,  # Move Originator Message ID
}
_IMPLICIT_HEADER = struct.Struct("<HHL")
_U16 = struct.Struct("<H")
_C_STORE_RQ = 0x0001


def parse_store_request(command: bytes) -> StoreRequest | None:
    """Read a C-STORE request's command set, or ``None`` when it is anything else.

    Decoding the command set with pydicom and building pynetdicom's request and response
    primitives, whose setters validate every UID, cost ~0.2 ms per instance. This reads
    the command set of a plain C-STORE request (Implicit VR Little Endian, PS3.7 6.3.1)
    with ``struct``: only the elements a C-STORE request has, each once and in order, a
    data set announced, the UIDs as pydicom decodes them (trailing NULs and spaces
    removed) and as pynetdicom accepts them (1 to 64 characters). Anything else, ``None``:
    pynetdicom decodes it, as before.
    """
    values: dict[int, bytes] = {}
    pos, end, previous = 0, len(command), -1
    while pos < end:
        if pos + 8 > end:
            return None
        group, element, length = _IMPLICIT_HEADER.unpack_from(command, pos)
        tag = group << 16 | element
        pos += 8
        if tag <= previous or tag not in _STORE_RQ_ELEMENTS or pos + length > end:
            return None
        fixed = _STORE_RQ_ELEMENTS[tag]
        if fixed is not None and length != fixed:
            return None
        values[tag] = command[pos : pos + length]
        pos += length
        previous = tag
    try:
        if (
            _U16.unpack(values[0x00000100])[0] != _C_STORE_RQ
            or _U16.unpack(values[0x00000800])[0] == _NO_DATA_SET
        ):
            return None
        sop_class = _plain_uid(values[0x00000002])
        sop_instance = _plain_uid(values[0x00001000])
        message_id = _U16.unpack(values[0x00000110])[0]
        priority = _U16.unpack(values[0x00000700])[0]
    except KeyError:
        return None
    if sop_class is None or sop_instance is None:
        return None
    originator = values.get(0x00001030)
    originator_id = values.get(0x00001031)
    if originator is not None and not originator.isascii():
        return None
    return StoreRequest(
        message_id=message_id,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        priority=priority,
        move_originator_aet=None if originator is None else originator.decode("ascii").strip(),
        move_originator_message_id=(
            None if originator_id is None else _U16.unpack(originator_id)[0]
        ),
    )


def _plain_uid(raw: bytes) -> str | None:
    """A UID value as pydicom decodes it, if it is a single value pynetdicom accepts."""
    if not raw.isascii() or b"\\" in raw:
        return None
    value = raw.decode("ascii").rstrip("\x00 ")
    return value if 0 < len(value) <= 64 else None


def _implicit(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value


class StreamingDIMSE(DIMSEServiceProvider):
    """pynetdicom 3.0.4's DIMSE provider, streaming C-STORE data sets (see the module)."""

    def __init__(self, assoc: Any) -> None:
        super().__init__(assoc)
        self.msg_queue = WakeableQueue()
        self.worker = BackgroundWorker()
        # The file the next data set streams into, made while the sender prepares it (see
        # prepare_next_file); guarded by _spare_lock, None once taken or closed.
        self._spare: tuple[int, str] | None = None
        self._spare_lock = threading.Lock()
        self._closed = False
        #: Serves a complete request in the reactor thread and returns ``True``, or returns
        #: ``False`` when the association thread must serve it (see
        #: ``EventDrivenAssociation._serve_in_reactor``); ``None``: always queue.
        self.serve_in_reactor: Callable[[int, Any], bool] | None = None
        #: Serves a plain C-STORE request whose data set streamed into a file without
        #: pynetdicom's primitives and returns ``True``, or returns ``False`` when it must
        #: go the usual way (see ``EventDrivenAssociation._store_directly``).
        self.store_directly: Callable[[int, StoreRequest, IncomingFile], bool] | None = None
        # The C-STORE request being received, when _read_store_request read its command set
        # (its command_set then is not decoded yet).
        self._store_request: StoreRequest | None = None
        # Requests put on msg_queue and not yet served by the association thread.
        self._queued = 0
        self._queued_lock = threading.Lock()

    def prepare_next_file(self) -> None:
        """Create the file for the next C-STORE data set now, unless one is ready.

        Creating a file in the spool took 0.1 ms, at times nearly 1 ms on a busy disk, in
        the reactor thread between the C-STORE request's command and its data set, while the
        sender waited. The worker makes it as soon as a data set is complete, after that data
        set's hashing (while the instance is checked and flushed), so it is usually ready
        when the next request arrives; when it is not, the reactor makes its own.
        """
        with self._spare_lock:
            if self._spare is not None or self._closed:
                return
        created: tuple[int, str] | None = create_empty_file()
        with self._spare_lock:
            if self._spare is None and not self._closed:
                self._spare, created = created, None
        if created is not None:
            _discard(created)

    def _take_spare(self) -> tuple[int, str] | None:
        with self._spare_lock:
            spare, self._spare = self._spare, None
        return spare

    def close(self) -> None:
        """End the worker and remove the unused file (once no messages arrive)."""
        self.worker.close()
        with self._spare_lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            _discard(spare)

    def discard_unfinished(self) -> None:
        """Remove the file of a data set whose last fragment never arrived.

        Called by the thread that writes the fragments once it has ended (an aborted or
        broken association): the instance was never answered, so its sender does not count
        it as stored. Without this its descriptor stayed open and its partial file stayed in
        the spool's ``incoming`` area until the next start.
        """
        incoming = self.streaming_file()
        if incoming is None:
            return
        cast(DIMSEMessage, self.message)._data_set_file = None
        LOGGER.info(
            "discarded the partial data set of an unanswered C-STORE (%d bytes written) "
            "at the end of the association",
            incoming.size,
        )
        incoming.discard()

    def receive_primitive(self, primitive: P_DATA) -> None:
        """Decode a P-DATA primitive; queue the DIMSE message once it is complete.

        pynetdicom 3.0.4's ``receive_primitive`` with :meth:`_decode` for the decoding.
        """
        if self.message is None:
            self.message = DIMSEMessage()
        message = self.message
        if self._decode(message, primitive):
            self._message_received(message)

    def streaming_file(self) -> IncomingFile | None:
        """The file the data set of the message being received streams into, if any.

        Set once the command set of a C-STORE request is complete, until its last data-set
        fragment has arrived (see :meth:`_decode`).
        """
        message = self.message
        if message is None:
            return None
        target = message._data_set_file
        return target if isinstance(target, IncomingFile) else None

    def data_set_received(self) -> None:
        """Finish the message whose last data-set fragment went to :meth:`streaming_file`.

        What :meth:`receive_primitive` does once :meth:`_decode` returned ``True``; for the
        reactor's direct P-DATA path (``EventDrivenDUL._stream_fragments``), which writes
        the fragments itself.
        """
        self._message_received(cast(DIMSEMessage, self.message))

    def _message_received(self, message: DIMSEMessage) -> None:
        """Hand a complete message on: the tail of pynetdicom 3.0.4's ``receive_primitive``."""
        if self._store_request is not None and self.assoc.get_handlers(evt.EVT_DIMSE_RECV):
            # Their handlers read the decoded command set.
            message.command_set = decode(message.encoded_command_set, True, True)
        if isinstance(message._data_set_file, IncomingFile):
            # A sender of one instance often sends more: have their file ready.
            self.worker.submit(self.prepare_next_file)
        evt.trigger(self.assoc, evt.EVT_DIMSE_RECV, {"message": message})
        context_id = cast(int, message.context_id)
        if self._stored_directly(context_id, message):
            self._reset(message)
            return
        try:
            d_primitive = message.message_to_primitive()
        except Exception as exc:
            LOGGER.error("Received an invalid DIMSE message")
            LOGGER.exception(exc)
            self.dul.event_queue.put("Evt19")
            return
        request: DimseServiceType | None = None
        if isinstance(d_primitive, C_CANCEL) and len(self.cancel_req) < 10:
            self.cancel_req[cast(int, d_primitive.MessageIDBeingRespondedTo)] = d_primitive
        elif isinstance(d_primitive, N_EVENT_REPORT) and d_primitive.is_valid_request:
            # As upstream: served at once in a thread of its own, not to block the DUL.
            threading.Thread(
                target=make_target(self.assoc._serve_request), args=(d_primitive, context_id)
            ).start()
        else:
            request = cast(DimseServiceType, d_primitive)
        self._reset(message)
        if request is not None:
            self._serve_or_queue(context_id, request)

    def _reset(self, message: DIMSEMessage) -> None:
        """As upstream (pynetdicom issue #41): drop the message, ready for the next one."""
        message.encoded_command_set = BytesIO()
        message.data_set = BytesIO()
        message._data_set_file = None
        message._data_set_path = None
        self.message = None
        self._store_request = None

    def _read_store_request(self, message: DIMSEMessage) -> StoreRequest | None:
        """The complete command set of ``message`` read as a plain C-STORE request, if it is
        one that :attr:`store_directly` may serve; ``None``: pydicom decodes it.

        Decoding a C-STORE request's command set with pydicom took ~85 µs per instance in
        the reactor thread, while the sender waited; :func:`parse_store_request` takes ~4.
        """
        if self.store_directly is None or not _config.STORE_RECV_CHUNKED_DATASET:
            return None
        request = parse_store_request(cast(BytesIO, message.encoded_command_set).getvalue())
        self._store_request = request
        return request

    def _stored_directly(self, context_id: int, message: DIMSEMessage) -> bool:
        """Serve a complete plain C-STORE request with :attr:`store_directly`, if allowed.

        Only while no queued request is unserved, so requests are still served in order.
        Otherwise the command set that :meth:`_read_store_request` read is decoded with
        pydicom now, for pynetdicom's primitives.
        """
        request, self._store_request = self._store_request, None
        if request is None:
            return False
        store = self.store_directly
        incoming = message._data_set_file
        if (
            store is not None
            and isinstance(incoming, IncomingFile)
            and self._in_order()
            and store(context_id, request, incoming)
        ):
            return True
        if "CommandField" not in message.command_set:
            message.command_set = decode(message.encoded_command_set, True, True)
        return False

    def send_store_response(self, context_id: int, encoded: bytes) -> bool:
        """Send an encoded C-STORE response command set (see :func:`encode_store_response`).

        Returns ``False``, sending nothing, when it does not fit one fragment of the peer's
        maximum PDU: pynetdicom then fragments the response's primitive.
        """
        max_pdu = self.maximum_pdu_size
        # As upstream, a fragment holds at most max_pdu - 6 bytes of the command set.
        if max_pdu and len(encoded) > max_pdu - 6:
            return False
        pdata = P_DATA()
        # One PDV: the last (and only) command fragment (PS3.8 E.2).
        pdata.presentation_data_value_list.append((context_id, b"\x03" + encoded))
        self.dul.send_pdu(pdata)
        return True

    def _serve_or_queue(self, context_id: int, request: DimseServiceType) -> None:
        """Serve ``request`` in this (the reactor's) thread if allowed, else queue it.

        Only while no queued request is unserved, so requests are still served in order.
        """
        # Only this thread queues requests: none can be queued between the look and serving.
        serve = self.serve_in_reactor
        if serve is not None and self._in_order() and serve(context_id, request):
            return
        with self._queued_lock:
            self._queued += 1
        self.msg_queue.put((context_id, request))

    def _in_order(self) -> bool:
        """Whether a request may be served now: no queued request is waiting before it."""
        with self._queued_lock:
            return self._queued == 0

    def queued_request_served(self) -> None:
        """Note that the association thread has served a request taken from ``msg_queue``."""
        with self._queued_lock:
            self._queued -= 1

    def _decode(self, message: DIMSEMessage, primitive: P_DATA) -> bool:
        """``DIMSEMessage.decode_msg`` of pynetdicom 3.0.4, streaming into an IncomingFile.

        Returns
        -------
        bool
            Whether the message is complete.
        """
        for context_id, data in primitive.presentation_data_value_list:
            # Message Control Header: bit 0 command/data set, bit 1 last fragment (PS3.8 E.2).
            control = data[0]
            if control & 1:
                message.encoded_command_set.write(data[1:])
                if not control & 2:
                    continue
                message.context_id = context_id
                request = self._read_store_request(message)
                if request is not None:
                    # pydicom decodes the command set only if it is needed after all (see
                    # _stored_directly).
                    message.__class__ = C_STORE_RQ
                    sop_class, sop_instance = request.sop_class_uid, request.sop_instance_uid
                else:
                    command = decode(message.encoded_command_set, True, True)
                    message.command_set = command
                    message.__class__ = _MESSAGE_TYPES[cast(int, command.CommandField)][1]
                    if command.CommandDataSetType == _NO_DATA_SET:
                        return True
                    if isinstance(message, C_STORE_RQ):
                        sop_class = command.AffectedSOPClassUID
                        sop_instance = command.AffectedSOPInstanceUID
                if _config.STORE_RECV_CHUNKED_DATASET and isinstance(message, C_STORE_RQ):
                    context = self.assoc._accepted_cx[context_id]
                    incoming = IncomingFile(
                        encode_file_meta(sop_class, sop_instance, context.transfer_syntax[0]),
                        worker=self.worker,
                        created=self._take_spare(),
                    )
                    message._data_set_file = cast(Any, incoming)
                    message._data_set_path = incoming.path
            else:
                target = message._data_set_file
                if target is not None:
                    # Always the IncomingFile made above. A view, not a copy: a fragment of a
                    # large data set is up to a PDU long.
                    cast(IncomingFile, target).write(memoryview(data)[1:])
                else:
                    cast(BytesIO, message.data_set).write(data[1:])
                if control & 2:
                    return True
        return False

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """Send a DIMSE message; a plain C-STORE response is encoded directly."""
        encoded = (
            encode_plain_store_response(primitive)
            if isinstance(primitive, C_STORE)
            # Someone watching sent messages gets them as pynetdicom builds them.
            and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT)
            else None
        )
        if encoded is None or not self.send_store_response(context_id, encoded):
            super().send_msg(primitive, context_id)
