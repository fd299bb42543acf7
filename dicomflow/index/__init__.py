"""The metadata index of series documents: one interface, two backends.

``postgres`` (the embedded default) keeps documents as JSONB in the platform database;
``opensearch`` writes to a real cluster. :func:`open_index` picks one from the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomflow.index.base import (
    IndexCounts,
    QueryError,
    SearchResult,
    SeriesIndex,
    SeriesIndexError,
    SeriesQuery,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from dicomflow.config import Settings

__all__ = [
    "IndexCounts",
    "QueryError",
    "SearchResult",
    "SeriesIndex",
    "SeriesIndexError",
    "SeriesQuery",
    "open_index",
]


def open_index(settings: Settings, *, engine: Engine | None = None) -> SeriesIndex:
    """The index the settings choose (``settings.index.backend``).

    Parameters
    ----------
    settings
        The platform settings.
    engine
        For the postgres backend: an engine on the platform database to share (the index
        then leaves it open on ``close``); default: a new engine on ``settings.platform_db_url``.

    Raises
    ------
    SeriesIndexError
        When the opensearch backend is chosen without ``index.opensearch_url`` and without
        the managed local node.
    """
    if settings.index.backend == "opensearch":
        # Imported here: the client library is only needed by deployments that use it.
        from dicomflow.index.opensearch import open_cluster_index

        return open_cluster_index(settings.index)
    from dicomflow.db.session import make_engine
    from dicomflow.index.postgres import PostgresSeriesIndex

    if engine is not None:
        return PostgresSeriesIndex(engine)
    return PostgresSeriesIndex(make_engine(settings.platform_db_url), owns_engine=True)
