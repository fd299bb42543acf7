"""Fixtures of the importer tests: a project in the real platform database, private spools."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from tests.stack_testutil import project_store_with

PROJECT = "imports"


@pytest.fixture(scope="session")
def projects(platform_engine: Engine) -> ProjectStore:
    """The real project store with the project ``imports``."""
    return project_store_with(platform_engine, PROJECT, "importer tests")


def private(settings: Settings, data_dir: Path, **uploads: Any) -> Settings:
    """The session's settings with their own data directory (spool) and upload bounds."""
    return settings.model_copy(
        update={"data_dir": data_dir, "uploads": settings.uploads.model_copy(update=uploads)}
    )


@pytest.fixture
def unreachable_airflow() -> AirflowClient:
    """An Airflow client aimed at a port nobody listens on (Airflow down, for real)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return AirflowClient(f"http://127.0.0.1:{port}", "admin", "x", timeout=2.0)
