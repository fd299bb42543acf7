"""What is particular to the PostgreSQL backend: its table layout check and query plans."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dicomflow.index.base import SeriesIndexError, SeriesQuery
from dicomflow.index.postgres import SCHEMA_TAG, PostgresSeriesIndex, create_index_schema


def test_a_table_of_another_layout_is_refused(index_engine: Engine) -> None:
    with index_engine.begin() as conn:
        conn.execute(text("COMMENT ON TABLE series_documents IS 'something else'"))
    try:
        with pytest.raises(SeriesIndexError, match="'something else', this version needs"):
            PostgresSeriesIndex(index_engine).ensure_project("alpha")
    finally:
        with index_engine.begin() as conn:
            conn.execute(text(f"COMMENT ON TABLE series_documents IS '{SCHEMA_TAG}'"))
    create_index_schema(index_engine)  # the right layout passes


def test_unfiltered_facets_read_the_facet_index(
    index_engine: Engine, postgres_index: PostgresSeriesIndex
) -> None:
    postgres_index.search("admin", SeriesQuery())
    with index_engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN SELECT facet_key, count(*) FROM series_documents "
                    "WHERE project = 'admin' GROUP BY facet_key"
                )
            ).scalars()
        )
    assert "series_documents_facets" in plan
