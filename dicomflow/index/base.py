"""The series index: one interface, its query and result types, and the merge rule.

A series document is a JSON object, one per series, identified by its Series Instance UID, with
Kaapana-compatible field names (``"00080060 Modality_keyword"``) plus platform fields
(``project``, ``dataset``, ``instance_count``, ``batch_ids``, ``validation``, ...). Every project
has an index of its own and the ``admin`` index holds every series, so a query is always scoped
to exactly one project and a user of project A never sees project B's series.

The merge rule (shared by every backend, :func:`merge_documents` is the reference)
----------------------------------------------------------------------------------
Writing a document for a series that is already indexed merges it into the stored one:

* a top-level field present in the new document replaces the stored value (nested objects such
  as ``validation`` are replaced as a whole, so a new validation supersedes the old one);
* the list fields ``project``, ``dataset`` and ``batch_ids`` become the union of both, in order
  of first appearance (a scalar counts as a one-element list);
* ``instance_count`` is kept per batch in ``instance_counts`` (``{batch key: count}``, where the
  batch key is the document's ``batch_ids`` joined by ``+``, or ``""`` without batch ids); a new
  document replaces its batch's entry and ``instance_count`` is the sum of the entries. So a
  series arriving in two batches adds up, and indexing the same batch twice counts it once.
  (An instance re-sent inside a *new* batch is counted again: exact counts would need the SOP
  Instance UIDs, which documents do not carry.)
* fields absent from the new document are kept.

Repeating a write changes nothing: ``merge(merge(a, b), b) == merge(a, b)``, so retried tasks
are safe. Writes of different batches may arrive in any order for the list fields and counts;
for the other fields the last write wins (a late retry of an old batch brings its values back).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol, runtime_checkable

# Kaapana-compatible field names the index filters, sorts and searches on.
PATIENT_ID = "00100020 PatientID_keyword"
PATIENT_NAME = "00100010 PatientName_keyword"
MODALITY = "00080060 Modality_keyword"
BODY_PART = "00180015 BodyPartExamined_keyword"
STUDY_DATE = "00080020 StudyDate_date"
STUDY_TIME = "00080030 StudyTime_time"
SERIES_DESCRIPTION = "0008103E SeriesDescription_keyword"
STUDY_DESCRIPTION = "00081030 StudyDescription_keyword"
SOP_CLASS_UID = "00080016 SOPClassUID_keyword"
STUDY_UID = "0020000D StudyInstanceUID_keyword"
SERIES_UID = "0020000E SeriesInstanceUID_keyword"

# Platform fields.
PROJECTS = "project"
DATASETS = "dataset"
BATCH_IDS = "batch_ids"
INSTANCE_COUNT = "instance_count"
INSTANCE_COUNTS = "instance_counts"
RECEIVED_AT = "received_at"
VALIDATION = "validation"

UNION_FIELDS: tuple[str, ...] = (PROJECTS, DATASETS, BATCH_IDS)
FACETS: tuple[str, ...] = ("modality", "dataset", "project")

SortKey = Literal["received_at", "study_date", "patient_id", "modality", "series_uid"]
SORT_KEYS: tuple[str, ...] = ("received_at", "study_date", "patient_id", "modality", "series_uid")
Order = Literal["asc", "desc"]

MAX_PAGE_SIZE = 1000
# Deep paging is what a UI never needs and what makes OpenSearch refuse (max_result_window).
MAX_WINDOW = 10_000

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A search word: anything between separators that holds at least one letter or digit.
_WORD_RE = re.compile(r"[^\s'\"\\:&|!()<>*]+")


class QueryError(ValueError):
    """A query parameter that cannot be used; ``parameter`` names it, the message says why.

    Parameters
    ----------
    parameter
        The parameter's name as the caller spelled it (``from``, ``size``, ...).
    message
        What is wrong, starting with the parameter name.
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class SeriesIndexError(RuntimeError):
    """The index backend failed (unreachable, rejected a write, ...)."""


def search_words(text: str) -> list[str]:
    """The words of a free-text query: split at spaces and query-syntax characters."""
    return [w for w in _WORD_RE.findall(text) if any(c.isalnum() for c in w)]


@dataclass(frozen=True)
class SeriesQuery:
    """A search over one project's series; every filter is optional and filters combine (AND).

    Attributes
    ----------
    dataset, modality, body_part, sop_class
        Any of these values (OR within a filter); modality and body part are upper-cased.
    patient_id, study_uid
        Exact value.
    patient_name
        Words, each the prefix of a word of the patient name (``doe jo`` finds ``DOE^JOHN``).
    date_from, date_to
        Study date range, both ends included.
    description
        Words, each the prefix of a word of the study or series description.
    has_errors, has_warnings
        ``True``: validation found at least one; ``False``: none found (or not validated).
    q
        Free text: words, each the prefix of a word of any keyword field of the series.
    page, size
        1-based page number and page size.
    sort, order
        Sort key and direction; ties are broken by Series Instance UID.
    """

    dataset: tuple[str, ...] = ()
    modality: tuple[str, ...] = ()
    patient_id: str | None = None
    patient_name: str | None = None
    body_part: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None
    description: str | None = None
    has_errors: bool | None = None
    has_warnings: bool | None = None
    sop_class: tuple[str, ...] = ()
    study_uid: str | None = None
    q: str | None = None
    page: int = 1
    size: int = 50
    sort: SortKey = "received_at"
    order: Order = "desc"

    def __post_init__(self) -> None:
        if self.page < 1:
            raise QueryError("page", f"page: {self.page} must be 1 or more")
        if not 1 <= self.size <= MAX_PAGE_SIZE:
            raise QueryError("size", f"size: {self.size} must be between 1 and {MAX_PAGE_SIZE}")
        if self.page * self.size > MAX_WINDOW:
            raise QueryError(
                "page",
                f"page: {self.page} x size {self.size} reaches past result {MAX_WINDOW}; "
                "narrow the filters instead of paging that deep",
            )
        if self.sort not in SORT_KEYS:
            raise QueryError("sort", f"sort: {self.sort!r} is not one of {', '.join(SORT_KEYS)}")
        if self.order not in ("asc", "desc"):
            raise QueryError("order", f"order: {self.order!r} is not 'asc' or 'desc'")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise QueryError(
                "to", f"to: {self.date_to.isoformat()} is before from {self.date_from.isoformat()}"
            )
        # Codes are upper case in DICOM; accept what people type.
        object.__setattr__(self, "modality", tuple(m.strip().upper() for m in self.modality))
        object.__setattr__(self, "body_part", tuple(b.strip().upper() for b in self.body_part))
        for name in ("patient_name", "description", "q"):
            value = getattr(self, name)
            if value is not None and not search_words(value):
                raise QueryError(name, f"{name}: {value!r} holds no word to search for")

    @property
    def offset(self) -> int:
        """Index of the first result of the page."""
        return (self.page - 1) * self.size

    @classmethod
    def from_params(cls, params: Mapping[str, str | Sequence[str]]) -> SeriesQuery:
        """Build a query from URL or command-line parameters (strings, possibly repeated).

        Parameter names are those of :data:`QUERY_PARAMETERS` (``from``/``to`` for the date
        range). List filters accept repeated parameters; ``modality``, ``body_part`` and
        ``sop_class`` also accept comma-separated values. Empty values are ignored.

        Raises
        ------
        QueryError
            For an unknown parameter or a malformed value, naming the parameter.
        """
        values: dict[str, list[str]] = {}
        for name, raw in params.items():
            if name not in QUERY_PARAMETERS:
                raise QueryError(
                    name,
                    f"{name}: unknown query parameter; known: {', '.join(QUERY_PARAMETERS)}",
                )
            items = [raw] if isinstance(raw, str) else list(raw)
            values[name] = [v.strip() for v in items if v.strip()]
        kwargs: dict[str, Any] = {}
        for name, items in values.items():
            if not items:
                continue
            kind = QUERY_PARAMETERS[name]
            if kind == "list":
                kwargs[name] = tuple(items)
            elif kind == "codes":
                kwargs[name] = tuple(c for v in items for c in v.split(",") if c.strip())
            else:
                if len(items) > 1:
                    raise QueryError(name, f"{name}: given {len(items)} times, allowed once")
                kwargs[_ATTRIBUTE.get(name, name)] = _parse_scalar(name, kind, items[0])
        return cls(**kwargs)


# Parameter name -> kind: how from_params reads it.
QUERY_PARAMETERS: dict[str, str] = {
    "dataset": "list",
    "modality": "codes",
    "patient_id": "str",
    "patient_name": "str",
    "body_part": "codes",
    "from": "date",
    "to": "date",
    "description": "str",
    "has_errors": "bool",
    "has_warnings": "bool",
    "sop_class": "codes",
    "study_uid": "str",
    "q": "str",
    "page": "int",
    "size": "int",
    "sort": "str",
    "order": "str",
}
_ATTRIBUTE = {"from": "date_from", "to": "date_to"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_date(name: str, raw: str) -> date:
    """A ``YYYY-MM-DD`` date, or :class:`QueryError` naming ``name``."""
    try:
        if not _DATE_RE.match(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise QueryError(name, f"{name}: {raw!r} is not a date YYYY-MM-DD") from None


def _parse_scalar(name: str, kind: str, raw: str) -> Any:
    if kind == "date":
        return parse_date(name, raw)
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise QueryError(name, f"{name}: {raw!r} is not a whole number") from None
    if kind == "bool":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise QueryError(name, f"{name}: {raw!r} is not true or false")
    return raw


@dataclass(frozen=True)
class SearchResult:
    """One page of series documents with the total and facet counts over all matches.

    Attributes
    ----------
    total
        Number of series matching the query (all pages).
    items
        The page's series documents, in sort order.
    facets
        ``{"modality": {"CT": 12, ...}, "dataset": {...}, "project": {...}}`` over all matches.
    """

    total: int
    page: int
    size: int
    items: list[dict[str, Any]]
    facets: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as the REST API returns it."""
        return {
            "total": self.total,
            "page": self.page,
            "size": self.size,
            "items": self.items,
            "facets": self.facets,
        }


@dataclass(frozen=True)
class IndexCounts:
    """How much a project (or a query within it) holds."""

    series: int
    instances: int
    studies: int
    patients: int


@runtime_checkable
class SeriesIndex(Protocol):
    """The metadata index of series documents; implemented by every backend."""

    def ensure_project(self, project: str) -> None:
        """Create the project's index (and the admin one) if missing; safe to repeat."""
        ...

    def upsert(self, project: str, documents: Sequence[Mapping[str, Any]]) -> int:
        """Merge documents into the project's index and the admin index (see module doc).

        Each document must carry ``"0020000E SeriesInstanceUID_keyword"``; ``project`` is added
        to its ``project`` list. Concurrent writers never lose each other's update.

        Returns
        -------
        int
            Number of distinct series written.
        """
        ...

    def get(self, project: str, series_uid: str) -> dict[str, Any] | None:
        """The series document as the project sees it, or ``None``."""
        ...

    def delete_series(self, project: str, series_uid: str) -> bool:
        """Remove a series from a project (from every project when ``project`` is admin).

        Returns whether anything was removed. Removing it from one project also takes that
        project out of the admin document's ``project`` list, and the admin document goes when
        no project is left.
        """
        ...

    def search(self, project: str, query: SeriesQuery) -> SearchResult:
        """One page of the project's series matching the query, with facets."""
        ...

    def counts(self, project: str, query: SeriesQuery | None = None) -> IndexCounts:
        """Series, instances, studies and patients of the project (matching the query)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def as_list(value: Any) -> list[Any]:
    """A list field's value as a list (``None`` -> ``[]``, scalar -> one element)."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def union(*lists: Iterable[Any]) -> list[Any]:
    """Ordered union without duplicates (first appearance wins)."""
    out: list[Any] = []
    for items in lists:
        for item in items:
            if item not in out:
                out.append(item)
    return out


def batch_key(document: Mapping[str, Any]) -> str:
    """The key of a document's batch in ``instance_counts``."""
    return "+".join(sorted(str(b) for b in as_list(document.get(BATCH_IDS))))


def prepare_document(project: str, document: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Normalize a document for writing: list fields as lists, project added, counts per batch.

    Returns
    -------
    tuple
        ``(series_uid, document)``; the document is a new dict, merge-ready.

    Raises
    ------
    ValueError
        When the document has no Series Instance UID.
    """
    uid = document.get(SERIES_UID)
    if isinstance(uid, list) and len(uid) == 1:
        uid = uid[0]
    if not isinstance(uid, str) or not uid.strip():
        raise ValueError(f"series document without a {SERIES_UID!r}: {uid!r}")
    doc = dict(document)
    for name in UNION_FIELDS:
        if name in doc:
            doc[name] = union(as_list(doc[name]))
    doc[PROJECTS] = union(as_list(doc.get(PROJECTS)), [project])
    if INSTANCE_COUNTS not in doc and INSTANCE_COUNT in doc:
        doc[INSTANCE_COUNTS] = {batch_key(doc): int(doc[INSTANCE_COUNT])}
    if INSTANCE_COUNTS in doc:
        doc[INSTANCE_COUNTS] = {str(k): int(v) for k, v in dict(doc[INSTANCE_COUNTS]).items()}
        doc[INSTANCE_COUNT] = sum(doc[INSTANCE_COUNTS].values())
    return uid.strip(), doc


def merge_documents(stored: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge rule (module doc) on prepared documents; backends do the same server-side."""
    out = dict(stored)
    for name, value in new.items():
        if name in UNION_FIELDS:
            out[name] = union(as_list(stored.get(name)), as_list(value))
        elif name == INSTANCE_COUNTS:
            out[name] = {**dict(stored.get(name) or {}), **dict(value)}
        elif name != INSTANCE_COUNT:
            out[name] = value
    if INSTANCE_COUNTS in new:
        out[INSTANCE_COUNT] = sum(int(v) for v in out[INSTANCE_COUNTS].values())
    return out


def prepare_batch(
    project: str, documents: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Prepare documents and fold repeats of one series into one (a bulk write holds each once)."""
    folded: dict[str, dict[str, Any]] = {}
    for document in documents:
        uid, doc = prepare_document(project, document)
        folded[uid] = merge_documents(folded[uid], doc) if uid in folded else doc
    return folded
