"""Fixtures of the upload API tests: the web service on the real PostgreSQL and S3 server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine

from dicomflow.config import Settings
from tests.stack_testutil import project_store_with
from tests.uploads.web_server import running_web

PROJECT = "uploads"


@pytest.fixture(scope="session")
def upload_project(platform_engine: Engine) -> str:
    """The project ``uploads`` in the real platform database."""
    project_store_with(platform_engine, PROJECT, "upload tests")
    return PROJECT


@pytest.fixture(scope="session")
def web(postgres: Settings, s3: Settings, upload_project: str) -> Iterator[httpx.Client]:
    """An HTTP client on the running web service, logged in as the admin."""
    with (
        running_web(postgres) as url,
        httpx.Client(
            base_url=url, auth=(postgres.admin_user, postgres.admin_password), timeout=30
        ) as client,
    ):
        yield client
