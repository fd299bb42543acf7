"""The association's socket and receive buffers: PDUs read with few calls and few copies.

* :class:`BulkReadSocket` reads a PDU with as few ``recv`` calls as the kernel allows
  instead of 4 KB at a time (a 500 KB instance took ~125 calls), and asks ``poll`` rather
  than ``select`` whether data is waiting, so it works for any descriptor number.
* :class:`ReceiveBuffers` keeps the buffers the reactor reads P-DATA-TF bodies into (see
  :meth:`receiver.dul.EventDrivenDUL._read_pdu_data`), so their pages stay mapped.

The server gives each accepted connection a :class:`BulkReadSocket` (see
:mod:`receiver.server`); the pynetdicom members it overrides are listed in
:mod:`receiver.overrides`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
from collections import deque
from typing import cast

from pynetdicom.transport import AssociationSocket

__all__ = ["KEPT_BUFFERS", "BulkReadSocket", "ReceiveBuffers"]

#: Receive buffers kept per association: one being read while the worker hashes another.
KEPT_BUFFERS = 4


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


#: Linux's option to acknowledge at once rather than after up to 40 ms (absent elsewhere).
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class BulkReadSocket(AssociationSocket):
    """An association socket that reads into one buffer with as few calls as possible.

    It also acknowledges what it reads at once (``TCP_QUICKACK``). A sender that leaves
    Nagle's algorithm on (dcmtk's tools unless ``TCP_NODELAY=1`` is in their environment,
    and many modalities) holds the last short segment of each data set until the previous
    one is acknowledged, and Linux delays that acknowledgement by up to 40 ms: such a
    sender managed some 25 instances per second. The kernel leaves quick-ack mode by
    itself, so the option is set again after every read.
    """

    def _ack_now(self, sock: socket.socket) -> None:
        if _TCP_QUICKACK is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

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
            # A sender may be holding the rest until this part is acknowledged.
            self._ack_now(sock)
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
