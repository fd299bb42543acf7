"""Fixtures of the receiver tests: a project in the real platform database, a receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from dicomflow.db.projects import ProjectStore
from dicomflow.spool.store import Spool
from receiver.app import Receiver
from tests.receiver.receiver_helpers import running_receiver

PROJECT = "recv"


@pytest.fixture(scope="session")
def projects(platform_engine: Engine) -> ProjectStore:
    """The real project store with the project ``recv``."""
    store = ProjectStore(platform_engine)
    store.create_project(PROJECT, "receiver tests")
    return store


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.fixture
def receiver(
    spool: Spool, projects: ProjectStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Receiver]:
    """A receiver in this process on a free port (see :func:`running_receiver`)."""
    with running_receiver(spool, projects, monkeypatch) as service:
        yield service
