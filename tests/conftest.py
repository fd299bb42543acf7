"""Session fixtures that start the real components once, on free loopback ports.

Tests ask for what they need: ``settings`` alone touches nothing; ``platform_engine`` starts
PostgreSQL; ``orthanc``, ``s3`` and ``airflow`` start those servers (and PostgreSQL where needed);
``opensearch`` starts the local OpenSearch node. Everything started is stopped at the end of the
session.

A test that asks for any of them is marked ``stack`` (so are the modules that start servers of
their own): ``pytest -m "not stack"`` runs the unit tests, which need no server.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import Engine

from dicomflow.config import Settings, load_settings
from dicomflow.stack.components import (
    AirflowApiServer,
    AirflowDagProcessor,
    AirflowScheduler,
    AirflowTriggerer,
    Component,
    Dispatcher,
    OpenSearchNode,
    Orthanc,
    Postgres,
    Receiver,
    SeaweedS3,
)
from dicomflow.stack.isolated import free_port, stack_data_dir, stack_environment
from dicomflow.stack.supervisor import Stack

#: The fixtures that start real components; a test using one (even indirectly) is ``stack``.
STACK_FIXTURES = frozenset(
    {
        "postgres",
        "platform_engine",
        "orthanc",
        "s3",
        "airflow",
        "dispatcher",
        "opensearch",
        "full_stack",
        "own_stack",
        "index_server_url",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a running component ``stack``."""
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """The environment of the session's test stack (pass it to subprocesses we start)."""
    data_dir = stack_data_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    env.update(stack_environment(data_dir))
    # Orthanc's DICOM port open (to the platform's AE title only): tests/pacs stores by
    # C-STORE into the session's PACS as well as by STOW-RS.
    env["DICOMFLOW_PACS__DICOM_PORT"] = str(free_port())
    yield env
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    """The settings of the session's test stack (its servers start only when asked for)."""
    return load_settings(environ=stack_env)


class _SessionStack:
    """Starts components on demand and stops all of them once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started: list[Component] = []

    def need(self, *components: Component) -> None:
        names = {c.name for c in self.started}
        self.started += [c for c in components if c.name not in names]
        Stack(self.settings, list(self.started)).up(report=lambda _msg: None)

    @contextmanager
    def without(self, name: str) -> Iterator[None]:
        """Stop a started component for a while; it starts again after."""
        stopped = [c for c in self.started if c.name == name]
        if stopped:
            Stack(self.settings, stopped).down(report=lambda _msg: None)
        try:
            yield
        finally:
            if stopped:
                Stack(self.settings, list(self.started)).up(report=lambda _msg: None)

    def close(self) -> None:
        Stack(self.settings, list(self.started)).down(report=lambda _msg: None, sweep=True)


@pytest.fixture(scope="session")
def session_stack(settings: Settings) -> Iterator[_SessionStack]:
    stack = _SessionStack(settings)
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def postgres(session_stack: _SessionStack, settings: Settings) -> Settings:
    """A running PostgreSQL with the Airflow and platform databases and the platform schema."""
    session_stack.need(Postgres(settings))
    return settings


@pytest.fixture(scope="session")
def platform_engine(postgres: Settings) -> Iterator[Engine]:
    """An engine on the real platform database (schema created, project ``admin`` present)."""
    from dicomflow.db.session import make_engine

    engine = make_engine(postgres.platform_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def orthanc(session_stack: _SessionStack, settings: Settings) -> Settings:
    """A running Orthanc with DICOMweb (``settings.pacs.base_url``, basic auth)."""
    session_stack.need(Orthanc(settings))
    return settings


@pytest.fixture(scope="session")
def s3(session_stack: _SessionStack, settings: Settings) -> Settings:
    """A running S3 server (SeaweedFS) with the admin bucket."""
    session_stack.need(SeaweedS3(settings))
    return settings


@pytest.fixture(scope="session")
def opensearch(session_stack: _SessionStack, settings: Settings) -> Settings:
    """A running local OpenSearch node; the settings returned use it as the index backend.

    Only the returned settings choose OpenSearch: the rest of the session (and the Airflow it
    runs) keeps the embedded index.
    """
    index = settings.index.replace(backend="opensearch", opensearch_managed=True, opensearch_url="")
    with_node = settings.replace(index=index)
    session_stack.need(OpenSearchNode(with_node))
    return with_node


@dataclass(frozen=True)
class AirflowServer:
    """A running Airflow: where it is and how to log in."""

    base_url: str
    username: str
    password: str
    settings: Settings


@pytest.fixture(scope="session")
def airflow(session_stack: _SessionStack, settings: Settings) -> AirflowServer:
    """A running Airflow (API server, scheduler, DAG processor, triggerer) on PostgreSQL."""
    session_stack.need(
        Postgres(settings),
        AirflowApiServer(settings),
        AirflowScheduler(settings),
        AirflowDagProcessor(settings),
        AirflowTriggerer(settings),
    )
    return AirflowServer(
        settings.airflow.base_url, settings.airflow.username, settings.airflow.password, settings
    )


@pytest.fixture(scope="session")
def dispatcher(
    session_stack: _SessionStack, postgres: Settings, airflow: AirflowServer
) -> Settings:
    """The dispatcher, handing the session spool's closed batches to the session's Airflow."""
    session_stack.need(Dispatcher(postgres))
    return postgres


@pytest.fixture
def no_dispatcher(session_stack: _SessionStack) -> Iterator[None]:
    """No dispatcher during the test (if an earlier test started it): the test hands batches
    to Airflow itself, and nothing runs the background validation lane behind its back."""
    with session_stack.without("dispatcher"):
        yield


@pytest.fixture(scope="session")
def full_stack(
    session_stack: _SessionStack,
    postgres: Settings,
    orthanc: Settings,
    s3: Settings,
    airflow: AirflowServer,
) -> Settings:
    """Everything but the web service: the receiver and the dispatcher too."""
    session_stack.need(Receiver(postgres), Dispatcher(postgres))
    return postgres
