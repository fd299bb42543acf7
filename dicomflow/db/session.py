"""Engines on the platform database and its schema."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from dicomflow.db.models import Base, Project
from dicomflow.db.projects import ADMIN_PROJECT


def make_engine(url: str) -> Engine:
    """An engine with a small pool: the receiver, the web service and tasks each hold one."""
    # A connection attempt to a host that does not answer fails in seconds, not minutes: the
    # doors fall back to what they knew while the database is away.
    return create_engine(
        url,
        pool_size=4,
        max_overflow=8,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def create_schema(engine: Engine) -> None:
    """Create the tables that are missing and the ``admin`` project; safe to repeat."""
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.execute(
            insert(Project)
            .values(name=ADMIN_PROJECT, description="Every series, whatever its project.")
            .on_conflict_do_nothing()
        )


#: Takes the advisory locks (``{function}``: session or transaction level) of a set of keys in
#: one round trip, in the order of their hashes (the lock's identity), so two holders of
#: overlapping sets cannot deadlock.
_LOCK_ALL_SQL = (
    "SELECT count({function}(h)) FROM ("
    "SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:keys AS text[])) AS k ORDER BY h"
    ") AS ordered"
)
_LOCK_ALL = text(_LOCK_ALL_SQL.format(function="pg_advisory_lock"))
_XACT_LOCK_ALL = text(_LOCK_ALL_SQL.format(function="pg_advisory_xact_lock"))


@contextmanager
def advisory_locks(engine: Engine, keys: Iterable[str]) -> Iterator[None]:
    """Hold PostgreSQL advisory locks named ``keys``, all on one pooled connection.

    A lock per connection took one of the engine's twelve connections per key: a background
    lane run coalescing 18 batches waited for a thirteenth connection until the pool gave up.
    One statement takes them all (a batch of 300 series took 300 round trips to lock and 300
    to unlock).
    """
    with engine.connect() as conn:
        try:
            conn.execute(_LOCK_ALL, {"keys": sorted(set(keys))})
            yield
        finally:
            # Session locks outlive a rolled-back transaction: released here, whatever failed,
            # or the pooled connection would hold them for its next user.
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock_all()"))


def transaction_locks(conn: Connection, keys: Iterable[str]) -> None:
    """Take the advisory locks named ``keys`` until ``conn``'s transaction ends.

    The same locks as :func:`advisory_locks` (a holder of either kind waits for the other).
    """
    conn.execute(_XACT_LOCK_ALL, {"keys": sorted(set(keys))})


@contextmanager
def advisory_lock(engine: Engine, key: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock named ``key`` (across every process of the platform).

    Serialises the read-compute-write of what belongs to one series (its documents, its
    validation record) between tasks of different batches, on whatever host they run.
    """
    with advisory_locks(engine, [key]):
        yield
