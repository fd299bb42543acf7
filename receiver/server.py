"""The server side of pynetdicom's transport: accepted connections, one association each.

* :class:`ReceiverServer` sets ``TCP_NODELAY`` on accepted sockets and holds the store
  function each association may call directly (see
  :meth:`receiver.association.EventDrivenAssociation._store_directly`).
* :class:`EventDrivenRequestHandler` creates an
  :class:`~receiver.association.EventDrivenAssociation` on a
  :class:`~receiver.transport.BulkReadSocket` for each accepted connection, with its
  presentation contexts copied by :func:`copy_contexts`.

:mod:`receiver.app` uses this request handler only where
:func:`receiver.overrides.fast_reactor_supported` says so, pynetdicom's own elsewhere.
"""

from __future__ import annotations

import logging
import socket
import socketserver
from datetime import datetime
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from receiver.association import DirectStore, EventDrivenAssociation
from receiver.transport import BulkReadSocket

__all__ = ["EventDrivenRequestHandler", "ReceiverServer", "copy_contexts"]

LOGGER = logging.getLogger(__name__)


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

    #: Given to each association (see
    #: :meth:`~receiver.association.EventDrivenAssociation._store_directly`).
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
