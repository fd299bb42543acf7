"""Benchmark of the series index at 100,000 series: PostgreSQL and OpenSearch side by side.

Indexes synthetic series documents (about 60 fields each, see ``bench/docgen.py``) into their
projects and the admin index through each backend's own write path, then runs the same mixed
query set (same seeds, so the same queries) on each and prints p50/p95 latency per query kind
and backend, and the write rates. It also prints the PostgreSQL backend against a reference,
the same data and queries on SQLite (JSON1 + FTS5), the other embedded candidate, as rows
``measure | ours | reference | ratio | goal``. Prints numbers; asserts nothing.

Usage::

    .venv/bin/python bench/bench_index.py [--series 100000] [--repeat 40]
        [--backends postgres,opensearch] [--opensearch-heap 1g] [--no-reference] [--smoke]

It starts a throwaway PostgreSQL (Debian's binaries, fsync on) unless ``DICOMFLOW_BENCH_PG_URL``
names a database to use (its ``series_documents`` table is dropped first), and a throwaway local
OpenSearch node (the stack's component; ``scripts/install.sh --test`` builds it) unless
``DICOMFLOW_BENCH_OPENSEARCH_URL`` names a cluster to use (its ``benchidx_*`` indexes are
replaced).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docgen import BODY_PARTS, FAMILY, MODALITIES, PROJECTS, make_document
from pgtemp import throwaway_postgres
from smoke import parse_args

from dicomflow.index.base import SeriesIndex, SeriesQuery
from dicomflow.index.postgres import PostgresSeriesIndex

GOAL_P95_MS = 50.0
BATCH = 500
# Runs of each query kind before the timed ones (caches, and the JVM's compiler for OpenSearch).
WARMUP = 5
# Indexes of the OpenSearch run on a cluster given by URL.
OPENSEARCH_PREFIX = "benchidx_"
BACKEND_NAMES = {"postgres": "PostgreSQL", "opensearch": "OpenSearch"}
WRITE_KEYS = (
    "bulk write, series/s (project + admin rows)",
    "rewrite, series/s (project + admin rows)",
)


@contextmanager
def database() -> Iterator[str]:
    """The database URL to benchmark on."""
    url = os.environ.get("DICOMFLOW_BENCH_PG_URL")
    if url:
        yield url
        return
    with throwaway_postgres() as url:
        yield url


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of the samples, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def query_set(rng: random.Random, n_series: int) -> dict[str, Callable[[], tuple[str, Any]]]:
    """Query kinds -> a maker of (project, SeriesQuery) with fresh random parameters."""

    def project() -> str:
        return rng.choice(PROJECTS)

    def date_range(days: int) -> dict[str, Any]:
        start = f"{rng.randrange(2012, 2023)}-{rng.randrange(1, 13):02d}-01"
        year, month = int(start[:4]), int(start[5:7])
        month += max(1, days // 30)
        year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
        return {"from": start, "to": f"{year}-{month:02d}-01"}

    def q(project_name: str, **params: Any) -> tuple[str, Any]:
        return project_name, SeriesQuery.from_params({k: str(v) for k, v in params.items()})

    return {
        "admin: newest page + facets": lambda: q("admin"),
        "project: newest page + facets": lambda: q(project()),
        "admin: modality": lambda: q("admin", modality=rng.choice(MODALITIES)),
        "project: dataset": lambda: (
            (p := project()),
            SeriesQuery(dataset=(f"{p[:6]}-ds{rng.randrange(8)}",)),
        ),
        "admin: patient_id": lambda: q(
            "admin", patient_id=f"PID{rng.randrange(n_series // 6):07d}"
        ),
        "admin: study date 1 month": lambda: q("admin", **date_range(30)),
        "admin: study date 1 year, by date": lambda: q(
            "admin", sort="study_date", **date_range(365)
        ),
        "admin: q patient name word": lambda: q("admin", q=rng.choice(FAMILY)),
        "admin: q rare word": lambda: q("admin", q=f"PID{rng.randrange(n_series // 6):07d}"),
        "admin: description words": lambda: q(
            "admin", description=rng.choice(("thorax contrast", "t2 sag", "lung", "pet"))
        ),
        "project: errors + modality": lambda: q(
            project(), has_errors="true", modality=rng.choice(MODALITIES[:4])
        ),
        "admin: modality+body part+1 year": lambda: q(
            "admin",
            modality=rng.choice(MODALITIES[:3]),
            body_part=rng.choice(BODY_PARTS),
            **date_range(365),
        ),
        "admin: page 20 by study date": lambda: q("admin", sort="study_date", page="20"),
    }


def run_queries(index: SeriesIndex, n: int, repeat: int) -> dict[str, float]:
    """The query set on a loaded index; returns ``"<kind> p50 ms"``/``"<kind> p95 ms"``."""
    results: dict[str, float] = {}
    qrng = random.Random(11)
    for kind, make in query_set(qrng, n).items():
        for _ in range(WARMUP):
            index.search(*make())
        samples = []
        for _ in range(repeat):
            project, query = make()
            t0 = time.perf_counter()
            index.search(project, query)
            samples.append((time.perf_counter() - t0) * 1000)
        results[f"{kind} p50 ms"] = statistics.median(samples)
        results[f"{kind} p95 ms"] = percentile(samples, 0.95)
    samples = []
    for _ in range(repeat * 5):
        uid = f"1.2.826.0.1.3680043.8.498.2.{qrng.randrange(n)}"
        t0 = time.perf_counter()
        index.get("admin", uid)
        samples.append((time.perf_counter() - t0) * 1000)
    results["get by uid p50 ms"] = statistics.median(samples)
    results["get by uid p95 ms"] = percentile(samples, 0.95)
    return results


def _put(index: SeriesIndex, project: str, docs: list[dict[str, Any]]) -> int:
    """Write documents as the pipeline's writer lays them out: the project's and admin's."""
    index.put(project, docs)
    return index.put("admin", docs)


def load_index(index: SeriesIndex, n: int) -> dict[str, float]:
    """Write n series in batches, then rewrite a tenth of them (a second batch); returns rates."""
    rng = random.Random(7)
    by_project: dict[str, list[dict[str, Any]]] = {}
    results: dict[str, float] = {}
    written = 0
    started = time.perf_counter()
    for i in range(n):
        project, doc = make_document(i, rng)
        by_project.setdefault(project, []).append(doc)
        if len(by_project[project]) == BATCH:
            written += _put(index, project, by_project.pop(project))
    for project, docs in by_project.items():
        written += _put(index, project, docs)
    elapsed = time.perf_counter() - started
    results[WRITE_KEYS[0]] = written / elapsed
    # A second batch for 10% of the series: their documents rewritten.
    rng2 = random.Random(7)
    again: dict[str, list[dict[str, Any]]] = {}
    for i in range(n // 10):
        project, doc = make_document(i, rng2)
        doc["batch_count"] = 2
        doc["dataset"] = [*doc["dataset"], "second-ds"]
        again.setdefault(project, []).append(doc)
    started = time.perf_counter()
    rewritten = sum(_put(index, p, docs) for p, docs in again.items())
    results[WRITE_KEYS[1]] = rewritten / (time.perf_counter() - started)
    return results


def bench_postgres(url: str, n: int, repeat: int, *, load: bool = True) -> dict[str, float]:
    """Index n series, run the query set; returns measure -> value."""
    engine = create_engine(url, pool_size=4)
    results = load_postgres(engine, n) if load else {}
    results.update(run_queries(PostgresSeriesIndex(engine), n, repeat))
    engine.dispose()
    return results


def load_postgres(engine: Engine, n: int) -> dict[str, float]:
    """A fresh table loaded with n series (see :func:`load_index`); returns rates."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS series_documents"))
    results = load_index(PostgresSeriesIndex(engine), n)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE series_documents"))
    return results


@contextmanager
def opensearch_cluster(heap: str) -> Iterator[tuple[str, str]]:
    """(URL, index prefix) of the cluster to benchmark on: given, or a throwaway local node."""
    url = os.environ.get("DICOMFLOW_BENCH_OPENSEARCH_URL")
    if url:
        yield url, OPENSEARCH_PREFIX
        return
    import shutil

    from dicomflow.config import load_settings
    from dicomflow.index.opensearch import INDEX_PREFIX
    from dicomflow.stack.components import OpenSearchNode
    from dicomflow.stack.isolated import stack_data_dir, stack_environment
    from dicomflow.stack.supervisor import Stack

    data_dir = stack_data_dir()
    environ = {
        **stack_environment(data_dir),
        "DICOMFLOW_INDEX__BACKEND": "opensearch",
        "DICOMFLOW_INDEX__OPENSEARCH_MANAGED": "true",
        "DICOMFLOW_INDEX__OPENSEARCH_HEAP": heap,
    }
    settings = load_settings(environ=environ)
    stack = Stack(settings, [OpenSearchNode(settings)])
    try:
        stack.up(report=lambda line: print(line, file=sys.stderr))
        # The node is the benchmark's own: the deployment's index names are used.
        yield settings.index.opensearch_endpoint, INDEX_PREFIX
    finally:
        stack.down(report=lambda line: print(line, file=sys.stderr))
        shutil.rmtree(data_dir, ignore_errors=True)


def bench_opensearch(n: int, repeat: int, heap: str) -> dict[str, float]:
    """Index n series into OpenSearch (bulk writes, as the platform writes), run the queries."""
    from dicomflow.index.opensearch import OpenSearchSeriesIndex, connect

    with opensearch_cluster(heap) as (url, prefix):
        client = connect(url)
        try:
            client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
            index = OpenSearchSeriesIndex(client, index_prefix=prefix)
            results = load_index(index, n)
            results.update(run_queries(index, n, repeat))
            return results
        finally:
            client.close()


def side_by_side(by_backend: dict[str, dict[str, float]]) -> list[str]:
    """Markdown lines: p50/p95 per query kind and backend, then the write rates."""
    lines = ["| backend | query kind | p50 ms | p95 ms |", "|---|---|---|---|"]
    first = next(iter(by_backend.values()))
    kinds = [m[: -len(" p50 ms")] for m in first if m.endswith(" p50 ms")]
    for kind in kinds:
        for backend, results in by_backend.items():
            p50 = results.get(f"{kind} p50 ms")
            p95 = results.get(f"{kind} p95 ms")
            if p50 is not None and p95 is not None:
                lines.append(f"| {BACKEND_NAMES[backend]} | {kind} | {p50:.1f} | {p95:.1f} |")
    lines += ["", "| backend | write | series/s |", "|---|---|---|"]
    for key in WRITE_KEYS:
        for backend, results in by_backend.items():
            if key in results:
                lines.append(f"| {BACKEND_NAMES[backend]} | {key} | {results[key]:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument(
        "--backends",
        default="postgres,opensearch",
        help="comma-separated: postgres, opensearch (default both)",
    )
    parser.add_argument(
        "--opensearch-heap", default="1g", help="heap of the throwaway OpenSearch node"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the SQLite reference")
    parser.add_argument(
        "--no-load",
        action="store_true",
        help="query what DICOMFLOW_BENCH_PG_URL already holds (from an earlier run)",
    )
    args = parse_args(parser, {"series": 300, "repeat": 2, "opensearch_heap": "512m"})
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKEND_NAMES]
    if unknown or not backends:
        parser.error(f"--backends: {', '.join(unknown) or 'none'}: use postgres and/or opensearch")
    by_backend: dict[str, dict[str, float]] = {}
    for backend in backends:
        print(f"== {BACKEND_NAMES[backend]}: {args.series} series", file=sys.stderr, flush=True)
        if backend == "postgres":
            with database() as url:
                by_backend[backend] = bench_postgres(
                    url, args.series, args.repeat, load=not args.no_load
                )
        else:
            by_backend[backend] = bench_opensearch(args.series, args.repeat, args.opensearch_heap)
    print(f"\n{args.series} series, {args.repeat} runs per query kind, after {WARMUP} to warm up")
    print("\n".join(side_by_side(by_backend)))
    if "postgres" not in by_backend:
        return
    ours = by_backend["postgres"]
    reference = {} if args.no_reference else bench_sqlite(args.series, args.repeat)
    print()
    print("| measure | ours (PostgreSQL) | reference (SQLite) | ratio | goal |")
    print("|---|---|---|---|---|")
    for measure, value in ours.items():
        ref = reference.get(measure)
        ratio = f"{value / ref:.2f}" if ref else "-"
        goal = f"<= {GOAL_P95_MS:.0f}" if measure.endswith("p95 ms") else "-"
        ref_text = f"{ref:.1f}" if ref is not None else "-"
        print(f"| {measure} | {value:.1f} | {ref_text} | {ratio} | {goal} |")


# --- reference: the same documents and queries on SQLite (JSON1 + FTS5) ---------------------

_SQLITE_SCHEMA = """
CREATE TABLE docs (project TEXT, series_uid TEXT, doc TEXT,
  modality TEXT GENERATED ALWAYS AS (json_extract(doc, '$."00080060 Modality_keyword"')) STORED,
  patient_id TEXT GENERATED ALWAYS AS (json_extract(doc, '$."00100020 PatientID_keyword"')) STORED,
  study_date TEXT GENERATED ALWAYS AS (json_extract(doc, '$."00080020 StudyDate_date"')) STORED,
  received_at TEXT GENERATED ALWAYS AS (json_extract(doc, '$.received_at')) STORED,
  errors INTEGER GENERATED ALWAYS AS (json_extract(doc, '$.validation.errors')) STORED,
  PRIMARY KEY (project, series_uid));
CREATE INDEX docs_received ON docs (project, received_at DESC, series_uid);
CREATE INDEX docs_date ON docs (project, study_date, series_uid);
CREATE INDEX docs_mod ON docs (project, modality);
CREATE INDEX docs_pid ON docs (project, patient_id);
CREATE TABLE docs_ds (project TEXT, series_uid TEXT, dataset TEXT);
CREATE INDEX docs_ds_i ON docs_ds (project, dataset);
CREATE VIRTUAL TABLE docs_fts USING fts5(project UNINDEXED, series_uid UNINDEXED, words);
"""


def bench_sqlite(n: int, repeat: int) -> dict[str, float]:
    """The reference: insert-or-merge in Python under SQLite's single writer, FTS5 for words."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "index.db")
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SQLITE_SCHEMA)
        rng = random.Random(7)
        started = time.perf_counter()
        pending: list[tuple[str, dict[str, Any]]] = []

        def flush() -> None:
            with db:
                for project, doc in pending:
                    uid = doc["0020000E SeriesInstanceUID_keyword"]
                    words = " ".join(str(v) for k, v in doc.items() if k.endswith("_keyword"))
                    for p in (project, "admin"):
                        db.execute(
                            "INSERT INTO docs (project, series_uid, doc) VALUES (?, ?, ?) "
                            "ON CONFLICT DO UPDATE SET doc = json_patch(doc, excluded.doc)",
                            (p, uid, json.dumps(doc)),
                        )
                        db.executemany(
                            "INSERT INTO docs_ds VALUES (?, ?, ?)",
                            [(p, uid, d) for d in doc["dataset"]],
                        )
                        db.execute("INSERT INTO docs_fts VALUES (?, ?, ?)", (p, uid, words))
            pending.clear()

        for i in range(n):
            pending.append(make_document(i, rng))
            if len(pending) == BATCH:
                flush()
        flush()
        results["bulk write, series/s (project + admin rows)"] = n / (time.perf_counter() - started)
        db.execute("ANALYZE")

        def search(project: str, query: SeriesQuery) -> None:
            where = ["d.project = ?"]
            params: list[Any] = [project]
            if query.modality:
                where.append(f"modality IN ({','.join('?' * len(query.modality))})")
                params += list(query.modality)
            if query.patient_id:
                where.append("patient_id = ?")
                params.append(query.patient_id)
            if query.date_from:
                where.append("study_date >= ?")
                params.append(query.date_from.isoformat())
            if query.date_to:
                where.append("study_date <= ?")
                params.append(query.date_to.isoformat())
            if query.has_errors:
                where.append("errors > 0")
            if query.body_part:
                where.append("json_extract(doc, '$.\"00180015 BodyPartExamined_keyword\"') = ?")
                params.append(query.body_part[0])
            if query.dataset:
                where.append(
                    "d.series_uid IN (SELECT series_uid FROM docs_ds WHERE project = ? "
                    "AND dataset = ?)"
                )
                params += [project, query.dataset[0]]
            words = query.q or query.description
            if words:
                where.append(
                    "d.series_uid IN (SELECT series_uid FROM docs_fts WHERE docs_fts MATCH ? "
                    "AND project = ?)"
                )
                params += [" ".join(f'"{w}"*' for w in words.split()), project]
            cond = " AND ".join(where)
            column = "study_date" if query.sort == "study_date" else "received_at"
            db.execute(
                f"SELECT doc FROM docs d WHERE {cond} ORDER BY {column} DESC, series_uid DESC "
                "LIMIT ? OFFSET ?",
                [*params, query.size, query.offset],
            ).fetchall()
            db.execute(
                f"SELECT modality, count(*) FROM docs d WHERE {cond} GROUP BY modality", params
            ).fetchall()
            db.execute(
                f"SELECT dataset, count(*) FROM docs_ds x JOIN docs d USING (project, series_uid)"
                f" WHERE {cond} GROUP BY dataset",
                params,
            ).fetchall()

        qrng = random.Random(11)
        for kind, make in query_set(qrng, n).items():
            samples = []
            for _ in range(repeat):
                project, query = make()
                t0 = time.perf_counter()
                search(project, query)
                samples.append((time.perf_counter() - t0) * 1000)
            results[f"{kind} p50 ms"] = statistics.median(samples)
            results[f"{kind} p95 ms"] = percentile(samples, 0.95)
        samples = []
        for _ in range(repeat * 5):
            uid = f"1.2.826.0.1.3680043.8.498.2.{qrng.randrange(n)}"
            t0 = time.perf_counter()
            db.execute(
                "SELECT doc FROM docs WHERE project = 'admin' AND series_uid = ?", (uid,)
            ).fetchone()
            samples.append((time.perf_counter() - t0) * 1000)
        results["get by uid p50 ms"] = statistics.median(samples)
        results["get by uid p95 ms"] = percentile(samples, 0.95)
        db.close()
    return results


if __name__ == "__main__":
    main()
