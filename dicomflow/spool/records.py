"""Typed records of the spool: batch states, origins, batch and problem listings.

Light to import (no DICOM library): the CLI reads them to print its choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


class BatchState(StrEnum):
    """Where a batch is in its life; each state is a fact on disk (a marker file)."""

    #: Receiving instances (no ``closed.json``).
    OPEN = "open"
    #: Closed and waiting to be handed to Airflow (``closed.json``, no ``triggered.json``).
    PENDING = "pending"
    #: A DAG run exists for it (``triggered.json``).
    TRIGGERED = "triggered"
    #: Its run failed (``failed.json``: the step and why); a retry makes it triggered again.
    FAILED = "failed"
    #: Processed; the processing DAG wrote ``done.json``.
    DONE = "done"


class CloseReason(StrEnum):
    """Why a batch was closed."""

    RELEASED = "association released"
    ABORTED = "association aborted"
    REQUEST_END = "request finished"
    IDLE = "idle timeout"
    #: A sender's stream of associations paused (see ``receiver.stream_join_seconds``).
    STREAM_END = "sender's stream paused"
    MAX_INSTANCES = "maximum instances reached"
    MAX_BYTES = "maximum bytes reached"
    RECOVERED = "recovered after restart"
    SHUTDOWN = "receiver stopped"
    IMPORT_END = "import finished"


class Door(StrEnum):
    """How instances entered the platform."""

    DIMSE = "dimse"
    STOW = "stow-rs"
    #: ``dicomflow import`` from files on the platform's machine.
    IMPORT = "import"
    #: The Data Upload page, imported by the DAG import-dicoms-from-data-upload.
    UPLOAD = "upload"
    #: A watched folder (``watch.folders``), imported by the stack's watcher.
    WATCH = "watch"


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent the instances of a batch.

    Attributes
    ----------
    door
        DIMSE C-STORE or STOW-RS.
    peer
        ``host:port`` of the sender.
    calling_ae
        Calling AE title as sent (DIMSE), empty for STOW-RS.
    called_ae
        Called AE title as sent (DIMSE) or the project path segment (STOW-RS).
    """

    door: Door
    peer: str
    calling_ae: str = ""
    called_ae: str = ""

    def as_dict(self) -> dict[str, str]:
        """A JSON-able mapping."""
        return {
            "door": self.door.value,
            "peer": self.peer,
            "calling_ae": self.calling_ae,
            "called_ae": self.called_ae,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Origin:
        """Inverse of :meth:`as_dict`."""
        return cls(
            Door(data["door"]), data["peer"], data.get("calling_ae", ""), data.get("called_ae", "")
        )


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A batch as listed by ``dicomflow batches``."""

    id: str
    state: BatchState
    project: str
    dataset: str
    origin: Origin
    path: Path
    created_at: str
    instances: int
    bytes: int
    closed_at: str | None = None
    close_reason: str | None = None
    triggered_at: str | None = None
    run_id: str | None = None
    done_at: str | None = None
    failed_at: str | None = None
    failed_step: str | None = None
    failure: str | None = None
    retries: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (for ``--json``)."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["state"] = self.state.value
        data["origin"] = self.origin.as_dict()
        data["path"] = str(self.path)
        return data


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A DAG run the dispatcher made (or is about to make) for one or more batches.

    Written before the run is created: a dispatcher that dies in between creates the same
    run (same id, same batches) when it starts again, never a second one.
    """

    run_id: str
    dag_id: str
    batch_ids: list[str]
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping."""
        return {
            "run_id": self.run_id,
            "dag_id": self.dag_id,
            "batch_ids": list(self.batch_ids),
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ProblemRecord:
    """A rejected instance kept in ``<spool>/problems/<id>/``."""

    id: str
    reason: str
    origin: Origin
    project: str
    received_at: str
    path: Path
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WrittenContent:
    """What the writer of an instance file knows of its bytes, so the spool need not read it.

    Attributes
    ----------
    sha256
        Hex SHA-256 of the whole file.
    size
        Its length in bytes.
    head
        Its first ``HEAD_BYTES + 1`` bytes (see :data:`dicomflow.intake.checks.HEAD_BYTES`),
        all of it when shorter.
    """

    sha256: str
    size: int
    head: bytes

    def result(self) -> WrittenContent:
        """Itself: a :class:`PendingContent` that is complete."""
        return self


class PendingContent(Protocol):
    """What the writer of an instance file knows of it, the hash possibly still coming.

    A writer that hashes in the background gives the first bytes at once, so the spool can
    check the header (and flush the file) while the hash is finished.
    """

    @property
    def head(self) -> bytes:
        """The first ``HEAD_BYTES + 1`` bytes, all of the file when shorter."""
        ...

    def result(self) -> WrittenContent:
        """Everything, once the writer has finished with the file."""
        ...
