"""The embedded index backend: series documents as JSONB in the platform's PostgreSQL.

One table holds every project's documents, keyed by ``(project, series_uid)``; the admin
project is a second row per series. ``doc`` is the source of truth; the other columns are
generated from it by the server (so they can never disagree with it) and carry the indexes for
the common filters, sorts and facets, plus ``tsvector`` columns for words: of every keyword
field (free text), of the descriptions and of the patient name.

Writes are one ``INSERT ... ON CONFLICT DO UPDATE`` per chunk that replaces the stored document
(the writer computed it whole, see :mod:`dicomflow.index.base`). Rows are written in
``(project, series_uid)`` order, one global order, so two writers can never wait on each other
in a cycle (no deadlock).

A search is one read-only snapshot and its counts are exact. Total and facets group the matches
by one short generated key (modality, datasets, projects), which the facet, modality and
study-date indexes carry, so those filters count from an index alone. How the page is found
depends on how many rows match (see ``_search``): few are collected once for page and facets;
many are counted on their own and the page walked off the sort index, which meets them early.

The table's comment names its layout. A table of an earlier layout, as a kept data directory
holds it after an upgrade, is brought to the current one on first use (``_UPGRADES``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, Result

from dicomflow.db.projects import ADMIN_PROJECT, validate_project_name
from dicomflow.index.base import (
    FACETS,
    IndexCounts,
    SearchResult,
    SeriesIndexError,
    SeriesQuery,
    by_series,
    search_words,
)

# Written as the table's comment; a table of another layout is upgraded (see _UPGRADES) or
# refused, never misread.
SCHEMA_TAG = "dicomflow series index, layout 3"
# Statement size stays moderate and one transaction holds few row locks at a time.
CHUNK = 500
# Serializes the DDL of concurrent first starts (CREATE OR REPLACE FUNCTION is not safe to race).
_DDL_LOCK_KEY = 0x44494458  # "DIDX"

_SCHEMA_SQL = r"""
CREATE OR REPLACE FUNCTION dicomflow_jsonb_list(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN v IS NULL OR v = 'null'::jsonb THEN '[]'::jsonb
              WHEN jsonb_typeof(v) = 'array' THEN v
              ELSE jsonb_build_array(v) END
$$;

CREATE OR REPLACE FUNCTION dicomflow_jsonb_union(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT COALESCE(jsonb_agg(v ORDER BY pos), '[]'::jsonb) FROM (
    SELECT v, min(pos) AS pos FROM (
      SELECT v, n AS pos FROM jsonb_array_elements(dicomflow_jsonb_list(a)) WITH ORDINALITY t(v, n)
      UNION ALL
      SELECT v, n + 1000000000 FROM jsonb_array_elements(dicomflow_jsonb_list(b))
        WITH ORDINALITY t(v, n)
    ) items GROUP BY v
  ) firsts
$$;

-- The elements as text (JSON null as NULL). A loop rather than a query over
-- jsonb_array_elements_text: the generated columns call it three times per written row, and a
-- set-returning subquery costs several times more than these few simple expressions.
-- (Layout 1 had the query; both give the same arrays, so stored values stay valid.)
CREATE OR REPLACE FUNCTION dicomflow_jsonb_texts(v jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  items jsonb := dicomflow_jsonb_list(v);
  texts text[] := '{}';
BEGIN
  FOR i IN 0 .. jsonb_array_length(items) - 1 LOOP
    texts := texts || (items ->> i);
  END LOOP;
  RETURN texts;
END
$$;

CREATE OR REPLACE FUNCTION dicomflow_jsonb_int(v jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN (v #>> '{}')::numeric::integer END
$$;

CREATE OR REPLACE FUNCTION dicomflow_series_words(doc jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT to_tsvector('simple', concat_ws(' ',
           (SELECT string_agg(value, ' ') FROM jsonb_each_text(doc) WHERE key LIKE '%\_keyword'),
           doc ->> 'project', doc ->> 'dataset', doc ->> 'calling_ae', doc ->> 'called_ae'))
$$;

-- Modality, datasets and projects in one short text: facets group by it (few distinct values)
-- and split it client-side; an index on it lets unfiltered facets read the index only.
CREATE OR REPLACE FUNCTION dicomflow_facet_key(doc jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT COALESCE(doc ->> '00080060 Modality_keyword', '') || chr(31)
      || array_to_string(dicomflow_jsonb_texts(doc -> 'dataset'), chr(30)) || chr(31)
      || array_to_string(dicomflow_jsonb_texts(doc -> 'project'), chr(30))
$$;

CREATE TABLE IF NOT EXISTS series_documents (
  project      text        NOT NULL,
  series_uid   text        NOT NULL,
  doc          jsonb       NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  -- Words: of every keyword field (free text q), of the descriptions, of the patient name.
  words        tsvector GENERATED ALWAYS AS (dicomflow_series_words(doc)) STORED,
  description_words tsvector GENERATED ALWAYS AS (to_tsvector('simple',
                 COALESCE(doc ->> '0008103E SeriesDescription_keyword', '') || ' ' ||
                 COALESCE(doc ->> '00081030 StudyDescription_keyword', ''))) STORED,
  name_words   tsvector GENERATED ALWAYS AS (to_tsvector('simple',
                 COALESCE(doc ->> '00100010 PatientName_keyword', ''))) STORED,
  -- Sort keys are never NULL ('' when missing) so one index serves both directions.
  modality     text     GENERATED ALWAYS AS
                 (COALESCE(doc ->> '00080060 Modality_keyword', '')) STORED,
  patient_id   text     GENERATED ALWAYS AS
                 (COALESCE(doc ->> '00100020 PatientID_keyword', '')) STORED,
  study_date   text     GENERATED ALWAYS AS
                 (COALESCE(left(doc ->> '00080020 StudyDate_date', 10), '')) STORED,
  received_at  text     GENERATED ALWAYS AS (COALESCE(doc ->> 'received_at', '')) STORED,
  study_uid    text     GENERATED ALWAYS AS (doc ->> '0020000D StudyInstanceUID_keyword') STORED,
  body_part    text     GENERATED ALWAYS AS
                 (upper(doc ->> '00180015 BodyPartExamined_keyword')) STORED,
  sop_class    text     GENERATED ALWAYS AS (doc ->> '00080016 SOPClassUID_keyword') STORED,
  datasets     text[]   GENERATED ALWAYS AS (dicomflow_jsonb_texts(doc -> 'dataset')) STORED,
  facet_key    text     GENERATED ALWAYS AS (dicomflow_facet_key(doc)) STORED,
  errors       integer  GENERATED ALWAYS AS (dicomflow_jsonb_int(doc #> '{validation,errors}'))
                        STORED,
  warnings     integer  GENERATED ALWAYS AS (dicomflow_jsonb_int(doc #> '{validation,warnings}'))
                        STORED,
  instances    integer  GENERATED ALWAYS AS (dicomflow_jsonb_int(doc -> 'instance_count'))
                        STORED,
  PRIMARY KEY (project, series_uid)
) WITH (toast_tuple_target = 512, autovacuum_vacuum_insert_scale_factor = 0.02,
        autovacuum_vacuum_scale_factor = 0.05);
-- toast_tuple_target: documents go out of line, so the heap stays narrow and counts, facets
-- and sorts scan the generated columns without reading the documents. Frequent vacuums keep
-- the visibility map fresh, which index-only scans (facets, counts) depend on.

CREATE INDEX IF NOT EXISTS series_documents_received
  ON series_documents (project, received_at, series_uid);
-- The facet key rides along (INCLUDE) where a filter is broad enough for facets to matter:
-- total and facets of a modality or study-date filter then read the index only, not the rows.
CREATE INDEX IF NOT EXISTS series_documents_study_date_facets
  ON series_documents (project, study_date, series_uid) INCLUDE (facet_key);
CREATE INDEX IF NOT EXISTS series_documents_patient
  ON series_documents (project, patient_id, series_uid);
CREATE INDEX IF NOT EXISTS series_documents_modality_facets
  ON series_documents (project, modality, series_uid) INCLUDE (facet_key);
CREATE INDEX IF NOT EXISTS series_documents_facets ON series_documents (project, facet_key);
CREATE INDEX IF NOT EXISTS series_documents_study ON series_documents (study_uid);
CREATE INDEX IF NOT EXISTS series_documents_datasets ON series_documents USING gin (datasets);
-- Word indexes split between admin and project rows: a search in one never visits the other's
-- rows (a GIN index cannot lead with the project column without the btree_gin extension).
CREATE INDEX IF NOT EXISTS series_documents_words_admin
  ON series_documents USING gin (words) WHERE project = 'admin';
CREATE INDEX IF NOT EXISTS series_documents_words_projects
  ON series_documents USING gin (words) WHERE project <> 'admin';
CREATE INDEX IF NOT EXISTS series_documents_description_admin
  ON series_documents USING gin (description_words) WHERE project = 'admin';
CREATE INDEX IF NOT EXISTS series_documents_description_projects
  ON series_documents USING gin (description_words) WHERE project <> 'admin';
CREATE INDEX IF NOT EXISTS series_documents_name_admin
  ON series_documents USING gin (name_words) WHERE project = 'admin';
CREATE INDEX IF NOT EXISTS series_documents_name_projects
  ON series_documents USING gin (name_words) WHERE project <> 'admin';
"""

# Earlier layouts upgraded in place: their tag -> what to run after _SCHEMA_SQL (which makes
# whatever is missing and replaces the functions). Only indexes and function bodies changed, so
# the rows stay as they are; building the new indexes blocks writes for a while (seconds per
# 100,000 series), searches go on.
_UPGRADES: dict[str, str] = {
    "dicomflow series index, layout 1": """
DROP INDEX IF EXISTS series_documents_study_date;
DROP INDEX IF EXISTS series_documents_modality;
""",
    # Layout 2's functions called each other by bare name: a pg_restore (empty search path)
    # could not fill the generated columns. _SCHEMA_SQL has replaced them with qualified ones.
    "dicomflow series index, layout 2": "",
}

_UPSERT_SQL = text(
    """
    INSERT INTO series_documents AS s (project, series_uid, doc)
    SELECT r ->> 0, r ->> 1, r -> 2
      FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS t(r, n)
     ORDER BY n
    ON CONFLICT (project, series_uid) DO UPDATE
       SET doc = EXCLUDED.doc, updated_at = now()
    """
)

# Separators of dicomflow_facet_key: sections, then items of a list (never in AE titles).
_SECTION = chr(31)
_ITEM = chr(30)

_PROJECT_ONLY = "project = :project"
# A condition of a search: (the column it tests, its SQL).
Clause = tuple[str, str]
# How a filtered search runs (see _search). Up to about this many matches they are collected
# once, in one statement, and page, total and facets taken from them (a few milliseconds)...
FEW_MATCHES = 2000
# ... with more, total and facets are counted on their own, and the page is walked off the
# sort index: at most this many rows (a few milliseconds; about 10 when the words of each row
# must be read from TOAST), after which the matches are sorted after all.
WALK_BUDGET = 1000

_SORT_COLUMNS = {
    "received_at": "received_at",
    "study_date": "study_date",
    "patient_id": "patient_id",
    "modality": "modality",
    "series_uid": "series_uid",
}


def create_index_schema(engine: Engine) -> None:
    """Create the table, its functions and indexes if missing; safe to run concurrently.

    A table of an earlier layout (the data directory outlives upgrades) is upgraded in place.

    Raises
    ------
    SeriesIndexError
        When the table has a layout this version neither has nor knows how to upgrade.
    """
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DDL_LOCK_KEY})
        found = _layout(conn)
        if found == SCHEMA_TAG:
            return
        if found is not None and found not in _UPGRADES:
            raise SeriesIndexError(
                f"table series_documents is {found!r}, this version needs {SCHEMA_TAG!r}: "
                "drop the table and re-index (the spool or PACS is the source of truth)"
            )
        schema = conn.execute(text("SELECT quote_ident(current_schema())")).scalar()
        if schema is None:
            raise SeriesIndexError(
                "no schema to create the series index in: the connection's search_path "
                "names no existing schema"
            )
        # Straight to the driver without parameters: the SQL holds literal '%' signs.
        cursor = conn.connection.cursor()
        try:
            cursor.execute(_qualified(_SCHEMA_SQL, str(schema)))
            if found is not None:
                cursor.execute(_UPGRADES[found])
            cursor.execute(f"COMMENT ON TABLE series_documents IS '{SCHEMA_TAG}'")
        finally:
            cursor.close()


def _qualified(sql: str, schema: str) -> str:
    """``sql`` with every ``dicomflow_*`` function named in ``schema`` (an SQL identifier).

    A function body is resolved when it runs, with the caller's search path; qualified calls
    make the functions work without one, as in a pg_restore of a backup.
    """
    return sql.replace("dicomflow_", f"{schema}.dicomflow_")


def _layout(conn: Connection) -> str | None:
    """The layout tag of the existing table (``""`` without a comment), ``None`` if none."""
    exists = conn.execute(text("SELECT to_regclass('series_documents') IS NOT NULL")).scalar()
    if not exists:
        return None
    found = conn.execute(
        text("SELECT obj_description(to_regclass('series_documents'), 'pg_class')")
    ).scalar()
    return str(found or "")


def _tsquery(words: str) -> str:
    """Every word as a prefix, all required: ``'doe':* & 'jo':*``."""
    return " & ".join(f"'{w}':*" for w in search_words(words))


def _where(project: str, query: SeriesQuery | None) -> tuple[str, dict[str, Any]]:
    """The SQL condition of the project's rows matching the query, and its parameters."""
    clauses, params = _filters(query)
    return _conjunction(clauses), {**params, "project": project}


def _conjunction(clauses: Iterable[Clause]) -> str:
    """The condition of the project's rows for which every clause holds."""
    return " AND ".join([_PROJECT_ONLY, *(sql for _, sql in clauses)])


def _filters(query: SeriesQuery | None) -> tuple[list[Clause], dict[str, Any]]:
    """The query's conditions besides the project (all must hold), and their parameters."""
    clauses: list[Clause] = []
    params: dict[str, Any] = {}
    if query is None:
        return clauses, params
    if query.dataset:
        clauses.append(("datasets", "datasets && CAST(:datasets AS text[])"))
        params["datasets"] = list(query.dataset)
    if query.modality:
        clauses.append(("modality", "modality = ANY(:modality)"))
        params["modality"] = list(query.modality)
    if query.patient_id is not None:
        clauses.append(("patient_id", "patient_id = :patient_id"))
        params["patient_id"] = query.patient_id
    if query.study_uid is not None:
        clauses.append(("study_uid", "study_uid = :study_uid"))
        params["study_uid"] = query.study_uid
    if query.body_part:
        clauses.append(("body_part", "body_part = ANY(:body_part)"))
        params["body_part"] = list(query.body_part)
    if query.sop_class:
        clauses.append(("sop_class", "sop_class = ANY(:sop_class)"))
        params["sop_class"] = list(query.sop_class)
    if query.date_from is not None:
        clauses.append(("study_date", "study_date >= :date_from"))
        params["date_from"] = query.date_from.isoformat()
    if query.date_to is not None:
        clauses.append(("study_date", "study_date <= :date_to AND study_date <> ''"))
        params["date_to"] = query.date_to.isoformat()
    for flag, column in ((query.has_errors, "errors"), (query.has_warnings, "warnings")):
        if flag is True:
            clauses.append((column, f"{column} > 0"))
        elif flag is False:
            clauses.append((column, f"COALESCE({column}, 0) = 0"))
    if query.validation:
        clauses.append(("doc", "COALESCE(doc #>> '{validation,level}', 'none') = ANY(:validation)"))
        params["validation"] = list(query.validation)
    for value, column in (
        (query.description, "description_words"),
        (query.patient_name, "name_words"),
        (query.q, "words"),
    ):
        if value is not None:
            clauses.append((column, f"{column} @@ to_tsquery('simple', :{column})"))
            params[column] = _tsquery(value)
    return clauses, params


def _facet_counts(
    rows: Iterable[tuple[str, int]],
) -> tuple[int, dict[str, dict[str, int]]]:
    """Total and facets from ``(facet_key, count)`` rows (see ``dicomflow_facet_key``)."""
    facets: dict[str, dict[str, int]] = {name: {} for name in FACETS}
    total = 0
    for key, count in rows:
        total += count
        modality, datasets, projects = key.split(_SECTION)
        for name, values in (
            ("modality", [modality] if modality else []),
            ("dataset", datasets.split(_ITEM) if datasets else []),
            ("project", projects.split(_ITEM) if projects else []),
        ):
            for value in set(values):
                facets[name][value] = facets[name].get(value, 0) + count
    for name in FACETS:
        facets[name] = dict(sorted(facets[name].items(), key=lambda kv: (-kv[1], kv[0])))
    return total, facets


def _order(query: SeriesQuery, key: str = "", uid: str = "series_uid") -> str:
    """ORDER BY terms of the query's sort: ``key`` (default the sort column), then ``uid``."""
    direction = "ASC" if query.order == "asc" else "DESC"
    return f"{key or _SORT_COLUMNS[query.sort]} {direction}, {uid} {direction}"


def _plain_page_sql(where: str, query: SeriesQuery) -> str:
    """One page, the planner's way: a walk of the sort index when only its column is filtered."""
    return (
        f"SELECT doc FROM series_documents WHERE {where} ORDER BY {_order(query)} "
        "LIMIT :limit OFFSET :offset"
    )


def _sorted_page_sql(where: str, query: SeriesQuery) -> str:
    """One page sorted from the matches: collected first, their sort keys sorted (top-N).

    The fence (a materialized CTE) keeps the planner from walking the sort index instead, which
    it does when it expects many matches; its estimates can be far off (a prefix search in a
    column of few distinct words counts as 2% per word, combined filters as independent), and
    a walk expected to stop early can then read the whole project.
    """
    column = _SORT_COLUMNS[query.sort]
    return f"""
        WITH m AS MATERIALIZED (
          SELECT series_uid, {column} AS sort_key FROM series_documents WHERE {where}),
        top AS (SELECT series_uid, sort_key FROM m ORDER BY {_order(query, "sort_key")}
                 LIMIT :limit OFFSET :offset)
        SELECT d.doc FROM top JOIN series_documents d
            ON d.project = :project AND d.series_uid = top.series_uid
         ORDER BY {_order(query, "top.sort_key", "top.series_uid")}
    """


def _walked_page_sql(clauses: list[Clause], query: SeriesQuery) -> str:
    """One page from the first ``:budget`` rows of the project in sort order that match.

    Conditions on the sort column bound the walk (an index range); the others are tested on
    the rows walked. The inner LIMIT makes the walk of the sort index certain and bounded (the
    planner pushes no condition into a subquery with a LIMIT); the page is exact when it comes
    out full, since no later row sorts before the rows walked.
    """
    column = _SORT_COLUMNS[query.sort]
    bounds = _conjunction(c for c in clauses if c[0] == column)
    tests = " AND ".join(sql for name, sql in clauses if name != column)
    return f"""
        SELECT doc FROM (
          SELECT doc, {column} AS sort_key, series_uid, ({tests}) AS hit
            FROM series_documents WHERE {bounds} ORDER BY {_order(query)} LIMIT :budget) walked
         WHERE hit ORDER BY {_order(query, "sort_key")} LIMIT :limit OFFSET :offset
    """


def _one_pass_sql(where: str, query: SeriesQuery) -> str:
    """Page and facets from one collection of the matches: rows ``(rank, doc, facet_key, n)``.

    Page rows carry their rank and document, facet rows their key and count. The page's
    documents are read after the top-N sort of the matches' sort keys, so only theirs.
    """
    column = _SORT_COLUMNS[query.sort]
    return f"""
        WITH m AS MATERIALIZED (
          SELECT series_uid, {column} AS sort_key, facet_key FROM series_documents
           WHERE {where}),
        top AS (
          SELECT series_uid, row_number() OVER (ORDER BY {_order(query, "sort_key")}) AS rank
            FROM (SELECT series_uid, sort_key FROM m ORDER BY {_order(query, "sort_key")}
                   LIMIT :limit OFFSET :offset) page)
        SELECT top.rank, d.doc, NULL AS facet_key, NULL AS n
          FROM top JOIN series_documents d
            ON d.project = :project AND d.series_uid = top.series_uid
        UNION ALL
        SELECT NULL, NULL, facet_key, count(*) FROM m GROUP BY facet_key
    """


def _documents(result: Result[Any]) -> list[dict[str, Any]]:
    """The documents of a result whose first column is ``doc``."""
    return [dict(doc) for doc in result.scalars()]


def _search(
    conn: Connection, clauses: list[Clause], params: dict[str, Any], query: SeriesQuery
) -> tuple[list[dict[str, Any]], int, dict[str, dict[str, int]]]:
    """Page, total and facets of the project's rows matching every clause.

    Few matches (as the planner estimates them, which costs a fraction of a millisecond) are
    collected once for everything. With many, reading each match for its sort key as well
    would cost more than counting (often from an index alone) and walking the sort index for
    the page separately. A wrong estimate only picks the slower of two exact ways.
    """
    where = _conjunction(clauses)
    params = {**params, "limit": query.size, "offset": query.offset}
    if clauses and _estimated_matches(conn, where, params) <= FEW_MATCHES:
        return _one_pass(conn, where, query, params)
    total, facets = _facets(conn, where, params)
    return _page(conn, clauses, params, query, total), total, facets


def _estimated_matches(conn: Connection, where: str, params: dict[str, Any]) -> float:
    """The planner's estimate of the number of rows matching ``where``."""
    sql = f"EXPLAIN (FORMAT JSON) SELECT 1 FROM series_documents WHERE {where}"
    plan = conn.execute(text(sql), params).scalar_one()
    if isinstance(plan, str):  # a driver that does not decode json
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


def _one_pass(
    conn: Connection, where: str, query: SeriesQuery, params: dict[str, Any]
) -> tuple[list[dict[str, Any]], int, dict[str, dict[str, int]]]:
    """Page, total and facets from one statement (see :func:`_one_pass_sql`)."""
    ranked: list[tuple[int, dict[str, Any]]] = []
    counts: list[tuple[str, int]] = []
    for rank, doc, key, count in conn.execute(text(_one_pass_sql(where, query)), params):
        if rank is not None:
            ranked.append((int(rank), dict(doc)))
        else:
            counts.append((key, int(count)))
    total, facets = _facet_counts(counts)
    return [doc for _, doc in sorted(ranked, key=lambda item: item[0])], total, facets


def _facets(
    conn: Connection, where: str, params: dict[str, Any]
) -> tuple[int, dict[str, dict[str, int]]]:
    """Total and facets of the rows matching ``where``."""
    # Few distinct keys (modality x dataset set x project set): grouping by the one short key
    # is cheap, and the facet, modality and study date indexes carry the key, so without
    # filters or with only those filters the count reads an index only.
    sql = f"SELECT facet_key, count(*) FROM series_documents WHERE {where} GROUP BY facet_key"
    return _facet_counts((key, int(n)) for key, n in conn.execute(text(sql), params))


def _page(
    conn: Connection,
    clauses: list[Clause],
    params: dict[str, Any],
    query: SeriesQuery,
    total: int,
) -> list[dict[str, Any]]:
    """The page's documents, fetched the way the number of matches ``total`` calls for.

    When only the sort column is filtered, the sort index is walked (within the filter's
    range). Else, with many matches the sort index is walked for a bounded number of rows
    (many matches are usually met early) and, should the page not fill, or with few matches,
    the matches are sorted.
    """
    expected = min(query.size, total - query.offset)
    if expected <= 0:
        return []
    where = _conjunction(clauses)
    if all(name == _SORT_COLUMNS[query.sort] for name, _ in clauses):
        return _documents(conn.execute(text(_plain_page_sql(where, query)), params))
    if total > FEW_MATCHES:
        walk = text(_walked_page_sql(clauses, query))
        items = _documents(conn.execute(walk, {**params, "budget": WALK_BUDGET}))
        if len(items) == expected:
            return items
    return _documents(conn.execute(text(_sorted_page_sql(where, query)), params))


class PostgresSeriesIndex:
    """The :class:`~dicomflow.index.base.SeriesIndex` on PostgreSQL.

    Parameters
    ----------
    engine
        An engine on the platform database; the index creates its table there on first use.
    owns_engine
        Dispose of the engine on :meth:`close` (when the index made it).
    """

    def __init__(self, engine: Engine, *, owns_engine: bool = False) -> None:
        self._engine = engine
        self._owns_engine = owns_engine
        self._ready = False
        self._lock = threading.Lock()

    def _ensure_schema(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                create_index_schema(self._engine)
                self._ready = True

    def ensure_project(self, project: str) -> None:
        """Nothing to create per project here: one table holds them all; checks the name."""
        validate_project_name(project)
        self._ensure_schema()

    def put(self, project: str, documents: Sequence[Mapping[str, Any]]) -> int:
        """Store documents in the project's rows, replacing the series' stored ones."""
        validate_project_name(project)
        self._ensure_schema()
        folded = by_series(documents)
        rows = sorted(((project, uid, doc) for uid, doc in folded.items()), key=lambda r: r[1])
        for start in range(0, len(rows), CHUNK):
            chunk = json.dumps(rows[start : start + CHUNK], default=str)
            # One transaction per chunk: short row-lock holds, and a crash loses at most a chunk
            # that the retried step writes again.
            with self._engine.begin() as conn:
                conn.execute(_UPSERT_SQL, {"rows": chunk})
        return len(folded)

    def get(self, project: str, series_uid: str) -> dict[str, Any] | None:
        """The stored document or ``None``."""
        self._ensure_schema()
        with self._engine.connect() as conn:
            doc = conn.execute(
                text("SELECT doc FROM series_documents WHERE project = :p AND series_uid = :u"),
                {"p": project, "u": series_uid},
            ).scalar()
        return dict(doc) if doc is not None else None

    def get_many(self, project: str, series_uids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The stored documents of those series, by series."""
        self._ensure_schema()
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT series_uid, doc FROM series_documents "
                    "WHERE project = :p AND series_uid = ANY(:u)"
                ),
                {"p": project, "u": list(series_uids)},
            )
            return {uid: dict(doc) for uid, doc in rows}

    def delete_series(self, project: str, series_uid: str) -> bool:
        """Remove the series from the project (everywhere for admin); see the interface."""
        self._ensure_schema()
        params = {"p": project, "u": series_uid}
        with self._engine.begin() as conn:
            if project == ADMIN_PROJECT:
                # Rows locked in upsert's order first, so a concurrent upsert cannot deadlock.
                conn.execute(
                    text(
                        "SELECT 1 FROM series_documents WHERE series_uid = :u "
                        'ORDER BY project COLLATE "C" FOR UPDATE'
                    ),
                    params,
                )
                deleted = conn.execute(
                    text("DELETE FROM series_documents WHERE series_uid = :u"), params
                ).rowcount
                return bool(deleted)
            # Lock both rows in the order upsert writes them (codepoint order, as Python sorts):
            # otherwise a concurrent upsert of the series could deadlock with us.
            conn.execute(
                text(
                    "SELECT 1 FROM series_documents WHERE series_uid = :u "
                    'AND project IN (:p, :admin) ORDER BY project COLLATE "C" FOR UPDATE'
                ),
                {**params, "admin": ADMIN_PROJECT},
            )
            deleted = conn.execute(
                text("DELETE FROM series_documents WHERE project = :p AND series_uid = :u"), params
            ).rowcount
            if not deleted:
                return False
            conn.execute(
                text(
                    """
                    UPDATE series_documents
                       SET doc = jsonb_set(doc, '{project}', COALESCE((
                             SELECT jsonb_agg(e) FROM jsonb_array_elements(
                               dicomflow_jsonb_list(doc -> 'project')) e
                              WHERE e <> to_jsonb(CAST(:p AS text))), '[]'::jsonb)),
                           updated_at = now()
                     WHERE project = :admin AND series_uid = :u
                    """
                ),
                {**params, "admin": ADMIN_PROJECT},
            )
            conn.execute(
                text(
                    "DELETE FROM series_documents WHERE project = :admin AND series_uid = :u "
                    "AND jsonb_array_length(dicomflow_jsonb_list(doc -> 'project')) = 0"
                ),
                {**params, "admin": ADMIN_PROJECT},
            )
        return True

    def search(self, project: str, query: SeriesQuery) -> SearchResult:
        """A page of matches with total and facets, from one snapshot (see :func:`_search`)."""
        self._ensure_schema()
        clauses, params = _filters(query)
        with self._engine.connect() as conn, conn.begin():
            # JIT compiling pays off only for long analytic queries: on a broad search it
            # would cost more than it saves once the table is big enough to trigger it.
            conn.execute(
                text(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL jit = off"
                )
            )
            items, total, facets = _search(conn, clauses, {**params, "project": project}, query)
        return SearchResult(
            total=total, page=query.page, size=query.size, items=items, facets=facets
        )

    def counts(self, project: str, query: SeriesQuery | None = None) -> IndexCounts:
        """Series, instances, distinct studies and patients."""
        self._ensure_schema()
        where, params = _where(project, query)
        sql = (
            "SELECT count(*), COALESCE(sum(instances), 0), count(DISTINCT study_uid), "
            f"count(DISTINCT patient_id) FROM series_documents WHERE {where}"
        )
        with self._engine.connect() as conn:
            row = conn.execute(text(sql), params).one()
        return IndexCounts(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def close(self) -> None:
        """Dispose of the engine's connections if the index owns the engine."""
        if self._owns_engine:
            self._engine.dispose()
