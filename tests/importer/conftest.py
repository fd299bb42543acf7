"""Fixtures of the importer tests: a project in the real platform database, private spools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

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
    return settings.replace(data_dir=data_dir, uploads=settings.uploads.replace(**uploads))
