"""Batches of received instances on disk, their states, the problem area and the outbox."""

from dicomflow.spool.checks import (
    InstanceFacts,
    InstanceRejectedError,
    StoreStatus,
    inspect_instance,
)
from dicomflow.spool.records import (
    BatchRecord,
    BatchState,
    CloseReason,
    Door,
    ManifestEntry,
    Origin,
    ProblemRecord,
)
from dicomflow.spool.store import Batch, Intake, RecoveryReport, Spool, UnknownBatchError

__all__ = [
    "Batch",
    "BatchRecord",
    "BatchState",
    "CloseReason",
    "Door",
    "InstanceFacts",
    "InstanceRejectedError",
    "Intake",
    "ManifestEntry",
    "Origin",
    "ProblemRecord",
    "RecoveryReport",
    "Spool",
    "StoreStatus",
    "UnknownBatchError",
    "inspect_instance",
]
