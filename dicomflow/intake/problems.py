"""The problem area's reader: list, show, retry and delete what the doors refused.

Every door keeps a refused instance (or file) in ``<spool>/problems/<id>/`` with a
``reason.json`` (:meth:`dicomflow.spool.store.Spool.keep_problem`). A retry puts the kept file
through the same intake path as any door: admission, the header checks, a batch. A file the
checks still refuse stays where it is, with its first reason; one they accept leaves the
problem area for a batch of its own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from dicomflow.db.projects import normalize_ae_name
from dicomflow.intake.admission import Admission, AdmissionRefusedError, ProjectLookupError
from dicomflow.intake.checks import InstanceRejectedError, inspect_instance
from dicomflow.intake.session import IntakeSession
from dicomflow.spool.records import CloseReason, Origin, ProblemRecord
from dicomflow.spool.store import PROBLEM_FILE, Spool

__all__ = ["ProblemArea", "RetryOutcome", "UnknownProblemError", "problem_as_dict"]


class UnknownProblemError(LookupError):
    """No problem with that id is kept."""


@dataclass(frozen=True)
class RetryOutcome:
    """What a retry of one problem did.

    Attributes
    ----------
    problem_id
        The problem.
    accepted
        The file went into a batch (and left the problem area).
    message
        The batch it went into, or why it is still refused.
    batch_id
        The batch, when accepted.
    """

    problem_id: str
    accepted: bool
    message: str
    batch_id: str | None = None


def problem_as_dict(record: ProblemRecord) -> dict[str, Any]:
    """A JSON-able mapping of a kept problem (``--json``, REST)."""
    file = record.path / PROBLEM_FILE
    return {
        "id": record.id,
        "reason": record.reason,
        "project": record.project,
        "received_at": record.received_at,
        "origin": record.origin.as_dict(),
        "details": record.details,
        "file": str(file),
        "bytes": file.stat().st_size if file.exists() else None,
    }


class ProblemArea:
    """The refused instances of one spool.

    Parameters
    ----------
    spool
        The spool whose ``problems/`` this reads.
    admission
        Checks the project and dataset of a retry (the doors' own admission).
    """

    def __init__(self, spool: Spool, admission: Admission) -> None:
        self.spool = spool
        self.admission = admission

    def list(self, project: str | None = None) -> list[ProblemRecord]:
        """Every kept problem, oldest first (only ``project``'s, when given)."""
        return [p for p in self.spool.problems() if project is None or p.project == project]

    def get(self, problem_id: str) -> ProblemRecord:
        """One problem.

        Raises
        ------
        UnknownProblemError
            When none has that id.
        """
        for record in self.spool.problems():
            if record.id == problem_id:
                return record
        raise UnknownProblemError(
            f"no problem {problem_id!r} in {self.spool.problems_dir} "
            "(see `dicomflow problems list`)"
        )

    def delete(self, problem_id: str) -> ProblemRecord:
        """Remove a problem and its file for good; return what it was."""
        record = self.get(problem_id)
        shutil.rmtree(record.path)
        return record

    def retry(
        self, problem_id: str, *, project: str | None = None, dataset: str | None = None
    ) -> RetryOutcome:
        """Put a problem's file through intake again.

        Parameters
        ----------
        problem_id
            The problem.
        project, dataset
            Where it goes (default: the project it was sent to, and the dataset its sender
            named, ``unknown`` when none).

        Raises
        ------
        UnknownProblemError
            When none has that id.
        """
        record = self.get(problem_id)
        file = record.path / PROBLEM_FILE
        target = project or record.project
        if not target:
            return RetryOutcome(
                problem_id, False, "it was refused before a project was known: give --project"
            )
        name = dataset or str(record.details.get("dataset") or "")
        name = name or normalize_ae_name(record.origin.calling_ae) or "unknown"
        try:
            destination = self.admission.destination(target, name)
        except (AdmissionRefusedError, ProjectLookupError) as exc:
            return RetryOutcome(problem_id, False, f"still refused: {exc}")
        try:
            inspect_instance(file)
        except InstanceRejectedError as exc:
            return RetryOutcome(problem_id, False, f"still refused: {exc.reason}")
        origin = Origin(record.origin.door, f"retry of problem {problem_id}", name, target)
        session = IntakeSession(self.spool, destination, origin)
        try:
            session.store(file, move=False)
        except InstanceRejectedError as exc:
            # The disk refused: the session kept a copy as a new problem; this one stays.
            return RetryOutcome(problem_id, False, f"still refused: {exc.reason}")
        finally:
            session.close(CloseReason.IMPORT_END)
        shutil.rmtree(record.path)
        batch = session.batch_ids[-1]
        return RetryOutcome(
            problem_id,
            True,
            f"accepted into batch {batch} ({destination.project}/{destination.dataset})",
            batch,
        )
