"""Delete a series, a study or a dataset from a project.

A series leaves a project with its document in the project's index, its mappings, and its
thumbnail, validation report and findings in the project's bucket. When no other project holds
it any more it is gone altogether: from the PACS, from ``admin``'s index and bucket, and from
the records of what it received, so that sending it again imports it as new. While another
project still holds it, it is only taken out of this one: the PACS and ``admin`` keep it, and
its documents are rewritten without this project. Deleting from ``admin`` (administrators only)
removes the series from every project.

A series a run or an import still works on (a batch of the spool that is not done, see
:mod:`dicomflow.curation.in_use`) is not deleted: the whole request is refused, naming the
batches, and nothing changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dicomflow.access.audit import Audit, AuditAction
from dicomflow.curation.in_use import BatchUse, batches_using
from dicomflow.db.audit import AuditStore
from dicomflow.db.projects import ADMIN_PROJECT
from dicomflow.db.series import SeriesRecords
from dicomflow.db.session import advisory_lock
from dicomflow.db.validation import ValidationRecords
from dicomflow.index.base import STUDY_UID
from dicomflow.pacs.client import delete_series as delete_from_pacs
from dicomflow.pipeline.documents import DocumentWriter
from dicomflow.platform import Platform
from dicomflow.storage.keys import record_key, report_key, thumbnail_key

__all__ = [
    "DeletionReport",
    "NothingToDeleteError",
    "Outcome",
    "SeriesInUseError",
    "SeriesOutcome",
    "delete_dataset",
    "delete_series",
    "delete_study",
]

log = logging.getLogger(__name__)


class NothingToDeleteError(LookupError):
    """The project holds no such series, study or dataset."""


class SeriesInUseError(RuntimeError):
    """A run or an import still works on some of the series; nothing was deleted.

    Attributes
    ----------
    uses
        The batches that hold them.
    """

    def __init__(self, what: str, uses: list[BatchUse]) -> None:
        lines = "; ".join(u.describe() for u in uses)
        super().__init__(
            f"{what} is in use and was not deleted: {lines}. Wait until these batches are done "
            "(`dicomflow batches`), or settle a failed one, then delete again"
        )
        self.uses = uses


class Outcome(StrEnum):
    """What happened to one series."""

    #: Gone from the PACS, every index, every bucket and the platform database.
    DELETED = "deleted"
    #: Taken out of the project; another project still holds it (PACS and admin keep it).
    UNMAPPED = "unmapped"
    #: Taken out of a dataset; another dataset of the same project still holds it.
    LEFT_DATASET = "left-dataset"


@dataclass(frozen=True)
class SeriesOutcome:
    """One series of a deletion.

    Attributes
    ----------
    series_uid, outcome
        The series and what happened to it.
    pacs_instances
        Instances removed from the PACS (``DELETED`` only).
    kept_in
        The projects that still hold it.
    """

    series_uid: str
    outcome: Outcome
    pacs_instances: int = 0
    kept_in: tuple[str, ...] = ()


@dataclass
class DeletionReport:
    """What one deletion did."""

    project: str
    target: str
    kind: str
    series: list[SeriesOutcome] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (REST answer, ``--json``)."""
        return {
            "project": self.project,
            "kind": self.kind,
            "target": self.target,
            "series": [
                {
                    "series_uid": s.series_uid,
                    "outcome": s.outcome.value,
                    "pacs_instances": s.pacs_instances,
                    "kept_in": list(s.kept_in),
                }
                for s in self.series
            ],
        }

    def lines(self) -> list[str]:
        """Lines for a person to read."""
        out = [f"{self.kind} {self.target} deleted from project {self.project}:"]
        for s in self.series:
            if s.outcome is Outcome.DELETED:
                out.append(f"  {s.series_uid}: deleted ({s.pacs_instances} instances in the PACS)")
            else:
                kept = ", ".join(s.kept_in)
                out.append(f"  {s.series_uid}: {s.outcome.value} (still in {kept})")
        return out


def delete_series(
    platform: Platform, project: str, series_uid: str, *, actor: str, address: str = ""
) -> DeletionReport:
    """Delete one series from ``project`` (see the module's description).

    Raises
    ------
    NothingToDeleteError
        When the project holds no such series.
    SeriesInUseError
        When a run or an import still works on it.
    """
    if not _holds(platform, project, series_uid):
        raise NothingToDeleteError(f"series {series_uid} is not in project {project!r}")
    report = DeletionReport(project, series_uid, "series")
    _delete(platform, report, [series_uid], None, f"series {series_uid}")
    _audit(platform, actor, AuditAction.SERIES_DELETE, report, address)
    return report


def delete_study(
    platform: Platform, project: str, study_uid: str, *, actor: str, address: str = ""
) -> DeletionReport:
    """Delete every series of a study from ``project``.

    Raises
    ------
    NothingToDeleteError
        When the project holds no series of the study.
    SeriesInUseError
        When a run or an import still works on any of them (none is deleted).
    """
    uids = platform.projects.series_of_study(project, study_uid)
    if not uids:
        raise NothingToDeleteError(f"project {project!r} holds no series of study {study_uid}")
    report = DeletionReport(project, study_uid, "study")
    _delete(platform, report, uids, None, f"study {study_uid}")
    _audit(platform, actor, AuditAction.STUDY_DELETE, report, address)
    return report


def delete_dataset(
    platform: Platform, project: str, dataset: str, *, actor: str, address: str = ""
) -> DeletionReport:
    """Delete a dataset of ``project`` with its series (a series also in another dataset of
    the project, or in another project, stays there).

    Raises
    ------
    NothingToDeleteError
        When the project has no such dataset (``admin`` has none).
    SeriesInUseError
        When a run or an import still works on any of its series (nothing is deleted).
    """
    if project == ADMIN_PROJECT or not platform.projects.dataset_exists(project, dataset):
        raise NothingToDeleteError(f"project {project!r} has no dataset {dataset!r}")
    uids = platform.projects.series_of_dataset(project, dataset)
    report = DeletionReport(project, dataset, "dataset")
    _delete(platform, report, uids, [dataset], f"dataset {dataset}")
    platform.projects.delete_dataset(project, dataset)
    _audit(platform, actor, AuditAction.DATASET_DELETE, report, address)
    return report


def _holds(platform: Platform, project: str, series_uid: str) -> bool:
    if project != ADMIN_PROJECT and project in platform.projects.series_projects(series_uid):
        return True
    return platform.index.get(project, series_uid) is not None


def _delete(
    platform: Platform,
    report: DeletionReport,
    uids: list[str],
    datasets: list[str] | None,
    what: str,
) -> None:
    uses = batches_using(platform.spool, set(uids))
    if uses:
        raise SeriesInUseError(what, uses)
    for uid in uids:
        report.series.append(_delete_one(platform, report.project, uid, datasets))


def _delete_one(
    platform: Platform, project: str, uid: str, datasets: list[str] | None
) -> SeriesOutcome:
    projects = platform.projects
    records = SeriesRecords(platform.engine)
    with advisory_lock(platform.engine, f"series:{uid}"):
        before = projects.series_projects(uid)
        # Read before any document goes: the PACS is asked by study and series.
        study = _study_of(platform, project, uid)
        if project == ADMIN_PROJECT:
            others: list[str] = []
        else:
            records.forget_project(uid, project, datasets)
            still_here = projects.unmap_series(project, uid, datasets)
            if still_here:
                outcome = Outcome.LEFT_DATASET
            else:
                platform.index.delete_series(project, uid)
                _remove_objects(platform, project, uid)
                outcome = Outcome.UNMAPPED
            # ``admin`` holds every series: only the other projects keep it.
            others = [p for p in projects.series_projects(uid) if p != ADMIN_PROJECT]
        if others:
            kept = tuple(others)
        else:
            return _delete_everywhere(platform, uid, study, before)
    # Outside the lock: the writer takes it itself.
    _rewrite_documents(platform, uid)
    log.info("series %s: %s from %s (kept in %s)", uid, outcome.value, project, ", ".join(kept))
    return SeriesOutcome(uid, outcome, kept_in=kept)


def _study_of(platform: Platform, project: str, uid: str) -> str:
    for scope in (ADMIN_PROJECT, project):
        doc = platform.index.get(scope, uid)
        if doc and doc.get(STUDY_UID):
            return str(doc[STUDY_UID])
    return ""


def _delete_everywhere(
    platform: Platform, uid: str, study: str, projects: list[str]
) -> SeriesOutcome:
    """Remove the series from the PACS, every index and bucket, and the platform database.

    The PACS goes first: should it refuse, the series is still found everywhere else and the
    deletion can be asked again.
    """
    held = delete_from_pacs(platform.settings, study, uid) if study else 0
    for project in sorted({*projects, ADMIN_PROJECT}):
        platform.projects.unmap_series(project, uid, None)
        _remove_objects(platform, project, uid)
    platform.index.delete_series(ADMIN_PROJECT, uid)
    SeriesRecords(platform.engine).forget(uid)
    ValidationRecords(platform.engine).forget(uid)
    platform.overlays.done(uid)
    log.info("series %s: deleted (%d instances in the PACS)", uid, held)
    return SeriesOutcome(uid, Outcome.DELETED, pacs_instances=held)


def _remove_objects(platform: Platform, project: str, uid: str) -> None:
    # record_key: where versions before the validation records' table kept them.
    keys = [thumbnail_key(uid), report_key(uid), record_key(uid)]
    present = [k for k in keys if platform.objects.exists(project, k)]
    platform.objects.remove(project, present)


def _rewrite_documents(platform: Platform, uid: str) -> None:
    """Write the series' documents again from what is left recorded of it."""
    if SeriesRecords(platform.engine).facts(uid) is None:
        return  # nothing recorded (data of a version before the records): documents stay

    def no_header() -> tuple[dict[str, Any], list[str]]:
        raise ValueError(f"series {uid}: no stored document to keep the header of")

    DocumentWriter(platform).write_series(uid, read_header=no_header)


def _audit(
    platform: Platform, actor: str, action: AuditAction, report: DeletionReport, address: str
) -> None:
    counts: dict[str, int] = {}
    for s in report.series:
        counts[s.outcome.value] = counts.get(s.outcome.value, 0) + 1
    detail = ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "no series"
    Audit(AuditStore(platform.engine)).record(
        actor, action, project=report.project, target=report.target, detail=detail, address=address
    )
