"""The embedded index backend: series documents as JSONB in the platform's PostgreSQL.

One table holds every project's documents, keyed by ``(project, series_uid)``; the admin
project is a second row per series. ``doc`` is the source of truth; the other columns are
generated from it by the server (so they can never disagree with it) and carry the indexes for
the common filters, sorts and facets, plus a weighted ``tsvector`` for words: descriptions
(weight A), patient name (B) and every other keyword field (C).

Writes are one ``INSERT ... ON CONFLICT DO UPDATE`` per chunk whose update applies the merge
rule of :mod:`dicomflow.index.base` in SQL (``dicomflow_series_merge``), so the read-merge-write
happens under the row lock inside the server: concurrent writers queue on the row instead of
overwriting each other. Rows are written in ``(project, series_uid)`` order, one global order,
so two writers can never wait on each other in a cycle (no deadlock).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from dicomflow.db.projects import ADMIN_PROJECT, validate_project_name
from dicomflow.index.base import (
    FACETS,
    IndexCounts,
    SearchResult,
    SeriesIndexError,
    SeriesQuery,
    prepare_batch,
    search_words,
)

# Written as the table's comment; a table of another layout is refused, not misread.
SCHEMA_TAG = "dicomflow series index, layout 1"
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

CREATE OR REPLACE FUNCTION dicomflow_series_merge(old jsonb, new jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  merged jsonb := old || (new - ARRAY['project', 'dataset', 'batch_ids',
                                      'instance_count', 'instance_counts']);
  name text;
  counts jsonb;
BEGIN
  FOREACH name IN ARRAY ARRAY['project', 'dataset', 'batch_ids'] LOOP
    IF new ? name THEN
      merged := merged || jsonb_build_object(name, dicomflow_jsonb_union(old -> name, new -> name));
    END IF;
  END LOOP;
  IF new ? 'instance_counts' THEN
    counts := CASE WHEN jsonb_typeof(old -> 'instance_counts') = 'object'
                   THEN old -> 'instance_counts' ELSE '{}'::jsonb END || (new -> 'instance_counts');
    merged := merged || jsonb_build_object(
      'instance_counts', counts,
      'instance_count', (SELECT COALESCE(sum(value::bigint), 0) FROM jsonb_each_text(counts)));
  END IF;
  RETURN merged;
END
$$;

CREATE OR REPLACE FUNCTION dicomflow_jsonb_texts(v jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT COALESCE(array_agg(e), '{}') FROM jsonb_array_elements_text(dicomflow_jsonb_list(v)) e
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
CREATE INDEX IF NOT EXISTS series_documents_study_date
  ON series_documents (project, study_date, series_uid);
CREATE INDEX IF NOT EXISTS series_documents_patient
  ON series_documents (project, patient_id, series_uid);
CREATE INDEX IF NOT EXISTS series_documents_modality
  ON series_documents (project, modality, series_uid);
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

_UPSERT_SQL = text(
    """
    INSERT INTO series_documents AS s (project, series_uid, doc)
    SELECT r ->> 0, r ->> 1, r -> 2
      FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS t(r, n)
     ORDER BY n
    ON CONFLICT (project, series_uid) DO UPDATE
       SET doc = dicomflow_series_merge(s.doc, EXCLUDED.doc), updated_at = now()
    """
)

# Separators of dicomflow_facet_key: sections, then items of a list (never in AE titles).
_SECTION = chr(31)
_ITEM = chr(30)

_PROJECT_ONLY = "project = :project"

_SORT_COLUMNS = {
    "received_at": "received_at",
    "study_date": "study_date",
    "patient_id": "patient_id",
    "modality": "modality",
    "series_uid": "series_uid",
}


def create_index_schema(engine: Engine) -> None:
    """Create the table, its functions and indexes if missing; safe to run concurrently."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DDL_LOCK_KEY})
        exists = conn.execute(text("SELECT to_regclass('series_documents') IS NOT NULL")).scalar()
        if exists:
            found = conn.execute(
                text("SELECT obj_description(to_regclass('series_documents'), 'pg_class')")
            ).scalar()
            if found != SCHEMA_TAG:
                raise SeriesIndexError(
                    f"table series_documents is {found!r}, this version needs {SCHEMA_TAG!r}: "
                    "drop the table and re-index (the spool or PACS is the source of truth)"
                )
            return
        # Straight to the driver without parameters: the SQL holds literal '%' signs.
        cursor = conn.connection.cursor()
        try:
            cursor.execute(_SCHEMA_SQL)
            cursor.execute(f"COMMENT ON TABLE series_documents IS '{SCHEMA_TAG}'")
        finally:
            cursor.close()


def _tsquery(words: str) -> str:
    """Every word as a prefix, all required: ``'doe':* & 'jo':*``."""
    return " & ".join(f"'{w}':*" for w in search_words(words))


def _where(project: str, query: SeriesQuery | None) -> tuple[str, dict[str, Any]]:
    clauses = [_PROJECT_ONLY]
    params: dict[str, Any] = {"project": project}
    if query is None:
        return clauses[0], params
    if query.dataset:
        clauses.append("datasets && CAST(:datasets AS text[])")
        params["datasets"] = list(query.dataset)
    if query.modality:
        clauses.append("modality = ANY(:modality)")
        params["modality"] = list(query.modality)
    if query.patient_id is not None:
        clauses.append("patient_id = :patient_id")
        params["patient_id"] = query.patient_id
    if query.study_uid is not None:
        clauses.append("study_uid = :study_uid")
        params["study_uid"] = query.study_uid
    if query.body_part:
        clauses.append("body_part = ANY(:body_part)")
        params["body_part"] = list(query.body_part)
    if query.sop_class:
        clauses.append("sop_class = ANY(:sop_class)")
        params["sop_class"] = list(query.sop_class)
    if query.date_from is not None:
        clauses.append("study_date >= :date_from")
        params["date_from"] = query.date_from.isoformat()
    if query.date_to is not None:
        clauses.append("study_date <= :date_to AND study_date <> ''")
        params["date_to"] = query.date_to.isoformat()
    for flag, column in ((query.has_errors, "errors"), (query.has_warnings, "warnings")):
        if flag is True:
            clauses.append(f"{column} > 0")
        elif flag is False:
            clauses.append(f"COALESCE({column}, 0) = 0")
    for value, column in (
        (query.description, "description_words"),
        (query.patient_name, "name_words"),
        (query.q, "words"),
    ):
        if value is not None:
            clauses.append(f"{column} @@ to_tsquery('simple', :{column})")
            params[column] = _tsquery(value)
    return " AND ".join(clauses), params


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

    def upsert(self, project: str, documents: Sequence[Mapping[str, Any]]) -> int:
        """Merge documents into the project's rows and the admin rows (see the merge rule)."""
        validate_project_name(project)
        self._ensure_schema()
        folded = prepare_batch(project, documents)
        targets = [project] if project == ADMIN_PROJECT else [project, ADMIN_PROJECT]
        rows = sorted(
            ((p, uid, doc) for uid, doc in folded.items() for p in targets),
            key=lambda row: (row[0], row[1]),
        )
        for start in range(0, len(rows), CHUNK):
            chunk = json.dumps(rows[start : start + CHUNK], default=str)
            # One transaction per chunk: short row-lock holds, and a crash loses at most a chunk
            # that the retried task writes again (the merge is idempotent).
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
        """A page of matches with total and facets, from one snapshot.

        Without filters, the page comes from the sort index and the facets from the facet
        index (two statements). With filters, one statement finds the matches once and takes
        both the page and the facets from them, instead of scanning the matches twice.
        """
        self._ensure_schema()
        where, params = _where(project, query)
        column = _SORT_COLUMNS[query.sort]
        direction = "ASC" if query.order == "asc" else "DESC"
        order = f"{column} {direction}, series_uid {direction}"
        params = {**params, "limit": query.size, "offset": query.offset}
        with self._engine.connect() as conn, conn.begin():
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            if where == _PROJECT_ONLY:
                page_sql = (
                    f"SELECT doc FROM series_documents WHERE {where} ORDER BY {order} "
                    "LIMIT :limit OFFSET :offset"
                )
                items = [dict(d) for d in conn.execute(text(page_sql), params).scalars()]
                total, facets = self._facets(conn, where, params)
            else:
                items, total, facets = self._filtered(conn, where, order, params)
        return SearchResult(
            total=total, page=query.page, size=query.size, items=items, facets=facets
        )

    @staticmethod
    def _filtered(
        conn: Connection, where: str, order: str, params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], int, dict[str, dict[str, int]]]:
        sql = f"""
            WITH m AS MATERIALIZED (
              SELECT series_uid, received_at, study_date, patient_id, modality, facet_key
                FROM series_documents WHERE {where}),
            page AS (
              -- Numbered after the limit: a top-N sort, not a sort of every match.
              SELECT series_uid, row_number() OVER () AS rank FROM (
                SELECT series_uid FROM m ORDER BY {order} LIMIT :limit OFFSET :offset) top)
            SELECT page.rank, d.doc, NULL AS facet_key, NULL AS n
              FROM page JOIN series_documents d
                ON d.project = :project AND d.series_uid = page.series_uid
            UNION ALL
            SELECT NULL, NULL, facet_key, count(*) FROM m GROUP BY facet_key
        """
        ranked: list[tuple[int, dict[str, Any]]] = []
        counts: list[tuple[str, int]] = []
        for rank, doc, key, count in conn.execute(text(sql), params):
            if rank is not None:
                ranked.append((int(rank), dict(doc)))
            else:
                counts.append((key, int(count)))
        total, facets = _facet_counts(counts)
        return [doc for _, doc in sorted(ranked, key=lambda item: item[0])], total, facets

    @staticmethod
    def _facets(
        conn: Connection, where: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, dict[str, int]]]:
        # Few distinct keys (modality x dataset set x project set): grouping by the one short
        # key is cheap, and without filters it reads only the (project, facet_key) index.
        sql = f"SELECT facet_key, count(*) FROM series_documents WHERE {where} GROUP BY facet_key"
        return _facet_counts((key, int(n)) for key, n in conn.execute(text(sql), params))

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
