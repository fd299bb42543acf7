"""Event-driven reactors for pynetdicom associations.

pynetdicom 3.0.4 polls: the DUL thread sleeps 1 ms whenever it finds nothing to do and the
association thread sleeps 1 ms before every look at its message queue. A C-STORE round trip
crosses both loops two or three times, so a sender waiting for each response gets at most a
few hundred instances per second however fast the handler is.

The classes here keep pynetdicom's state machine, queues and handlers and change little
more than *how the two loops wait*:

* :class:`EventDrivenDUL` waits in ``select()`` on the peer socket and a wake-up socket pair
  that :meth:`EventDrivenDUL.send_pdu` writes to, so it reacts to incoming bytes and to
  outgoing primitives at once, and sleeps up to :data:`IDLE_WAIT` when nothing happens.
  A P-DATA (a C-STORE response) that the state machine would only send is sent by the
  calling thread itself, without waking the reactor.
* :class:`EventDrivenAssociation` blocks on the DIMSE message queue with a short timeout
  instead of sleeping before each non-blocking look, uses
  :class:`~receiver.dimse.StreamingDIMSE`, lets the reactor thread serve a C-STORE it
  decoded itself when nothing is queued (no hand-off to the association thread and back),
  and hands a C-STORE of a SOP Class pynetdicom has no service for to the storage service
  instead of aborting the association.
* :class:`BulkReadSocket` reads a PDU with as few ``recv`` calls as the kernel allows
  instead of 4 KB at a time (a 500 KB instance took ~125 calls).
* :class:`EventDrivenRequestHandler` creates that association for each accepted
  connection, and :class:`ReceiverServer` sets ``TCP_NODELAY`` on accepted sockets.

Why subclass instead of setting knobs: the only settable knob, ``DULServiceProvider.
_run_loop_delay``, turns the DUL into a busy loop when lowered, and the association's 1 ms
sleep is hard-coded. Overriding ``run_reactor``/``send_pdu``/``stop_dul`` (public) and
``Association._run_reactor``/``_serve_request``, ``RequestHandler._create_association`` and
``AssociationSocket.recv`` (private or internal) ties this module to the pynetdicom release
it was written against, so :func:`fast_reactor_supported` checks the version and the
receiver falls back to the stock classes on any other one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

import pynetdicom
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import ServiceClass, StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class
from pynetdicom.transport import (
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)

from dicomflow.spool.records import PendingContent
from receiver.dimse import (
    IncomingFile,
    StoreRequest,
    StreamingDIMSE,
    WakeableQueue,
    encode_store_response,
)

LOGGER = logging.getLogger(__name__)

#: pynetdicom releases whose reactor loops these classes mirror.
SUPPORTED_PYNETDICOM = frozenset({"3.0.4"})
#: Longest idle wait of both loops: bounds how late timer expiry and shutdown are noticed.
IDLE_WAIT = 0.05
#: Longest wait of the association loop for a DIMSE message before it checks release/abort
#: (the reactor wakes it when one arrives, see EventDrivenDUL._wake_association).
ASSOCIATION_WAIT = 0.005
#: States in which a P-DATA request only sends its PDU (PS3.8 9.2: Sta6 DT-1, Sta8 AR-7).
_DATA_TRANSFER_STATES = frozenset({"Sta6", "Sta8"})
#: Longest P-DATA-TF PDU read into a reused buffer (see EventDrivenDUL._read_pdu_data);
#: longer ones, which a sender only sends when it ignores our maximum, go the usual way.
DIRECT_PDU_MAX = 4 << 20
#: Receive buffers kept per association: one being read while the worker hashes another.
KEPT_BUFFERS = 4
_P_DATA_TF = 0x04
#: PDU types pynetdicom knows (PS3.8 9.3.1); others are Evt19 before their body is read.
_KNOWN_PDU_TYPES = frozenset(range(0x01, 0x08))
_PDU_HEADER = struct.Struct(">BBL")
_PDV_LENGTH = struct.Struct(">L")
#: What pynetdicom answers when the EVT_C_STORE handler raises (StorageServiceClass.SCP).
_HANDLER_FAILED = 0xC211
#: Bound handlers of these events see every PDU or transition, so PDUs then go the usual way.
_PDU_WATCHING_EVENTS = (evt.EVT_DATA_RECV, evt.EVT_PDU_RECV, evt.EVT_FSM_TRANSITION)


def fast_reactor_supported() -> bool:
    """Whether the installed pynetdicom is a release the event-driven reactors mirror."""
    return pynetdicom.__version__ in SUPPORTED_PYNETDICOM


class EventDrivenDUL(DULServiceProvider):
    """A DUL service provider that waits on its sockets instead of sleeping 1 ms."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Held while the state machine acts and while a P-DATA is sent directly (see
        # _send_data_directly), so the state cannot change under a direct send.
        self._state_lock = threading.RLock()
        self._buffers = ReceiveBuffers()

    def wake(self) -> None:
        """Make the reactor look at its queues now."""
        # OSError: full (a wake-up is already pending) or closed (the reactor has ended).
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\x00")

    def send_pdu(self, primitive: Any) -> None:
        """Send a P-DATA at once if that is all the state machine would do, else queue it.

        A queued primitive wakes the reactor to send it.
        """
        if isinstance(primitive, P_DATA) and self._send_data_directly(primitive):
            return
        super().send_pdu(primitive)
        self.wake()

    def _send_data_directly(self, primitive: P_DATA) -> bool:
        """Send a P-DATA-TF PDU from the calling thread; ``False`` when it must be queued.

        In Sta6 (and Sta8) the state machine answers a P-DATA request only by sending the
        PDU and staying in its state (DT-1, AR-7 in PS3.8 9.2). Handing each C-STORE
        response to the reactor thread for that cost two thread switches and the GIL going
        back and forth. Anything else (other states, primitives still queued, a handler
        watching state transitions) goes through the queue and the state machine as before.
        """
        if self.assoc.get_handlers(evt.EVT_FSM_TRANSITION):
            return False
        with self._state_lock:
            if (
                self._kill_thread
                or self.to_provider_queue.queue
                or self.state_machine.current_state not in _DATA_TRANSFER_STATES
            ):
                return False
            self._send(P_DATA_TF(primitive))
        if not self.event_queue.empty():
            # A failed send queued Evt17 (transport closed): let the reactor act on it.
            self.wake()
        return True

    def _read_pdu_data(self) -> None:
        """Read one PDU as pynetdicom 3.0.4 does, or write a data-set PDU straight to its file.

        Per 500 KB instance pynetdicom copied the received bytes five times (joining the
        header and the body, ``bytes()`` of that, the PDU's body, each PDV, its value) into
        freshly allocated buffers, built PDU, PDV item and primitive objects and ran the state
        machine for each P-DATA-TF, before :class:`~receiver.dimse.StreamingDIMSE` wrote the
        fragments. When a P-DATA-TF can only carry data-set fragments of a C-STORE whose data
        set streams into a file (see :meth:`_direct_target`), its body is read into a reused
        buffer and :meth:`_stream_fragments` writes the fragments from it. Everything else,
        and a P-DATA-TF that turns out to hold anything unusual, is decoded and handed to the
        state machine as upstream does, with upstream's events and log messages on errors.
        """
        sock = cast(AssociationSocket, self.socket)
        try:
            header = sock.recv(6)
        except (OSError, TimeoutError) as exc:
            self._connection_lost(exc)
            return
        try:
            pdu_type, _, pdu_length = _PDU_HEADER.unpack(header)
        except struct.error:
            # Too short: the peer closed the connection.
            self.event_queue.put("Evt17")
            return
        if pdu_type not in _KNOWN_PDU_TYPES:
            LOGGER.error(f"Unknown PDU type received '0x{pdu_type:02X}'")
            self.event_queue.put("Evt19")
            return
        incoming = self._direct_target(pdu_type, pdu_length)
        if incoming is not None:
            buffer = self._buffers.take(pdu_length)
            if not self._recv_body(memoryview(buffer)[:pdu_length]):
                return
            if self._stream_fragments(incoming, buffer, pdu_length):
                return
            body: bytes | bytearray = buffer[:pdu_length]
            self._buffers.give_back(buffer)
        else:
            try:
                body = sock.recv(pdu_length)
            except (OSError, TimeoutError) as exc:
                self._connection_lost(exc)
                return
            if len(body) != pdu_length:
                self._short_pdu(len(body), pdu_length)
                return
        try:
            pdu, event = self._decode_pdu(header + body)
            self.event_queue.put(event)
        except Exception as exc:
            LOGGER.error("Unable to decode the received PDU data")
            LOGGER.exception(exc)
            self.event_queue.put("Evt19")
            return
        self._recv_pdu.put(pdu)

    def _connection_lost(self, exc: BaseException) -> None:
        """Report a read that failed mid-PDU as pynetdicom does (Evt17)."""
        LOGGER.error("Connection closed before the entire PDU was received")
        LOGGER.exception(exc)
        self.event_queue.put("Evt17")

    def _short_pdu(self, received: int, pdu_length: int) -> None:
        LOGGER.error(
            f"The received PDU is shorter than expected ({6 + received} of "
            f"{6 + pdu_length} bytes received)"
        )
        self.event_queue.put("Evt17")

    def _recv_body(self, view: memoryview) -> bool:
        """Fill ``view`` from the socket; ``False`` (Evt17 queued) when that failed."""
        sock = cast(BulkReadSocket, self.socket)
        try:
            received = sock.recv_into(view)
        except (OSError, TimeoutError) as exc:
            self._connection_lost(exc)
            return False
        if received != len(view):
            self._short_pdu(received, len(view))
            return False
        return True

    def _direct_target(self, pdu_type: int, pdu_length: int) -> IncomingFile | None:
        """The file a P-DATA-TF of this length may be written to directly, else ``None``.

        Only in Sta6, where the state machine answers a P-DATA-TF (Evt10) by handing its
        P-DATA to the DIMSE provider (DT-2) and staying in Sta6, with no event waiting before
        it and nobody watching PDUs or transitions, and only while a C-STORE data set streams
        into an :class:`~receiver.dimse.IncomingFile`.
        """
        if (
            pdu_type != _P_DATA_TF
            or pdu_length > DIRECT_PDU_MAX
            or self.state_machine.current_state != "Sta6"
            or not self.event_queue.empty()
            or not isinstance(self.socket, BulkReadSocket)
        ):
            return None
        dimse = self.assoc.dimse
        if not isinstance(dimse, StreamingDIMSE):
            return None
        assoc = self.assoc
        if any(assoc.get_handlers(event) for event in _PDU_WATCHING_EVENTS):
            return None
        return dimse.streaming_file()

    def _stream_fragments(self, incoming: IncomingFile, buffer: bytearray, length: int) -> bool:
        """Write the data-set fragments of a P-DATA-TF body; ``False``: decode it as usual.

        Does what DT-2 and :meth:`~receiver.dimse.StreamingDIMSE.receive_primitive` do with
        such a PDU, without the copies and objects. The body must be a well-formed list of
        PDVs (PS3.8 9.3.5.1: length, context ID, message control header, value) that are all
        data-set fragments, only the last of them possibly the last fragment; anything else
        (a command fragment, a PDV after the last fragment, an empty or malformed body) is
        left to pynetdicom, which decodes it, aborts on a malformed one, and so on, as before.
        """
        fragments: list[tuple[int, int]] = []
        last = False
        offset = 0
        while offset < length:
            if last or length - offset < 6:
                return False
            (item_length,) = _PDV_LENGTH.unpack_from(buffer, offset)
            end = offset + 4 + item_length
            # At least the context ID and the message control header; within the PDU.
            if item_length < 2 or end > length:
                return False
            control = buffer[offset + 5]
            if control & 1:
                return False
            last = bool(control & 2)
            fragments.append((offset + 6, end))
            offset = end
        if not fragments:
            return False
        view = memoryview(buffer)
        *others, (last_start, last_end) = fragments
        with self._state_lock:
            for start, end in others:
                incoming.write(view[start:end])
            # The worker may hash the fragments later (in order): the buffer is reused once
            # the last of them is hashed.
            incoming.write(
                view[last_start:last_end], released=partial(self._buffers.give_back, buffer)
            )
            if last:
                cast(StreamingDIMSE, self.assoc.dimse).data_set_received()
        return True

    def stop_dul(self) -> bool:
        """Stop the reactor if the state machine is idle (``Sta1``)."""
        if self.state_machine.current_state == "Sta1":
            self._kill_thread = True
            self.wake()
            while self.is_alive():
                time.sleep(0.001)
            return True
        return False

    def _wait_for_work(self) -> None:
        # poll, not select: select refuses descriptors from 1024 on (see BulkReadSocket.ready).
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        assoc_sock = cast("AssociationSocket | None", self.socket)
        raw = assoc_sock.socket if assoc_sock is not None else None
        if isinstance(raw, ssl.SSLSocket) and raw.pending():
            return
        try:
            if raw is not None and raw.fileno() >= 0:
                poller.register(raw, select.POLLIN)
            poller.poll(IDLE_WAIT * 1000)
        except (OSError, ValueError):
            # The peer socket was closed under us: the next loop reports Evt17.
            return
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def run_reactor(self) -> None:
        """Run the DUL loop of pynetdicom 3.0.4 with an event-driven idle wait."""
        try:
            self._run()
        finally:
            dimse = self.assoc.dimse
            if isinstance(dimse, StreamingDIMSE):
                try:
                    dimse.discard_unfinished()
                except OSError:
                    LOGGER.exception("removing the partial data set of an unanswered C-STORE")
            self._wake_r.close()
            self._wake_w.close()
            # The association thread ends once it sees this thread has ended.
            self._wake_association()

    def _wake_association(self) -> None:
        """Make the association thread look for a release or abort request now."""
        messages = self.assoc.dimse.msg_queue
        if isinstance(messages, WakeableQueue):
            messages.wake()

    def _run(self) -> None:
        self._idle_timer.start()
        sock = cast(AssociationSocket, self.socket)
        idle = False
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                idle = True
            if idle:
                self._wait_for_work()
            if self._kill_thread:
                break
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                # As upstream: either encode and send one primitive or read one PDU per loop.
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:
                self._abort_after(exc, sock)
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                idle = True
                continue
            try:
                with self._state_lock:
                    self.state_machine.do_action(event)
            except Exception as exc:
                # Upstream lets this end the thread with a traceback (a P-DATA value without
                # its control header does it) and leaves the peer waiting: abort instead.
                self._abort_after(exc, sock)
                return
            if self.to_user_queue.queue:
                # A release or abort indication for the association thread, which would
                # otherwise notice it only when its wait for a message ends.
                self._wake_association()
            # Nothing left to do now (the usual case once a message is complete and handed to
            # the association thread): wait in select(), which notices incoming bytes too,
            # instead of polling once more. The extra poll released the GIL to the association
            # thread and then waited to get it back, two context switches per message.
            # In Sta13 the next look closes the socket: no waiting there.
            idle = (
                self.event_queue.empty()
                and not self.to_provider_queue.queue
                and self.state_machine.current_state != "Sta13"
            )

    def _abort_after(self, exc: Exception, sock: AssociationSocket) -> None:
        """Abort the association after ``exc``, as pynetdicom's DUL does for a bad PDU.

        The A-ABORT goes out past the state machine, which may be in any state after an
        exception.
        """
        LOGGER.error("Exception in DUL reactor, aborting association")
        LOGGER.exception(exc)
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        sock.send(abort_pdu.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True


#: Stores a C-STORE request's data set: ``(association, Affected SOP Class UID, file, what
#: its writer knows of it)`` -> a status, or a failure status with an Error Comment.
StoreFunction = Callable[[Association, str, Path, PendingContent | None], "int | Dataset"]
#: An ``EVT_C_STORE`` handler and the function that does what it does without an event.
DirectStore = tuple[Callable[..., Any], StoreFunction]


class EventDrivenAssociation(Association):
    """An association whose acceptor loop blocks on the DIMSE queue instead of polling."""

    def __init__(self, ae: Any, mode: str) -> None:
        super().__init__(ae, mode)
        self.dul = EventDrivenDUL(self)
        self.dimse = StreamingDIMSE(self)
        self.dimse.serve_in_reactor = self._serve_in_reactor
        self.dimse.store_directly = self._store_directly
        #: Set by the server (see :class:`ReceiverServer`); ``None``: every C-STORE goes
        #: through pynetdicom's storage service.
        self.direct_store: DirectStore | None = None
        # The timeout setters push their values into the DUL's timers: re-apply them.
        self.acse_timeout = self.acse_timeout
        self.network_timeout = self.network_timeout

    def _serve_in_reactor(self, context_id: int, msg: Any) -> bool:
        """Serve a C-STORE request in the reactor thread that decoded it; ``False``: queue it.

        Handing each C-STORE to the association thread and its response back cost two
        thread switches per instance, and the GIL going back and forth while the three
        threads (reactor, association, background worker) worked on one instance. The sender
        waits for the response meanwhile, so the reactor has nothing else to read. Other
        requests, and C-STOREs while the association thread is paused (a handler using the
        association as an SCU) or ending, go through the queue as before; the caller queues
        every request while a queued one is unserved, so the order is kept.
        """
        if not isinstance(msg, C_STORE) or not self._reactor_may_serve():
            return False
        self._serve_request(msg, context_id)
        return True

    def _reactor_may_serve(self) -> bool:
        """Established, not ending, and the association thread not paused (see above)."""
        return not self._kill and self.is_established and self._reactor_checkpoint.is_set()

    def _store_directly(
        self, context_id: int, request: StoreRequest, incoming: IncomingFile
    ) -> bool:
        """Serve a plain C-STORE request as pynetdicom would, without its primitives.

        For a C-STORE whose data set streamed into ``incoming``, pynetdicom 3.0.4 builds the
        request primitive from the command set, then a response primitive, an event and a
        status check around the one ``EVT_C_STORE`` handler (``Association._serve_request``,
        ``StorageServiceClass.SCP``): ~0.2 ms per instance, while the sender waits. When the
        only handler bound is the one :attr:`direct_store` pairs with a store function, the
        request is for a storage (or unknown) SOP Class on an accepted context and nobody
        watches sent messages, this calls that function and sends a Success response
        encoded directly; anything else (another handler, a failure with an Error Comment)
        takes pynetdicom's primitives as before. Returns ``False`` to leave the request to
        the usual way, before anything was done.
        """
        direct = self.direct_store
        if (
            direct is None
            or not self._reactor_may_serve()
            or self._sent_release
            or context_id not in self._accepted_cx
            or request.sop_class_uid in self.acceptor.accepted_common_extended
            or self.get_handlers(evt.EVT_DIMSE_SENT)
            or uid_to_service_class(request.sop_class_uid)
            not in (StorageServiceClass, ServiceClass)
        ):
            return False
        handlers = self.get_handlers(evt.EVT_C_STORE)
        if not isinstance(handlers, tuple) or handlers[0] != direct[0]:
            return False
        dimse = cast(StreamingDIMSE, self.dimse)
        # As Association._serve_request and StorageServiceClass.SCP do around the handler.
        dimse.cancel_req = {}
        self._is_paused = True
        try:
            status: int | Dataset = direct[1](self, request.sop_class_uid, incoming.path, incoming)
        except Exception as exc:
            LOGGER.error("Exception in handler bound to 'evt.EVT_C_STORE'")
            LOGGER.exception(exc)
            status = _HANDLER_FAILED
        finally:
            incoming.close()
            with contextlib.suppress(OSError):
                os.unlink(incoming.name)
        if self.is_established:
            self._respond_to_store(context_id, request, status)
        self._is_paused = False
        dimse.cancel_req = {}
        return True

    def _respond_to_store(
        self, context_id: int, request: StoreRequest, status: int | Dataset
    ) -> None:
        """Send a C-STORE response: a plain status directly, anything else via pynetdicom."""
        dimse = cast(StreamingDIMSE, self.dimse)
        if isinstance(status, int) and dimse.send_store_response(
            context_id,
            encode_store_response(
                request.message_id, request.sop_class_uid, request.sop_instance_uid, status
            ),
        ):
            return
        response = C_STORE()
        response.MessageIDBeingRespondedTo = request.message_id
        response.AffectedSOPClassUID = request.sop_class_uid
        response.AffectedSOPInstanceUID = request.sop_instance_uid
        response = StorageServiceClass(self).validate_status(status, response)
        dimse.send_msg(response, context_id)

    def _abort_blocking(self, block: bool = True) -> None:
        """Abort; from the reactor thread without waiting for that thread to end.

        A request served in the reactor thread (see :meth:`_serve_in_reactor`) that aborts
        (an invalid context, a failing service) would otherwise wait for itself forever.
        As when a handler aborts in pynetdicom, the A-ABORT is queued and the reactor sends
        it once the request returns.
        """
        if threading.current_thread() is self.dul:
            block = False
        super()._abort_blocking(block)

    def _serve_request(self, msg: Any, context_id: int) -> None:
        """Serve a request; a C-STORE of a SOP Class no service knows goes to storage.

        pynetdicom aborts the association when a C-STORE names a SOP Class UID it has no
        service for (a private or malformed one: dcmsend takes it from the data set, e.g.
        '31'), and every instance after it is lost to the sender. The storage service
        answers it instead: the receiver's handler refuses that one instance with a status.
        """
        if (
            isinstance(msg, C_STORE)
            and msg.is_valid_request
            and not self._sent_release
            and uid_to_service_class(str(msg.AffectedSOPClassUID)) is ServiceClass
            and context_id in self._accepted_cx
        ):
            # As pynetdicom 3.0.4's _serve_request does around a service class's SCP().
            self.dimse.cancel_req = {}
            self._is_paused = True
            try:
                StorageServiceClass(self).SCP(msg, self._accepted_cx[context_id])
            except Exception as exc:
                LOGGER.exception(exc)
                self.abort()
                return
            self._is_paused = False
            self.dimse.cancel_req = {}
            return
        super()._serve_request(msg, context_id)

    def _run_reactor(self) -> None:
        """The acceptor loop of pynetdicom 3.0.4, waiting on the message queue."""
        try:
            self._serve_until_end()
        finally:
            cast(StreamingDIMSE, self.dimse).close()

    def _serve_until_end(self) -> None:
        self._is_paused = False
        while not self._kill:
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            # Woken by the reactor when a release or abort request arrives.
            item = cast(WakeableQueue, self.dimse.msg_queue).get_or_wake(ASSOCIATION_WAIT)
            context_id, msg = item if item is not None else (None, None)
            if msg:
                try:
                    self._serve_request(msg, cast(int, context_id))
                finally:
                    cast(StreamingDIMSE, self.dimse).queued_request_served()

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                LOGGER.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                LOGGER.info("Association Aborted")
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                LOGGER.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return


class ReceiveBuffers:
    """Buffers for P-DATA-TF bodies, reused so their pages stay mapped.

    A fresh buffer of a PDU's length (up to 1 MB) is mapped memory that the first write
    faults in page by page; a reused one was faulted in already. A buffer is given back
    once the worker has hashed the fragments in it, from the worker thread: ``deque``'s
    ``append`` and ``pop`` are atomic.
    """

    def __init__(self, keep: int = KEPT_BUFFERS) -> None:
        self._free: deque[bytearray] = deque()
        self._keep = keep
        # Every buffer is made as long as the longest body seen: the last PDU of a data set
        # is usually shorter than the others, and a buffer that short would not be reused.
        self._size = 0

    def take(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes."""
        self._size = max(self._size, size)
        with contextlib.suppress(IndexError):
            while True:
                buffer = self._free.pop()
                if len(buffer) >= size:
                    return buffer
        return bytearray(self._size)

    def give_back(self, buffer: bytearray) -> None:
        """Keep ``buffer`` for :meth:`take` (no views of it may be in use any more)."""
        if len(self._free) < self._keep:
            self._free.append(buffer)


class BulkReadSocket(AssociationSocket):
    """An association socket that reads into one buffer with as few calls as possible."""

    @property
    def ready(self) -> bool:
        """Whether data can be read now, as pynetdicom 3.0.4's, for any descriptor number.

        pynetdicom asks ``select.select``, which refuses descriptors from 1024 on with an
        error that it takes for a closed connection (Evt17): a receiver holding that many
        files (manifests of open batches, incoming files, other associations) dropped every
        new association before it was negotiated. ``poll`` has no such limit.
        """
        sock = self.socket
        if sock is None or self._is_connected is False:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            # Buffered by the SSL layer, unseen by poll (pynetdicom issue #528).
            return True
        poller = select.poll()
        try:
            poller.register(sock, select.POLLIN)
            events = poller.poll(0)
        except (OSError, ValueError):
            # Evt17: Transport connection closed
            self.event_queue.put("Evt17")
            return False
        if any(mask & select.POLLNVAL for _fd, mask in events):
            self.event_queue.put("Evt17")
            return False
        return bool(events)

    def recv_into(self, view: memoryview) -> int:
        """Fill ``view`` from the socket; return the bytes read (fewer: the peer closed it).

        Blocks like :meth:`recv`; timeouts and errors propagate to the caller.
        """
        sock = cast(socket.socket, self.socket)
        nr_bytes = len(view)
        nr_read = 0
        while nr_read < nr_bytes:
            count = sock.recv_into(view[nr_read:], nr_bytes - nr_read)
            if not count:
                break
            nr_read += count
        return nr_read

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` from the socket (fewer only when the peer closed it).

        Blocks like the parent's; timeouts and errors propagate to the caller as there.
        """
        buffer = bytearray(nr_bytes)
        with memoryview(buffer) as view:
            nr_read = self.recv_into(view)
        # Fewer: the connection was broken; return what arrived, as the parent does.
        del buffer[nr_read:]
        return buffer


def copy_contexts(contexts: list[PresentationContext]) -> list[PresentationContext]:
    """Copies of presentation contexts for one association, as ``deepcopy`` made them.

    pynetdicom deep-copies the server's contexts for every association so that one
    association cannot change another's. With every storage SOP class and transfer syntax
    (~200 contexts, ~9000 UIDs) that took ~40 ms per association, ~0.2 ms per instance of a
    200-instance association, before the first byte of data was read. A context's fields are
    immutable values (UIDs are strings) except its transfer syntax list, so copying the
    fields and that list keeps the associations apart just as well.
    """
    copies = []
    for context in contexts:
        copy = PresentationContext.__new__(PresentationContext)
        copy.__dict__.update(context.__dict__)
        copy._transfer_syntax = list(context._transfer_syntax)
        copies.append(copy)
    return copies


class EventDrivenRequestHandler(RequestHandler):
    """Creates an :class:`EventDrivenAssociation` for each accepted connection."""

    def _create_association(self) -> Association:
        assoc = EventDrivenAssociation(self.ae, "acceptor")
        assoc._server = self.server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        assoc.set_socket(BulkReadSocket(assoc, client_socket=self.request))
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = copy_contexts(self.server.contexts)
        assoc.requestor.address_info = self.remote
        assoc.direct_store = getattr(self.server, "direct_store", None)
        for event, handlers in self.server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler in cast(list[tuple[Any, Any]], handlers):
                    assoc.bind(event, handler[0], handler[1])
        return assoc


class ReceiverServer(ThreadedAssociationServer):
    """A threaded association server that turns Nagle's algorithm off on each connection.

    Without ``TCP_NODELAY`` a small C-STORE response waits for the sender's delayed ACK,
    which caps a synchronous sender at a few dozen instances per second on loopback.
    """

    #: Given to each association (see :meth:`EventDrivenAssociation._store_directly`).
    direct_store: DirectStore | None = None

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept a connection and set ``TCP_NODELAY`` on it."""
        client, address = super().get_request()
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            LOGGER.warning("could not set TCP_NODELAY on the connection from %s", address)
        return client, address

    def shutdown(self) -> None:
        """Stop serving and close the listening socket.

        Unlike the parent's, this does not expect the server in ``AE._servers``: servers
        made with ``AE.make_server`` are not registered there.
        """
        socketserver.BaseServer.shutdown(self)
        self.server_close()
