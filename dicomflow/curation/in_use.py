"""Which series a run or an import is still working on: the batches of the spool not done.

A batch is worked on from its first instance (``open``: a door is writing it) until the
processing DAG marks it done, and a done batch still is until the background validation lane
has checked it (that lane rewrites documents and reports). A failed batch counts too: the
dispatcher or a person may run it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool, UnknownBatchError

__all__ = ["BatchUse", "batches_using"]

_WORKING = (BatchState.OPEN, BatchState.PENDING, BatchState.TRIGGERED, BatchState.FAILED)


@dataclass(frozen=True)
class BatchUse:
    """A batch in the spool that holds instances of the series asked about.

    Attributes
    ----------
    batch_id, state, project
        The batch, its state (``validating`` for a done batch the validation lane has yet to
        check) and its project.
    run_id
        Its DAG run, once it has one.
    series
        The series asked about that it holds.
    """

    batch_id: str
    state: str
    project: str
    run_id: str | None
    series: tuple[str, ...]

    def describe(self) -> str:
        """One line for a person: which batch, in which state, holding what."""
        run = f", run {self.run_id}" if self.run_id else ""
        return f"batch {self.batch_id} ({self.state}{run}) holds {', '.join(self.series)}"


def batches_using(spool: Spool, series_uids: set[str]) -> list[BatchUse]:
    """The batches still worked on that hold any of ``series_uids``, oldest first."""
    validating = set(spool.validation_queue())
    found: list[BatchUse] = []
    for record in spool.batches():
        if record.state in _WORKING:
            state = record.state.value
        elif record.id in validating:
            state = "validating"
        else:
            continue
        try:
            held = {i.series_instance_uid for i in spool.manifest(record.id)}
        except UnknownBatchError:  # finished and removed meanwhile
            continue
        hit = tuple(sorted(held & series_uids))
        if hit:
            found.append(BatchUse(record.id, state, record.project, record.run_id, hit))
    return found
