"""A sender's stream of small associations, gathered into one batch.

Scanners that send each image as it is reconstructed, autorouters and per-file scripts open
an association per instance. Closed at each release, every instance would be a batch of its
own: a durable open and close, an announcement, a share of a DAG run. Instead, once a sender
(peer host, project and dataset: the called and calling AE titles) opens an association within
``receiver.stream_join_seconds`` of its last release, that association's batch is left open
at release for the sender's next one to continue, and closes when the stream pauses (no next
association in time, reason ``sender's stream paused``), at the batch limits, or once it has
been open ``receiver.stream_batch_seconds``.

A sender's first association is no stream: its batch closes at release, so a lone sender's
instances are not held back. Associations that stored nothing (a C-ECHO before each send) do
not count as releases. Every instance is acknowledged only once it is durable in its batch,
as always; a batch left open by a receiver that dies is closed by recovery.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dicomflow.spool.store import Batch

__all__ = ["Sender", "SenderStreams"]


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends a stream: the peer's host, and the project and dataset it sends to."""

    host: str
    project: str
    dataset: str


@dataclass(slots=True)
class _Stream:
    released_at: float
    #: The batch left open for the sender's next association, if any.
    batch: Batch | None = None


class SenderStreams:
    """The receiver's memory of each sender's last release and the batch it left open.

    Parameters
    ----------
    join_seconds
        An association opened within this long after its sender's last release continues
        the stream; ``0`` turns joining off (every association's batch closes at release).
    batch_seconds
        A stream's batch is not left open once it has been open this long.
    clock
        Monotonic seconds.
    """

    def __init__(
        self,
        join_seconds: float,
        batch_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.join_seconds = join_seconds
        self.batch_seconds = batch_seconds
        self._clock = clock
        self._streams: dict[Sender, _Stream] = {}
        self._lock = threading.Lock()

    def begin(self, sender: Sender) -> tuple[bool, Batch | None]:
        """Note a new association of ``sender``.

        Returns
        -------
        streaming : bool
            Whether the association continues the sender's stream.
        batch : Batch or None
            The open batch it continues (taken: no other association gets it), if any.
        """
        if self.join_seconds <= 0:
            return False, None
        now = self._clock()
        with self._lock:
            self._forget(now)
            stream = self._streams.get(sender)
            if stream is None:
                return False, None
            batch, stream.batch = stream.batch, None
        if batch is not None and not batch.resume():
            batch = None
        return True, batch

    def end(self, sender: Sender, batch: Batch | None, *, streaming: bool) -> bool:
        """Note the release of an association of ``sender`` that put instances in ``batch``.

        Returns ``True`` when ``batch`` is left open for the sender's next association (it
        then closes by itself, see :meth:`~dicomflow.spool.store.Batch.linger`), ``False``
        when the caller closes it.
        """
        if self.join_seconds <= 0 or batch is None:
            return False
        keep = streaming and batch.age() < self.batch_seconds
        now = self._clock()
        with self._lock:
            stream = self._streams.setdefault(sender, _Stream(now))
            stream.released_at = now
            if keep and stream.batch is not None and not stream.batch.closed:
                keep = False  # one batch left open per sender: a concurrent one closes
            if keep:
                stream.batch = batch
                batch.linger(self.join_seconds)
        return keep

    def _forget(self, now: float) -> None:
        # Held under the lock. A sender's memory lasts as long as it can still join.
        # A batch still referenced here closes by its own linger, which ends no later.
        for sender in [
            s for s, st in self._streams.items() if now - st.released_at > self.join_seconds
        ]:
            del self._streams[sender]
