"""Fixtures of the index tests: a private schema on a real PostgreSQL, backends, settings.

The PostgreSQL is the session's ``platform_engine`` (tests/conftest.py) when that fixture
exists; otherwise a throwaway server started here. Index tests work in a schema of their own so
that the rest of the suite's series never show up in their counts.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

from dicomflow.config import Settings, load_settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import create_schema
from dicomflow.index.base import SeriesIndex
from dicomflow.index.postgres import PostgresSeriesIndex, create_index_schema

REPO = Path(__file__).resolve().parents[2]
OPENSEARCH_URL = os.environ.get("DICOMFLOW_OPENSEARCH_URL", "")


@pytest.fixture(scope="session")
def _own_postgres() -> Iterator[str]:
    """A throwaway server, only started when the session has no ``platform_engine``."""
    sys.path.insert(0, str(REPO / "bench"))
    from pgtemp import throwaway_postgres

    with throwaway_postgres(fsync=False) as url:
        yield url


@pytest.fixture(scope="session")
def index_server_url(request: pytest.FixtureRequest) -> URL:
    """URL of the PostgreSQL the index tests use."""
    try:
        engine: Engine = request.getfixturevalue("platform_engine")
    except pytest.FixtureLookupError:
        return create_engine(request.getfixturevalue("_own_postgres")).url
    return engine.url


@pytest.fixture(scope="session")
def index_engine(index_server_url: URL) -> Iterator[Engine]:
    """An engine whose search_path is a fresh schema holding the index and platform tables."""
    schema = f"index_tests_{uuid.uuid4().hex[:8]}"
    admin = create_engine(index_server_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(
        index_server_url,
        pool_size=10,
        max_overflow=10,
        connect_args={"options": f"-c search_path={schema}"},
    )
    create_schema(engine)
    create_index_schema(engine)
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def project_store(index_engine: Engine) -> ProjectStore:
    """Projects alpha and beta (and admin) in the private schema."""
    store = ProjectStore(index_engine)
    for name in ("alpha", "beta"):
        store.create_project(name)
    return store


def _postgres_index(engine: Engine) -> SeriesIndex:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE series_documents"))
    return PostgresSeriesIndex(engine)


@pytest.fixture(scope="session")
def _opensearch_client(request: pytest.FixtureRequest) -> Iterator[tuple[OpenSearch, str]]:
    """A client on the test cluster and the index prefix of this session's tests.

    The cluster is the session's local node, or the one at DICOMFLOW_OPENSEARCH_URL when that
    is set (with DICOMFLOW_OPENSEARCH_USERNAME/PASSWORD, certificates not verified). The tests'
    indexes and template carry a prefix of their own and are removed at the end.
    """
    from dicomflow.index.opensearch import OpenSearchSeriesIndex, connect

    if OPENSEARCH_URL:
        client = connect(
            OPENSEARCH_URL,
            os.environ.get("DICOMFLOW_OPENSEARCH_USERNAME", ""),
            os.environ.get("DICOMFLOW_OPENSEARCH_PASSWORD", ""),
            verify_certs=False,
        )
    else:
        settings: Settings = request.getfixturevalue("opensearch")
        client = connect(settings.index.opensearch_endpoint)
    prefix = f"dftest{uuid.uuid4().hex[:8]}_"
    yield client, prefix
    client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
    template = OpenSearchSeriesIndex(client, index_prefix=prefix).template_name
    client.indices.delete_index_template(name=template, ignore=[404])
    client.close()


def _opensearch_index(client: OpenSearch, prefix: str) -> SeriesIndex:
    from dicomflow.index.opensearch import OpenSearchSeriesIndex

    # Emptied rather than made anew: creating indexes is the slow part of a test.
    client.delete_by_query(
        index=f"{prefix}*",
        body={"query": {"match_all": {}}},
        refresh=True,
        conflicts="proceed",
        allow_no_indices=True,
    )
    return OpenSearchSeriesIndex(client, index_prefix=prefix)


@pytest.fixture(params=["postgres", "opensearch"])
def index(request: pytest.FixtureRequest, index_engine: Engine) -> SeriesIndex:
    """An empty index of each backend (OpenSearch: see ``_opensearch_client``)."""
    if request.param == "postgres":
        return _postgres_index(index_engine)
    client, prefix = request.getfixturevalue("_opensearch_client")
    return _opensearch_index(client, prefix)


@pytest.fixture
def postgres_index(index_engine: Engine) -> SeriesIndex:
    """An empty PostgreSQL index (for tests of the REST and CLI layers)."""
    return _postgres_index(index_engine)


@pytest.fixture
def index_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The session's settings with PostgreSQL running, else settings on the throwaway server."""
    try:
        request.getfixturevalue("platform_engine")  # starts the session's PostgreSQL
        settings: Settings = request.getfixturevalue("settings")
    except pytest.FixtureLookupError:
        url = create_engine(request.getfixturevalue("_own_postgres")).url
        environ = {
            "DICOMFLOW_DATA_DIR": str(tmp_path / "var"),
            "DICOMFLOW_POSTGRES__HOST": str(url.host),
            "DICOMFLOW_POSTGRES__PORT": str(url.port),
            "DICOMFLOW_POSTGRES__USER": str(url.username),
            "DICOMFLOW_POSTGRES__PLATFORM_DATABASE": str(url.database),
        }
        settings = load_settings(environ=environ)
    return settings
