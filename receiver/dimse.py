"""pynetdicom's DIMSE provider, streaming C-STORE data sets into the spool and answering cheaply.

Per small instance, pynetdicom 3.0.4 spent more time in its own Python than the receiver
spent making the instance durable: it builds and encodes a pydicom file meta data set and a
``NamedTemporaryFile`` for every C-STORE, flushes that buffered file after every fragment,
and builds, validates and encodes a pydicom command data set for every response. The
receiver then read each file twice more, to hash it and to check its header.

:class:`StreamingDIMSE` keeps pynetdicom's message handling and changes these things:

* a C-STORE data set streams into an :class:`~receiver.incoming.IncomingFile` in the
  spool's ``incoming`` area, hashed as it arrives, its file meta encoded directly (see
  :mod:`receiver.incoming` and :func:`~receiver.encoding.encode_file_meta`);
* the association's :class:`~receiver.incoming.BackgroundWorker` hashes large fragments
  and creates the file for the next data set while the sender prepares it;
* a plain C-STORE request's command set is read with ``struct`` and a plain C-STORE
  response (no error comment or offending element) is encoded directly (see
  :mod:`receiver.encoding`);
* everything else is done by the parent, as before.

Its message queue is a :class:`WakeableQueue`, so that the association thread waiting on it
can be woken when a release or an abort request arrives.

The overridden ``receive_primitive`` mirrors pynetdicom 3.0.4's ``receive_primitive`` and
``DIMSEMessage.decode_msg``; like the reactors it is used only on that release (see
:func:`receiver.overrides.fast_reactor_supported`, and :mod:`receiver.overrides` for every
pynetdicom method it overrides or mirrors).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from io import BytesIO
from typing import Any, cast

from pynetdicom import _config, evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import _MESSAGE_TYPES, C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_CANCEL, C_STORE, N_EVENT_REPORT, DimseServiceType
from pynetdicom.dsutils import decode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.utils import make_target

from receiver.encoding import (
    NO_DATA_SET,
    StoreRequest,
    encode_file_meta,
    encode_plain_store_response,
    parse_store_request,
)
from receiver.incoming import BackgroundWorker, IncomingFile, create_empty_file, remove_empty_file

__all__ = ["StreamingDIMSE", "WakeableQueue"]

LOGGER = logging.getLogger(__name__)


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
            remove_empty_file(created)

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
            remove_empty_file(spare)

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
        the reactor thread, while the sender waited;
        :func:`~receiver.encoding.parse_store_request` takes ~4.
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
        """Send an encoded C-STORE response command set.

        Returns ``False``, sending nothing, when it does not fit one fragment of the peer's
        maximum PDU: pynetdicom then fragments the response's primitive. The command set
        comes from :func:`~receiver.encoding.encode_store_response`.
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
                    if command.CommandDataSetType == NO_DATA_SET:
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
