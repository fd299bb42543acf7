"""One sender session into batches: the path every door's instances take.

A session is what one sender hands over in one go: a DIMSE association, a STOW-RS request, an
import. Each instance is checked (:func:`~dicomflow.intake.checks.inspect_instance`) and made
durable in the session's current batch, or kept in the problem area with its reason; a batch
closes when the session ends, when it reaches its limits, or after the idle time. Closing a
batch puts it in the spool's outbox: the hand-over, from where the dispatcher gives it to
Airflow. No door talks to Airflow itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from dicomflow.dicom.instance import Instance
from dicomflow.intake.admission import Destination
from dicomflow.intake.checks import InstanceRejectedError, StoreStatus, inspect_instance
from dicomflow.spool.records import CloseReason, Origin, PendingContent
from dicomflow.spool.store import Batch, BatchClosedError, RecoveryReport, Spool

__all__ = ["IntakeSession", "recover_spool"]

LOGGER = logging.getLogger(__name__)


@dataclass
class IntakeSession:
    """Instances from one sender session into batches of one project and dataset.

    A batch is opened on the first accepted instance and rolled over when it is closed by
    the idle timeout or its limits; :meth:`close` closes the current one.

    Attributes
    ----------
    spool
        Where the batches go.
    destination
        The project and dataset, as admission accepted them.
    origin
        Who sends them.
    batch_ids
        Every batch the session opened, in order.
    stored, failed, bytes
        Instances accepted, instances refused, bytes accepted.
    """

    spool: Spool
    destination: Destination
    origin: Origin
    batch_ids: list[str] = field(default_factory=list)
    stored: int = 0
    failed: int = 0
    bytes: int = 0
    _batch: Batch | None = None

    @property
    def project(self) -> str:
        """The session's project."""
        return self.destination.project

    @property
    def dataset(self) -> str:
        """The session's dataset."""
        return self.destination.dataset

    def store(self, source: Path, *, move: bool, content: PendingContent | None = None) -> Instance:
        """Check an instance file and make it durable in the current batch.

        Parameters
        ----------
        source
            A DICOM Part 10 file.
        move
            Take the file away instead of copying it.
        content
            What the writer of ``source`` knows of its bytes (hash, size, first bytes): the
            file is then not read again. The header is checked before the hash is asked for.

        Returns
        -------
        Instance
            The durable record, once the sender may be told "stored".

        Raises
        ------
        InstanceRejectedError
            When the instance is refused (a bad header, a disk that refuses, a failed hash);
            it has been kept in the problem area.
        """
        try:
            instance = inspect_instance(source, content.head if content is not None else None)
        except InstanceRejectedError as exc:
            self.reject(source, exc.reason, move=move)
            raise
        while True:
            batch = self._current()
            try:
                entry = batch.add(source, instance, move=move, content=content)
            except BatchClosedError:
                continue
            except Exception as exc:
                if isinstance(exc, OSError):
                    LOGGER.error("cannot write to the spool: %s", exc)
                    reason = f"spool write failed: {exc.strerror or exc}"
                    status = StoreStatus.OUT_OF_RESOURCES
                else:  # e.g. the writer's background hashing failed
                    LOGGER.error("cannot record an instance: %s", exc)
                    reason = f"receiver error: {exc}"
                    status = StoreStatus.PROCESSING_FAILURE
                try:
                    self.reject(source, reason, move=move)
                except OSError:
                    LOGGER.error("cannot keep the instance in the problem area either")
                raise InstanceRejectedError(
                    reason, status, instance.sop_class_uid, instance.sop_instance_uid
                ) from exc
            self.stored += 1
            self.bytes += entry.size
            return entry

    def reject(self, source: Path, reason: str, *, move: bool) -> None:
        """Count an instance as refused and keep it in the problem area with ``reason``.

        Raises
        ------
        OSError
            When the problem area cannot take it either.
        """
        self.failed += 1
        self.spool.keep_problem(source, reason, self.origin, self.project, move=move)

    @property
    def batch(self) -> Batch | None:
        """The batch instances go into now (``None`` before the first, or once closed)."""
        if self._batch is None or self._batch.closed:
            return None
        return self._batch

    def continue_batch(self, batch: Batch) -> None:
        """Put the next instances into ``batch``, an earlier session's, while it stays open.

        ``batch`` must be of the session's project and dataset, and no other session may add
        to it (see :meth:`Batch.resume`).
        """
        if (batch.project, batch.dataset) != (self.project, self.dataset):
            raise ValueError(
                f"batch {batch.id} is of {batch.project}/{batch.dataset}, "
                f"not {self.project}/{self.dataset}"
            )
        self._batch = batch
        self.batch_ids.append(batch.id)

    def _current(self) -> Batch:
        batch = self.batch
        if batch is None:
            batch = self._batch = self.spool.open_batch(self.project, self.dataset, self.origin)
            self.batch_ids.append(batch.id)
        return batch

    def close(self, reason: CloseReason) -> None:
        """Close the current batch, if any (it goes to the outbox)."""
        if self._batch is not None:
            self._batch.close(reason)


def recover_spool(spool: Spool, *, full: bool = False) -> RecoveryReport:
    """Close the batches that dead processes left open (see :meth:`Spool.recover`).

    The files are judged by the same checks as on arrival.
    """
    return spool.recover(inspect_instance, full=full)
