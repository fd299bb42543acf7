"""The series index: one interface, its query and result types.

A series document is a JSON object, one per series, identified by its Series Instance UID, with
Kaapana-compatible field names (``"00080060 Modality_keyword"``) plus platform fields
(``project``, ``dataset``, ``instance_count``, ``validation``, ...). Every project has an index of
its own and the ``admin`` index holds every series, so a query is always scoped to exactly one
project and a user of project A never sees project B's series.

An index stores what it is given. The documents are made in one place,
:func:`dicomflow.dicom.document.series_document`, from the series' facts in the platform
database, and written by one writer (:mod:`dicomflow.pipeline.documents`) that takes a lock per
series: so no backend merges, and every backend holds exactly what the writer computed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
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
INSTANCE_COUNT = "instance_count"
RECEIVED_AT = "received_at"
VALIDATION = "validation"

FACETS: tuple[str, ...] = ("modality", "dataset", "project")
#: Validation levels a search filters on (``validation.level`` of a document; ``none``: absent).
VALIDATION_LEVELS: tuple[str, ...] = ("none", "representative", "complete")

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
    validation
        Any of these validation levels: ``none`` (not validated yet), ``representative``
        (a representative set checked), ``complete`` (every instance checked).
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
    validation: tuple[str, ...] = ()
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
        levels = tuple(v.strip().lower() for v in self.validation)
        unknown = [v for v in levels if v not in VALIDATION_LEVELS]
        if unknown:
            raise QueryError(
                "validation",
                f"validation: {unknown[0]!r} is not one of {', '.join(VALIDATION_LEVELS)}",
            )
        object.__setattr__(self, "validation", levels)
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
    "validation": "codes",
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

    def put(self, project: str, documents: Sequence[Mapping[str, Any]]) -> int:
        """Store documents in one project's index (``admin`` too is one), as given.

        Each document must carry ``"0020000E SeriesInstanceUID_keyword"``; a stored document
        of the same series is replaced whole. A document listed twice is stored once (the
        last). Writes are searchable when this returns.

        Returns
        -------
        int
            Number of distinct series written.

        Raises
        ------
        ValueError
            When a document has no Series Instance UID.
        """
        ...

    def get(self, project: str, series_uid: str) -> dict[str, Any] | None:
        """The series document as the project sees it, or ``None``."""
        ...

    def get_many(self, project: str, series_uids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The documents of the series the project holds, by Series Instance UID (one request).

        A series the project does not hold is left out.
        """
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


def series_uid_of(document: Mapping[str, Any]) -> str:
    """The Series Instance UID a document is stored under.

    Raises
    ------
    ValueError
        When the document has none.
    """
    uid = document.get(SERIES_UID)
    if isinstance(uid, list) and len(uid) == 1:
        uid = uid[0]
    if not isinstance(uid, str) or not uid.strip():
        raise ValueError(f"series document without a {SERIES_UID!r}: {uid!r}")
    return uid.strip()


def by_series(documents: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Documents keyed by series, the last of repeats kept (a bulk write holds each once)."""
    return {series_uid_of(d): dict(d) for d in documents}
