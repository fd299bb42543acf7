"""The audit trail and the sign-in failure counters, in the platform database.

Both are tables of the platform database, so a backup of it carries them, and every web
replica (and Airflow's API server) counts the same failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dicomflow.db.models import AuditEvent, SignInFailures

__all__ = ["AuditRecord", "AuditStore", "FailureCount", "FailureStore"]


@dataclass(frozen=True)
class AuditRecord:
    """One event of the trail."""

    id: int
    at: datetime
    actor: str
    action: str
    project: str | None
    target: str
    detail: str
    address: str
    outcome: str

    def as_dict(self) -> dict[str, object]:
        """JSON-able, ``at`` in ISO 8601."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "project": self.project,
            "target": self.target,
            "detail": self.detail,
            "address": self.address,
            "outcome": self.outcome,
        }


class AuditStore:
    """Appends to and reads the audit trail.

    Parameters
    ----------
    engine
        An engine on the platform database.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(
        self,
        actor: str,
        action: str,
        *,
        project: str | None = None,
        target: str = "",
        detail: str = "",
        address: str = "",
        outcome: str = "ok",
    ) -> None:
        """Append one event."""
        with Session(self._engine) as session, session.begin():
            session.add(
                AuditEvent(
                    actor=actor[:64] or "-",
                    action=action[:32],
                    project=project[:16] if project else None,
                    target=target,
                    detail=detail,
                    address=address[:64],
                    outcome=outcome[:16],
                )
            )

    def query(
        self,
        *,
        actor: str | None = None,
        project: str | None = None,
        since: datetime | None = None,
        action: str | None = None,
        limit: int = 200,
    ) -> list[AuditRecord]:
        """The newest events first, filtered."""
        stmt = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        if actor:
            stmt = stmt.where(AuditEvent.actor == actor)
        if project:
            stmt = stmt.where(AuditEvent.project == project)
        if since is not None:
            stmt = stmt.where(AuditEvent.at >= since)
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        with Session(self._engine) as session:
            return [
                AuditRecord(
                    e.id,
                    e.at,
                    e.actor,
                    e.action,
                    e.project,
                    e.target,
                    e.detail,
                    e.address,
                    e.outcome,
                )
                for e in session.scalars(stmt.limit(limit))
            ]


@dataclass(frozen=True)
class FailureCount:
    """Failed sign-ins of one key within the current window."""

    failures: int
    first_failure_at: datetime
    last_failure_at: datetime


class FailureStore:
    """Counters of failed sign-ins per ``(kind, key)``: ``account`` names and ``address``es.

    Parameters
    ----------
    engine
        An engine on the platform database.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, kind: str, key: str) -> FailureCount | None:
        """The counter of one key, or ``None``."""
        with Session(self._engine) as session:
            row = session.get(SignInFailures, (kind, key[:128]))
            if row is None:
                return None
            return FailureCount(row.failures, row.first_failure_at, row.last_failure_at)

    def add_failure(self, kind: str, key: str, now: datetime, window: timedelta) -> int:
        """Count one failure (a counter older than ``window`` starts again); return the count."""
        table = SignInFailures.__table__
        stmt = insert(SignInFailures).values(
            kind=kind, key=key[:128], failures=1, first_failure_at=now, last_failure_at=now
        )
        stale = table.c.first_failure_at < now - window
        upsert = stmt.on_conflict_do_update(
            index_elements=["kind", "key"],
            set_={
                "failures": _case(stale, 1, table.c.failures + 1),
                "first_failure_at": _case(stale, now, table.c.first_failure_at),
                "last_failure_at": now,
            },
        ).returning(table.c.failures)
        with Session(self._engine) as session, session.begin():
            return int(session.execute(upsert).scalar_one())

    def clear(self, kind: str, key: str) -> None:
        """Forget the failures of one key (a successful sign-in of that account)."""
        with Session(self._engine) as session, session.begin():
            session.execute(
                delete(SignInFailures).where(
                    SignInFailures.kind == kind, SignInFailures.key == key[:128]
                )
            )


def _case(condition: object, then: object, otherwise: object) -> object:
    from sqlalchemy import case

    return case((condition, then), else_=otherwise)  # type: ignore[arg-type]
