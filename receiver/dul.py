"""pynetdicom's DUL service provider (an association's reactor thread), event-driven.

pynetdicom 3.0.4 polls: the DUL thread sleeps 1 ms whenever it finds nothing to do and the
association thread sleeps 1 ms before every look at its message queue. A C-STORE round trip
crosses both loops two or three times, so a sender waiting for each response gets at most a
few hundred instances per second however fast the handler is.

:class:`EventDrivenDUL` keeps pynetdicom's state machine, queues and handlers and changes
little more than *how its loop waits* (the association thread's loop:
:mod:`receiver.association`):

* it waits in ``poll()`` on the peer socket and a wake-up socket pair that
  :meth:`EventDrivenDUL.send_pdu` writes to, so it reacts to incoming bytes and to
  outgoing primitives at once, and sleeps up to :data:`IDLE_WAIT` when nothing happens;
* a P-DATA (a C-STORE response) that the state machine would only send is sent by the
  calling thread itself, without waking the reactor;
* a P-DATA-TF that carries only data-set fragments of a C-STORE whose data set streams into
  a file is read into a reused buffer and its fragments written from there (see
  :meth:`EventDrivenDUL._read_pdu_data`).

Why subclass instead of setting knobs: the only settable knob, ``DULServiceProvider.
_run_loop_delay``, turns the DUL into a busy loop when lowered. Overriding ``run_reactor``,
``send_pdu``, ``stop_dul`` (public) and ``_read_pdu_data`` (private) ties this module to
the pynetdicom release it was written against: see :mod:`receiver.overrides`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import threading
import time
from functools import partial
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket

from receiver.dimse import StreamingDIMSE, WakeableQueue
from receiver.incoming import IncomingFile
from receiver.transport import BulkReadSocket, ReceiveBuffers

__all__ = ["DIRECT_PDU_MAX", "IDLE_WAIT", "EventDrivenDUL"]

LOGGER = logging.getLogger(__name__)

#: Longest idle wait of the reactor loop: bounds how late timer expiry and shutdown are
#: noticed.
IDLE_WAIT = 0.05
#: States in which a P-DATA request only sends its PDU (PS3.8 9.2: Sta6 DT-1, Sta8 AR-7).
_DATA_TRANSFER_STATES = frozenset({"Sta6", "Sta8"})
#: Longest P-DATA-TF PDU read into a reused buffer (see EventDrivenDUL._read_pdu_data);
#: longer ones, which a sender only sends when it ignores our maximum, go the usual way.
DIRECT_PDU_MAX = 4 << 20
_P_DATA_TF = 0x04
#: PDU types pynetdicom knows (PS3.8 9.3.1); others are Evt19 before their body is read.
_KNOWN_PDU_TYPES = frozenset(range(0x01, 0x08))
_PDU_HEADER = struct.Struct(">BBL")
_PDV_LENGTH = struct.Struct(">L")
#: Bound handlers of these events see every PDU or transition, so PDUs then go the usual way.
_PDU_WATCHING_EVENTS = (evt.EVT_DATA_RECV, evt.EVT_PDU_RECV, evt.EVT_FSM_TRANSITION)


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
        into an :class:`~receiver.incoming.IncomingFile`.
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
