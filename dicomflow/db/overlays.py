"""Annotations waiting for their image series, so their thumbnails can be redone."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dicomflow.db.models import PendingOverlay


@dataclass(frozen=True)
class Waiting:
    """A SEG/RTSTRUCT series shown as a placeholder."""

    annotation_series_uid: str
    referenced_series_uid: str
    study_uid: str
    projects: list[str]


class OverlayQueue:
    """The ``pending_overlays`` table.

    Parameters
    ----------
    engine
        An engine on the platform database.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def wait_for(
        self, annotation_uid: str, referenced_uid: str, study_uid: str, projects: Sequence[str]
    ) -> None:
        """Remember that ``annotation_uid`` needs ``referenced_uid`` for its thumbnail."""
        stmt = insert(PendingOverlay).values(
            annotation_series_uid=annotation_uid,
            referenced_series_uid=referenced_uid,
            study_uid=study_uid,
            projects=" ".join(sorted(projects)),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["annotation_series_uid"],
            set_={"referenced_series_uid": referenced_uid, "projects": stmt.excluded.projects},
        )
        with Session(self._engine) as session, session.begin():
            session.execute(stmt)

    def waiting_on(self, referenced_uids: Collection[str]) -> list[Waiting]:
        """Annotations whose image series is one of ``referenced_uids`` (one query for all)."""
        if not referenced_uids:
            return []
        with Session(self._engine) as session:
            rows = session.scalars(
                select(PendingOverlay).where(
                    PendingOverlay.referenced_series_uid.in_(list(referenced_uids))
                )
            ).all()
            return [
                Waiting(
                    r.annotation_series_uid,
                    r.referenced_series_uid,
                    r.study_uid,
                    r.projects.split(),
                )
                for r in rows
            ]

    def done(self, annotation_uid: str) -> None:
        """The annotation's thumbnail shows its image now."""
        with Session(self._engine) as session, session.begin():
            session.execute(
                delete(PendingOverlay).where(PendingOverlay.annotation_series_uid == annotation_uid)
            )
