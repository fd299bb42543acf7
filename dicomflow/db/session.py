"""Engines on the platform database and its schema."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
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


@contextmanager
def advisory_lock(engine: Engine, key: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock named ``key`` (across every process of the platform).

    Serialises the read-compute-write of what belongs to one series (its documents, its
    validation record) between tasks of different batches, on whatever host they run.
    """
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": key})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": key})
