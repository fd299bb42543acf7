"""What is particular to the PostgreSQL backend: layout check and upgrade, query plans, paging."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

from dicomflow.config import load_settings
from dicomflow.index import postgres
from dicomflow.index.base import SERIES_UID, SeriesIndexError, SeriesQuery
from dicomflow.index.postgres import SCHEMA_TAG, PostgresSeriesIndex, create_index_schema
from tests.index.samples import series, store

LAYOUT_1 = "dicomflow series index, layout 1"
# What layout 1 had where layout 2 differs: two indexes without the facet key, and the
# element texts of a JSON list from a query.
LAYOUT_1_DDL = f"""
DROP INDEX series_documents_study_date_facets;
DROP INDEX series_documents_modality_facets;
CREATE INDEX series_documents_study_date ON series_documents (project, study_date, series_uid);
CREATE INDEX series_documents_modality ON series_documents (project, modality, series_uid);
CREATE OR REPLACE FUNCTION dicomflow_jsonb_texts(v jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT COALESCE(array_agg(e), '{{}}') FROM jsonb_array_elements_text(dicomflow_jsonb_list(v)) e
$$;
COMMENT ON TABLE series_documents IS '{LAYOUT_1}';
"""


def _index_names(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                text(
                    "SELECT indexname FROM pg_indexes "
                    "WHERE schemaname = current_schema() AND tablename = 'series_documents'"
                )
            ).scalars()
        )


@pytest.fixture
def own_schema_engine(index_server_url: URL) -> Iterator[Engine]:
    """An engine on a schema of its own, for tests that change the table's layout."""
    schema = f"index_layout_{uuid.uuid4().hex[:8]}"
    admin = create_engine(index_server_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(index_server_url, connect_args={"options": f"-c search_path={schema}"})
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


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


def test_a_layout_1_table_is_upgraded_in_place(own_schema_engine: Engine) -> None:
    engine = own_schema_engine
    create_index_schema(engine)
    with engine.begin() as conn:
        conn.connection.cursor().execute(LAYOUT_1_DDL)
    old = PostgresSeriesIndex(engine)
    store(old, "alpha", [series(n, dataset=[f"ds-{n % 3}", "ds-all"]) for n in range(6)])
    before = old.search("admin", SeriesQuery(modality=("CT",), size=3))

    create_index_schema(engine)  # what the next start of the new version does

    with engine.connect() as conn:
        tag = conn.execute(
            text("SELECT obj_description(to_regclass('series_documents'), 'pg_class')")
        ).scalar()
        # Values stored under layout 1 are what layout 2's functions compute.
        stale = conn.execute(
            text(
                "SELECT count(*) FROM series_documents WHERE "
                "datasets IS DISTINCT FROM dicomflow_jsonb_texts(doc -> 'dataset') "
                "OR facet_key IS DISTINCT FROM dicomflow_facet_key(doc)"
            )
        ).scalar()
    assert tag == SCHEMA_TAG
    assert stale == 0
    names = _index_names(engine)
    assert {"series_documents_study_date_facets", "series_documents_modality_facets"} <= names
    assert not names & {"series_documents_study_date", "series_documents_modality"}
    assert PostgresSeriesIndex(engine).search("admin", SeriesQuery(modality=("CT",), size=3)) == (
        before
    )
    create_index_schema(engine)  # and again: nothing left to do


def test_a_pg_dump_backup_restores_and_works(
    own_schema_engine: Engine, index_server_url: URL, tmp_path: Path
) -> None:
    # pg_restore fills the table with an empty search path: the generated columns' functions
    # must find each other without one (layout 2's did not, and the restore failed).
    engine = own_schema_engine
    create_index_schema(engine)
    index = PostgresSeriesIndex(engine)
    store(index, "alpha", [series(n, dataset=[f"ds-{n % 3}", "ds-all"]) for n in range(6)])
    query = SeriesQuery(modality=("CT",), size=3)
    before = index.search("admin", query)
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
    bin_dir = load_settings().postgres.bin_dir
    database = f"restored_{uuid.uuid4().hex[:8]}"

    def libpq(name: str | None) -> str:
        url = index_server_url.set(drivername="postgresql", database=name)
        return url.render_as_string(hide_password=False)

    dump = tmp_path / "index.dump"
    subprocess.run(
        [
            str(bin_dir / "pg_dump"),
            *("-Fc", "-n", str(schema), "-f", str(dump)),
            libpq(index_server_url.database),
        ],
        check=True,
    )
    admin = create_engine(index_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        done = subprocess.run(
            [str(bin_dir / "pg_restore"), "--exit-on-error", "-d", libpq(database), str(dump)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        restored = create_engine(
            index_server_url.set(database=database),
            connect_args={"options": f"-c search_path={schema}"},
        )
        try:
            again = PostgresSeriesIndex(restored)
            assert again.search("admin", query) == before
            # Writes merge as before, through the restored functions.
            store(again, "beta", [series(0, dataset=["ds-new"])])
            merged = again.get("admin", series(0)[SERIES_UID])
            assert merged is not None and merged["project"] == ["alpha", "beta"]
            assert merged["dataset"] == ["ds-0", "ds-all", "ds-new"]
        finally:
            restored.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{database}" WITH (FORCE)'))
        admin.dispose()


def test_list_texts_keep_layout_1_values(index_engine: Engine) -> None:
    cases = {
        '[null, 1, "a", {"b": [1]}, [2]]': [None, "1", "a", '{"b": [1]}', "[2]"],
        '"x"': ["x"],
        "null": [],
        "[]": [],
    }
    with index_engine.connect() as conn:
        for value, expected in cases.items():
            got = conn.execute(
                text("SELECT dicomflow_jsonb_texts(CAST(:v AS jsonb))"), {"v": value}
            ).scalar()
            assert got == expected, value
        assert conn.execute(text("SELECT dicomflow_jsonb_texts(NULL)")).scalar() == []


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


@pytest.mark.parametrize(
    ("condition", "index"),
    [
        ("modality = ANY('{CT}')", "series_documents_modality_facets"),
        ("study_date >= '2023-02-01'", "series_documents_study_date_facets"),
    ],
)
def test_facets_of_a_modality_or_date_filter_read_an_index_only(
    index_engine: Engine, postgres_index: PostgresSeriesIndex, condition: str, index: str
) -> None:
    store(postgres_index, "alpha", [series(n) for n in range(20)])
    with index_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM series_documents"))  # sets the visibility map
    with index_engine.begin() as conn:
        for method in ("seqscan", "bitmapscan"):
            conn.execute(text(f"SET LOCAL enable_{method} = off"))
        plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN SELECT facet_key, count(*) FROM series_documents "
                    f"WHERE project = 'admin' AND {condition} GROUP BY facet_key"
                )
            ).scalars()
        )
    assert f"Index Only Scan using {index}" in plan


# Thresholds that force each way of searching: the matches collected once for everything; total
# and facets counted, the page found in a walk of the sort index; the walk too short, the
# matches sorted after all.
STRATEGIES = {
    "one pass": {"FEW_MATCHES": 10**9},
    "walked": {"FEW_MATCHES": -1, "WALK_BUDGET": 10**6},
    "walk too short": {"FEW_MATCHES": -1, "WALK_BUDGET": 4},
}
PAGED_QUERIES: list[dict[str, Any]] = [
    {},
    {"modality": ("MR",)},
    {"modality": ("MR", "PT"), "sort": "patient_id", "order": "asc"},
    {"modality": ("CT",), "sort": "modality", "page": 2, "size": 4},
    {"has_errors": True, "sort": "study_date"},
    {"q": "doe", "size": 5, "page": 2},
    {"q": "doe", "size": 7, "page": 3},  # the last page, not full
    {"description": "thorax", "order": "asc", "size": 3},
    {"date_from": date(2023, 3, 1), "sort": "study_date", "order": "asc"},  # the date index
    {"date_from": date(2023, 3, 1), "modality": ("CT",), "sort": "received_at"},
    {"dataset": ("ds-1",), "sort": "series_uid", "size": 100},
    {"patient_id": "PAT1", "size": 2, "page": 3},
    {"modality": ("NM",)},  # nothing matches
]


@pytest.fixture
def paging_corpus(postgres_index: PostgresSeriesIndex) -> PostgresSeriesIndex:
    """40 series of alpha with modalities, errors, descriptions and datasets mixed."""
    docs = [
        series(
            n,
            dataset=[f"ds-{n % 3}"],
            validation={"errors": int(n % 4 == 0), "warnings": 0},
            **{
                "00080060 Modality_keyword": ("CT", "MR", "CT", "PT", "SEG")[n % 5],
                "0008103E SeriesDescription_keyword": ("Thorax contrast", "Head")[n % 2],
                "received_at": f"2024-05-{1 + n % 28:02d}T08:{n:02d}:00+00:00",
            },
        )
        for n in range(40)
    ]
    store(postgres_index, "alpha", docs)
    return postgres_index


@pytest.mark.parametrize("params", PAGED_QUERIES, ids=str)
def test_every_page_strategy_gives_the_same_page(
    paging_corpus: PostgresSeriesIndex, monkeypatch: pytest.MonkeyPatch, params: dict[str, Any]
) -> None:
    query = SeriesQuery(**{"size": 6, **params})
    results = {}
    for name, thresholds in STRATEGIES.items():
        for constant, value in thresholds.items():
            monkeypatch.setattr(postgres, constant, value)
        results[name] = paging_corpus.search("alpha", query)
    reference = results.pop("one pass")
    assert len(reference.items) == max(0, min(query.size, reference.total - query.offset))
    every = paging_corpus.search("alpha", SeriesQuery(**{**params, "page": 1, "size": 1000}))
    start = query.offset
    assert [d[SERIES_UID] for d in reference.items] == [
        d[SERIES_UID] for d in every.items[start : start + query.size]
    ]
    for name, result in results.items():
        assert result == reference, name
