"""pynetdicom's Association (an association's own thread), event-driven, storing cheaply.

pynetdicom 3.0.4's association thread sleeps 1 ms before every look at its message queue
(hard-coded, no knob), and hands every C-STORE through request and response primitives, an
event and a status check around the one handler. :class:`EventDrivenAssociation` keeps
pynetdicom's services and handlers and:

* blocks on the DIMSE message queue with a short timeout instead of sleeping before each
  non-blocking look, and is woken by the reactor when a release or abort request arrives
  (see :class:`~receiver.dimse.WakeableQueue`);
* uses :class:`~receiver.dul.EventDrivenDUL` and :class:`~receiver.dimse.StreamingDIMSE`;
* lets the reactor thread serve a C-STORE it decoded itself when nothing is queued (no
  hand-off to the association thread and back), and a plain one without pynetdicom's
  primitives when the server allows it (see :meth:`EventDrivenAssociation._store_directly`);
* hands a C-STORE of a SOP Class pynetdicom has no service for to the storage service
  instead of aborting the association.

Overriding ``_run_reactor``, ``_serve_request`` and ``_abort_blocking`` (private) ties this
module to the pynetdicom release it was written against: see :mod:`receiver.overrides`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.service_class import ServiceClass, StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from dicomflow.spool.records import PendingContent
from receiver.dimse import StreamingDIMSE, WakeableQueue
from receiver.dul import EventDrivenDUL
from receiver.encoding import StoreRequest, encode_store_response
from receiver.incoming import IncomingFile

__all__ = ["ASSOCIATION_WAIT", "DirectStore", "EventDrivenAssociation", "StoreFunction"]

LOGGER = logging.getLogger(__name__)

#: Longest wait of the association loop for a DIMSE message before it checks release/abort
#: (the reactor wakes it when one arrives, see EventDrivenDUL._wake_association).
ASSOCIATION_WAIT = 0.005
#: What pynetdicom answers when the EVT_C_STORE handler raises (StorageServiceClass.SCP).
_HANDLER_FAILED = 0xC211


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
