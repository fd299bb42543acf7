"""The OpenSearch index backend: one index per project (``project_<name>``) plus ``project_admin``.

Mappings come from the index template ``config/opensearch/index-template.json`` (dynamic
templates by Kaapana field-name suffix, text copies for descriptions, patient name and free
text), installed by :meth:`OpenSearchSeriesIndex.ensure_project`. Writes are bulk index
operations that replace a series' document whole (the writer computed it, see
:mod:`dicomflow.index.base`).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import (
    AuthenticationException,
    AuthorizationException,
    NotFoundError,
    OpenSearchException,
    RequestError,
    SSLError,
)
from opensearchpy.exceptions import (
    ConnectionError as ClientConnectionError,
)

from dicomflow.config import REPO_ROOT, IndexSettings
from dicomflow.db.projects import ADMIN_PROJECT, validate_project_name
from dicomflow.index.base import (
    BODY_PART,
    FACETS,
    INSTANCE_COUNT,
    MODALITY,
    PATIENT_ID,
    PROJECTS,
    RECEIVED_AT,
    SERIES_UID,
    SOP_CLASS_UID,
    STUDY_DATE,
    STUDY_UID,
    IndexCounts,
    SearchResult,
    SeriesIndexError,
    SeriesQuery,
    by_series,
    search_words,
)

TEMPLATE_FILE = REPO_ROOT / "config" / "opensearch" / "index-template.json"
TEMPLATE_NAME = "dicomflow-series"
INDEX_PREFIX = "project_"
FACET_SIZE = 500
# A delete racing a write of the admin copy is retried on the shard.
RETRY_ON_CONFLICT = 10

# Removing one project from the admin copy; the copy goes when no project is left.
REMOVE_PROJECT_SCRIPT = """
def projects = ctx._source.project;
String gone = params.project;
if (projects instanceof List) { projects.removeIf(p -> p == gone); }
if (projects == null || !(projects instanceof List) || projects.isEmpty()) { ctx.op = 'delete'; }
"""

_SORT_FIELDS = {
    "received_at": RECEIVED_AT,
    "study_date": STUDY_DATE,
    "patient_id": PATIENT_ID,
    "modality": MODALITY,
    "series_uid": SERIES_UID,
}
# Tokens as the template's analyzer cuts them (standard tokenizer, '_' is a separator).
_TOKEN_RE = re.compile(r"[^\W_]+(?:\.[^\W_]+)*")


def load_template(path: Path = TEMPLATE_FILE) -> dict[str, Any]:
    """The index template as a dict."""
    template: dict[str, Any] = json.loads(path.read_text())
    return template


def _prefix_all(field: str, words: str) -> dict[str, Any]:
    """Every word as a prefix of the field's words, all required.

    A word the analyzer splits (``ct-thor``) must match as a phrase whose last part is a
    prefix, as on PostgreSQL; a single token is a plain prefix query (no expansion limit).
    """
    clauses: list[dict[str, Any]] = []
    for word in search_words(words):
        tokens = [t.lower() for t in _TOKEN_RE.findall(word)]
        if len(tokens) == 1:
            clauses.append({"prefix": {field: {"value": tokens[0]}}})
        elif tokens:
            clauses.append(
                {
                    "match_phrase_prefix": {
                        field: {"query": " ".join(tokens), "max_expansions": 1000}
                    }
                }
            )
    return {"bool": {"filter": clauses}}


def build_query(query: SeriesQuery | None) -> dict[str, Any]:
    """The OpenSearch bool query of a :class:`SeriesQuery` (filters only, no scoring)."""
    filters: list[dict[str, Any]] = []
    must_not: list[dict[str, Any]] = []
    if query is None:
        return {"match_all": {}}
    for field, values in (
        ("dataset", query.dataset),
        (MODALITY, query.modality),
        (BODY_PART, query.body_part),
        (SOP_CLASS_UID, query.sop_class),
    ):
        if values:
            filters.append({"terms": {field: list(values)}})
    if query.patient_id is not None:
        filters.append({"term": {PATIENT_ID: query.patient_id}})
    if query.study_uid is not None:
        filters.append({"term": {STUDY_UID: query.study_uid}})
    dates: dict[str, str] = {}
    if query.date_from is not None:
        dates["gte"] = query.date_from.isoformat()
    if query.date_to is not None:
        dates["lte"] = query.date_to.isoformat()
    if dates:
        filters.append({"range": {STUDY_DATE: {**dates, "format": "strict_date"}}})
    for flag, field in (
        (query.has_errors, "validation.errors"),
        (query.has_warnings, "validation.warnings"),
    ):
        if flag is True:
            filters.append({"range": {field: {"gt": 0}}})
        elif flag is False:
            must_not.append({"range": {field: {"gt": 0}}})
    if query.validation:
        levels = [v for v in query.validation if v != "none"]
        either: list[dict[str, Any]] = [{"terms": {"validation.level": levels}}] if levels else []
        if "none" in query.validation:
            either.append({"bool": {"must_not": [{"exists": {"field": "validation.level"}}]}})
        filters.append({"bool": {"should": either, "minimum_should_match": 1}})
    for words, field in (
        (query.description, "description_text"),
        (query.patient_name, "patient_name_text"),
        (query.q, "all_text"),
    ):
        if words is not None:
            filters.append(_prefix_all(field, words))
    return {"bool": {"filter": filters, "must_not": must_not}}


def cluster_url(client: OpenSearch) -> str:
    """The URL a client talks to, without credentials (for messages)."""
    hosts = client.transport.hosts or [{}]
    host = hosts[0]
    scheme = "https" if host.get("use_ssl") else "http"
    return f"{scheme}://{host.get('host', '?')}:{host.get('port', '?')}{host.get('url_prefix', '')}"


@contextlib.contextmanager
def cluster_errors(url: str, action: str) -> Iterator[None]:
    """Turn the client's transport failures into :class:`SeriesIndexError` saying what to do.

    Parameters
    ----------
    url
        The cluster's URL, as the message names it.
    action
        What was being done, e.g. ``"writing to project_ct"``.
    """
    try:
        yield
    except AuthenticationException as exc:
        raise SeriesIndexError(
            f"OpenSearch at {url} refused the credentials while {action} (HTTP 401): check "
            "index.opensearch_username and index.opensearch_password"
        ) from exc
    except AuthorizationException as exc:
        raise SeriesIndexError(
            f"OpenSearch at {url} does not allow {action} (HTTP 403): the user of "
            "index.opensearch_username needs the role docs/opensearch.md describes "
            f"({exc.error})"
        ) from exc
    except SSLError as exc:
        raise SeriesIndexError(
            f"TLS with OpenSearch at {url} failed while {action}: {exc.info}. If the "
            "cluster's certificate comes from a CA of your own, set index.opensearch_ca_file "
            "to its PEM bundle"
        ) from exc
    except ClientConnectionError as exc:
        raise SeriesIndexError(
            f"cannot reach OpenSearch at {url} while {action}: {exc.info}"
        ) from exc


class OpenSearchSeriesIndex:
    """The :class:`~dicomflow.index.base.SeriesIndex` on an OpenSearch cluster.

    Parameters
    ----------
    client
        A connected client (see :func:`connect`).
    refresh
        Refresh policy of writes. ``True`` (default) refreshes the written shards before the
        call returns, so the writes are searchable, which is what a pipeline step that reports
        "indexed" needs. ``"wait_for"`` would wait for the next periodic refresh instead (up to
        ``refresh_interval``, 1 s): the pipeline and the rebuild write one series per call, so
        that would cost up to a second per series.
    index_prefix
        Index names are ``<prefix><project>``; tests use a prefix of their own so that they
        never touch a deployment's indexes. The template follows the prefix.
    """

    def __init__(
        self,
        client: OpenSearch,
        *,
        refresh: bool | Literal["wait_for"] = True,
        index_prefix: str = INDEX_PREFIX,
    ) -> None:
        self._client = client
        self._url = cluster_url(client)
        self._refresh = refresh
        self._prefix = index_prefix
        self._known: set[str] = set()
        self._template_ready = False

    @property
    def template_name(self) -> str:
        """Name of the index template this index installs."""
        if self._prefix == INDEX_PREFIX:
            return TEMPLATE_NAME
        return f"{TEMPLATE_NAME}-{self._prefix.rstrip('_')}"

    def index_name(self, project: str) -> str:
        """The OpenSearch index of a project."""
        return f"{self._prefix}{project}"

    def _ensure_template(self) -> None:
        if self._template_ready:
            return
        template = load_template()
        template["index_patterns"] = [f"{self._prefix}*"]
        with cluster_errors(self._url, f"installing the index template {self.template_name}"):
            self._client.indices.put_index_template(name=self.template_name, body=template)
        self._template_ready = True

    def ensure_project(self, project: str) -> None:
        """Install the template and create the project's and admin's indexes if missing."""
        validate_project_name(project)
        self._ensure_template()
        for name in {self.index_name(project), self.index_name(ADMIN_PROJECT)}:
            if name in self._known:
                continue
            try:
                with cluster_errors(self._url, f"creating the index {name}"):
                    self._client.indices.create(index=name)
            except RequestError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise SeriesIndexError(f"cannot create index {name}: {exc}") from exc
            self._known.add(name)

    def put(self, project: str, documents: Sequence[Mapping[str, Any]]) -> int:
        """Bulk index (replace) documents in the project's index."""
        self.ensure_project(project)
        folded = by_series(documents)
        index = self.index_name(project)
        actions = [
            {"_op_type": "index", "_index": index, "_id": uid, "_source": doc}
            for uid, doc in folded.items()
        ]
        with cluster_errors(self._url, f"writing to {index}"):
            _, errors = helpers.bulk(
                self._client, actions, raise_on_error=False, refresh=self._refresh, max_retries=3
            )
        failed = [e for e in errors if isinstance(e, dict)]
        if failed:
            raise SeriesIndexError(f"bulk write rejected: {failed[:3]}")
        return len(folded)

    def get(self, project: str, series_uid: str) -> dict[str, Any] | None:
        """The stored document or ``None``."""
        try:
            with cluster_errors(self._url, f"reading from {self.index_name(project)}"):
                found = self._client.get(index=self.index_name(project), id=series_uid)
        except NotFoundError:
            return None
        return dict(found["_source"])

    def get_many(self, project: str, series_uids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The stored documents of those series, by series (one ``_mget``)."""
        ids = list(series_uids)
        if not ids:
            return {}
        index = self.index_name(project)
        try:
            with cluster_errors(self._url, f"reading from {index}"):
                found = self._client.mget(index=index, body={"ids": ids})
        except NotFoundError:
            return {}
        # A missing index answers each id with an error instead of "found".
        return {d["_id"]: dict(d["_source"]) for d in found["docs"] if d.get("found")}

    def delete_series(self, project: str, series_uid: str) -> bool:
        """See :meth:`SeriesIndex.delete_series`."""
        with cluster_errors(self._url, f"deleting from {self.index_name(project)}"):
            return self._delete_series(project, series_uid)

    def _delete_series(self, project: str, series_uid: str) -> bool:
        if project == ADMIN_PROJECT:
            result = self._client.delete_by_query(
                index=f"{self._prefix}*",
                body={"query": {"ids": {"values": [series_uid]}}},
                refresh=True,
                conflicts="proceed",
            )
            return bool(result.get("deleted"))
        try:
            self._client.delete(
                index=self.index_name(project), id=series_uid, refresh=self._refresh
            )
        except NotFoundError:
            return False
        # The admin copy may already be gone (deleted through admin meanwhile).
        with contextlib.suppress(NotFoundError):
            self._client.update(
                index=self.index_name(ADMIN_PROJECT),
                id=series_uid,
                body={
                    "script": {
                        "lang": "painless",
                        "source": REMOVE_PROJECT_SCRIPT,
                        "params": {"project": project},
                    }
                },
                retry_on_conflict=RETRY_ON_CONFLICT,
                refresh=self._refresh,
            )
        return True

    def _search(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            with cluster_errors(self._url, f"searching {self.index_name(project)}"):
                result: dict[str, Any] = self._client.search(
                    index=self.index_name(project), body=body
                )
        except NotFoundError:
            return {}
        except OpenSearchException as exc:
            raise SeriesIndexError(f"search in {self.index_name(project)} failed: {exc}") from exc
        return result

    def search(self, project: str, query: SeriesQuery) -> SearchResult:
        """A page of matches with total and facets (one request)."""
        field = _SORT_FIELDS[query.sort]
        body = {
            "query": build_query(query),
            "from": query.offset,
            "size": query.size,
            "track_total_hits": True,
            "sort": [
                {field: {"order": query.order, "missing": "_last", "unmapped_type": "keyword"}},
                {SERIES_UID: {"order": query.order, "unmapped_type": "keyword"}},
            ],
            "aggs": {
                "modality": {"terms": {"field": MODALITY, "size": FACET_SIZE}},
                "dataset": {"terms": {"field": "dataset", "size": FACET_SIZE}},
                "project": {"terms": {"field": PROJECTS, "size": FACET_SIZE}},
            },
        }
        result = self._search(project, body)
        if not result:
            return SearchResult(0, query.page, query.size, [], {name: {} for name in FACETS})
        aggs = result.get("aggregations", {})
        facets = {
            name: {b["key"]: int(b["doc_count"]) for b in aggs.get(name, {}).get("buckets", [])}
            for name in FACETS
        }
        return SearchResult(
            total=int(result["hits"]["total"]["value"]),
            page=query.page,
            size=query.size,
            items=[dict(hit["_source"]) for hit in result["hits"]["hits"]],
            facets=facets,
        )

    def counts(self, project: str, query: SeriesQuery | None = None) -> IndexCounts:
        """Series and instances exactly; studies and patients by cardinality (exact < 40,000)."""
        body = {
            "query": build_query(query),
            "size": 0,
            "track_total_hits": True,
            "aggs": {
                "instances": {"sum": {"field": INSTANCE_COUNT}},
                "studies": {"cardinality": {"field": STUDY_UID, "precision_threshold": 40000}},
                "patients": {"cardinality": {"field": PATIENT_ID, "precision_threshold": 40000}},
            },
        }
        result = self._search(project, body)
        if not result:
            return IndexCounts(0, 0, 0, 0)
        aggs = result["aggregations"]
        return IndexCounts(
            series=int(result["hits"]["total"]["value"]),
            instances=int(aggs["instances"]["value"] or 0),
            studies=int(aggs["studies"]["value"]),
            patients=int(aggs["patients"]["value"]),
        )

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()


def connect(
    url: str,
    username: str = "",
    password: str = "",
    *,
    verify_certs: bool = True,
    ca_file: str = "",
) -> OpenSearch:
    """A client on one cluster URL.

    Parameters
    ----------
    url
        ``http://`` or ``https://`` root of the cluster.
    username, password
        HTTP basic authentication (the security plugin's internal users); none when
        ``username`` is empty.
    verify_certs
        Check the server's TLS certificate and host name (https only).
    ca_file
        PEM bundle of the CA(s) that signed the cluster's certificate; empty: the system's.
    """
    auth = (username, password) if username else None
    return OpenSearch(
        hosts=[url],
        http_auth=auth,
        verify_certs=verify_certs,
        ca_certs=ca_file or None,
        ssl_show_warn=verify_certs,
        timeout=30,
        # Threads of one process (the web service, a rebuild) share the client.
        pool_maxsize=16,
    )


def open_cluster_index(settings: IndexSettings) -> OpenSearchSeriesIndex:
    """The index on the cluster the ``index`` settings name, or the managed local node.

    Raises
    ------
    SeriesIndexError
        When neither ``index.opensearch_url`` nor ``index.opensearch_managed`` says where the
        cluster is, or the CA file does not exist.
    """
    url = settings.opensearch_endpoint
    if not url:
        raise SeriesIndexError(
            "index.backend is 'opensearch' but index.opensearch_url is empty: set it to the "
            "cluster's URL (or DICOMFLOW_INDEX__OPENSEARCH_URL), or set "
            "index.opensearch_managed: true to run a local node"
        )
    if settings.opensearch_ca_file and not Path(settings.opensearch_ca_file).is_file():
        raise SeriesIndexError(
            f"index.opensearch_ca_file: {settings.opensearch_ca_file} is not a file "
            "(give the PEM bundle of the CA that signed the cluster's certificate)"
        )
    client = connect(
        url,
        settings.opensearch_username,
        settings.opensearch_password,
        verify_certs=settings.opensearch_verify_certs,
        ca_file=settings.opensearch_ca_file,
    )
    return OpenSearchSeriesIndex(client)
