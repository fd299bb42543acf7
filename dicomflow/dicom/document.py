"""Series documents for the search index, with Kaapana-compatible field names.

Every DICOM element of a representative header becomes one field named
``"GGGGEEEE Keyword_<type>"``, e.g. ``"00100020 PatientID_keyword"`` or
``"00080020 StudyDate_date"``, the naming Kaapana's OpenSearch documents use, so index
templates, dashboards and queries written for Kaapana keep working. Next to those, the
platform's own fields (projects, datasets, batches, validation, ...) use plain names.

A series can arrive over several batches. Its document is not merged batch by batch: it is
computed by :func:`series_document` from the series' facts (its instances and batches, kept in
the platform database), so it is the same whatever order the batches came in, a resent
instance counts once, and its size is bounded by the series, not by its history.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from dicomflow.dicom.completeness import missing_instance_numbers
from dicomflow.dicom.headers import SeriesGroup, read_header
from dicomflow.dicom.instance import Instance

__all__ = [
    "BULK_VRS",
    "DEFAULT_MAX_SEQUENCE_ITEMS",
    "SCHEMA_VERSION",
    "FieldType",
    "PacsState",
    "SeriesFacts",
    "dataset_fields",
    "dicom_fields",
    "field_name",
    "format_da",
    "format_dt",
    "format_tm",
    "header_fields",
    "is_dicom_field",
    "series_document",
]

#: Bump when the meaning of a platform field changes, so stored documents can be migrated.
#: 2: computed from the series' facts; no SOP Instance UIDs, batch ids or validation runs.
SCHEMA_VERSION = 2

#: Binary or unknown VRs: their bytes are useless in a search index.
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

#: Per-frame functional groups of an enhanced multi-frame image hold one item per frame;
#: the index needs a sample of them, not thousands.
DEFAULT_MAX_SEQUENCE_ITEMS = 10

_DICOM_FIELD_RE = re.compile(r"^[0-9A-F]{8} ")
_TM_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_DT_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$"
)


class FieldType(StrEnum):
    """The type suffix of a field name, chosen by the element's VR."""

    KEYWORD = "keyword"
    DATE = "date"
    TIME = "time"
    DATETIME = "datetime"
    INTEGER = "integer"
    FLOAT = "float"
    OBJECT = "object"


_VR_FIELD_TYPES: dict[str, FieldType] = {
    "DA": FieldType.DATE,
    "TM": FieldType.TIME,
    "DT": FieldType.DATETIME,
    "IS": FieldType.INTEGER,
    "SL": FieldType.INTEGER,
    "SS": FieldType.INTEGER,
    "UL": FieldType.INTEGER,
    "US": FieldType.INTEGER,
    "SV": FieldType.INTEGER,
    "UV": FieldType.INTEGER,
    "DS": FieldType.FLOAT,
    "FL": FieldType.FLOAT,
    "FD": FieldType.FLOAT,
    "SQ": FieldType.OBJECT,
}


def field_name(tag: int, keyword: str, field_type: FieldType) -> str:
    """Return the Kaapana-style field name, e.g. ``"00080020 StudyDate_date"``."""
    return f"{int(tag):08X} {keyword}_{field_type.value}"


def is_dicom_field(name: str) -> bool:
    """Tell a DICOM element field (``"GGGGEEEE Keyword_type"``) from a platform field."""
    return bool(_DICOM_FIELD_RE.match(name))


def format_da(text: str) -> str:
    """Convert a DICOM DA value to ISO ``YYYY-MM-DD``.

    Raises
    ------
    ValueError
        When the value is not a real calendar date.
    """
    digits = text.strip()
    # ACR-NEMA wrote "YYYY.MM.DD"; still seen from old archives.
    if len(digits) == 10 and digits[4] in ".-" and digits[7] == digits[4]:
        digits = digits.replace(digits[4], "")
    if len(digits) != 8 or not digits.isdigit():
        raise ValueError(f"{text!r} is not a DA value (YYYYMMDD)")
    return datetime.strptime(digits, "%Y%m%d").date().isoformat()


def format_tm(text: str) -> str:
    """Convert a DICOM TM value to ``HH:MM:SS.ffffff``.

    Missing minutes/seconds/fractions read as zero (PS3.5 allows ``HH`` and ``HHMM``).

    Raises
    ------
    ValueError
        When the value is not a valid time of day.
    """
    # Colons are the retired ACR-NEMA form, still sent by some devices.
    match = _TM_RE.match(text.strip().replace(":", ""))
    if match is None:
        raise ValueError(f"{text!r} is not a TM value (HHMMSS.FFFFFF)")
    hours, minutes, seconds, fraction = match.groups()
    hh, mm, ss = int(hours), int(minutes or 0), int(seconds or 0)
    if hh > 23 or mm > 59 or ss > 59:
        raise ValueError(f"{text!r} is not a valid time of day")
    micro = int((fraction or "").ljust(6, "0"))
    return f"{hh:02d}:{mm:02d}:{ss:02d}.{micro:06d}"


def format_dt(text: str) -> str:
    """Convert a DICOM DT value to ``YYYY-MM-DD HH:MM:SS.ffffff`` (Kaapana's format).

    A UTC offset suffix is dropped: Kaapana indexes the wall-clock time, and mixing
    offsets into one date field would make range queries disagree with the DA/TM fields.

    Raises
    ------
    ValueError
        When the value is not a valid date-time.
    """
    match = _DT_RE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a DT value (YYYYMMDDHHMMSS.FFFFFF&ZZXX)")
    year, month, day, hour, minute, second, fraction, _offset = match.groups()
    value = datetime(
        int(year),
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "").ljust(6, "0")),
    )
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1", errors="replace").strip("\x00 ")
    if isinstance(value, BaseTag):
        return f"{int(value):08X}"
    return str(value).strip("\x00 ")


def _items(value: Any) -> list[Any]:
    # Only real multi-values are split: str, bytes and PersonName are iterable too.
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]


def _convert(field_type: FieldType, raw: Any) -> Any:
    if field_type is FieldType.DATE:
        return format_da(_as_text(raw))
    if field_type is FieldType.TIME:
        return format_tm(_as_text(raw))
    if field_type is FieldType.DATETIME:
        return format_dt(_as_text(raw))
    if field_type is FieldType.INTEGER:
        if isinstance(raw, int):
            return int(raw)
        return int(_as_text(raw))
    if field_type is FieldType.FLOAT:
        number = float(raw) if isinstance(raw, int | float) else float(_as_text(raw))
        if not math.isfinite(number):
            # NaN/Infinity are not JSON and OpenSearch rejects them in a float field.
            raise ValueError(f"{number!r} is not a finite number")
        return number
    return _as_text(raw)


def _element_field(
    elem: DataElement, notes: list[str], max_items: int, depth: int, where: str
) -> tuple[str, Any] | None:
    vr = elem.VR
    keyword = elem.keyword
    if vr in BULK_VRS or vr.startswith("O") or keyword == "PixelData" or not keyword:
        return None
    if vr == "SQ":
        items = list(elem.value or [])
        if not items:
            return None
        if len(items) > max_items:
            notes.append(
                f"{where}{keyword}: {len(items)} items, only the first {max_items} indexed"
            )
        nested = [
            _dataset_fields(item, notes, max_items, depth + 1, f"{where}{keyword}[{i}].")
            for i, item in enumerate(items[:max_items])
        ]
        return field_name(elem.tag, keyword, FieldType.OBJECT), nested

    raw_values = [v for v in _items(elem.value) if v is not None and _as_text(v) != ""]
    if not raw_values:
        return None
    field_type = _VR_FIELD_TYPES.get(vr, FieldType.KEYWORD)
    try:
        values = [_convert(field_type, v) for v in raw_values]
    except (ValueError, TypeError, OverflowError) as exc:
        if field_type is FieldType.KEYWORD:
            raise
        # A malformed date or number must not cost the whole document: keep the text,
        # searchable as a keyword, and say so.
        notes.append(f"{where}{keyword} ({vr}): {exc}; kept as keyword")
        field_type = FieldType.KEYWORD
        values = [_as_text(v) for v in raw_values]
    value: Any = values[0] if elem.VM <= 1 and len(values) == 1 else values
    return field_name(elem.tag, keyword, field_type), value


def _dataset_fields(
    ds: Dataset, notes: list[str], max_items: int, depth: int, where: str
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for tag in list(ds.keys()):
        # Private elements have no standard keyword to name a field after, and group
        # lengths carry no information once the file is parsed.
        if tag.is_private or tag.element == 0:
            continue
        try:
            elem = ds[tag]
            result = _element_field(elem, notes, max_items, depth, where)
        except Exception as exc:  # pydicom raises many types for broken elements
            notes.append(f"{where}({tag.group:04X},{tag.element:04X}): unreadable ({exc})")
            continue
        if result is not None:
            fields[result[0]] = result[1]
    return fields


def dataset_fields(
    ds: Dataset,
    *,
    notes: list[str] | None = None,
    max_sequence_items: int = DEFAULT_MAX_SEQUENCE_ITEMS,
) -> dict[str, Any]:
    """Convert a dataset's elements into Kaapana-style index fields.

    Parameters
    ----------
    ds
        The dataset (a header: pixel data and other bulk elements are skipped).
    notes
        When given, receives one sentence per value that could not be converted to its
        VR's type (kept as ``_keyword`` instead), per truncated sequence and per
        unreadable element.
    max_sequence_items
        Index at most this many items of each sequence.

    Returns
    -------
    dict
        JSON-able ``{"GGGGEEEE Keyword_type": value}``; multi-valued elements are lists,
        sequences are lists of nested dicts named the same way.
    """
    return _dataset_fields(ds, notes if notes is not None else [], max_sequence_items, 0, "")


def _utc_iso(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


class PacsState(StrEnum):
    """Whether the PACS holds every instance the index counts for a series."""

    #: Every batch of the series is confirmed by the PACS.
    STORED = "stored"
    #: At least one batch is indexed but not yet confirmed by the PACS (being processed).
    STORING = "storing"
    #: The processing of a batch of the series failed (the document says where and why); it
    #: is retried by itself once the service it needed answers, or by ``batches retry``.
    FAILED = "failed"


@dataclass(frozen=True)
class SeriesFacts:
    """What the platform knows of a series over every batch that brought it.

    Kept per instance and per batch in the platform database (the document only summarises
    them, so it stays the same size however often the series is sent).

    Attributes
    ----------
    series_uid
        The series.
    instance_count
        Distinct SOP Instance UIDs received (a resent instance counts once).
    sop_class_uids
        Its SOP classes.
    instance_numbers
        The Instance Numbers present (for the completeness check).
    batch_count, last_batch_id
        How many batches brought it, and the latest.
    archived
        Whether the PACS confirmed every one of those batches.
    datasets
        Per project, the datasets the series is in.
    received_at, last_received_at
        First and latest receipt (UTC).
    calling_ae, called_ae, sender
        Who sent the latest batch.
    failure
        Why the processing of a batch not yet archived failed (``<batch>: <step>: <why>``).
    """

    series_uid: str
    instance_count: int
    sop_class_uids: tuple[str, ...] = ()
    instance_numbers: tuple[int, ...] = ()
    batch_count: int = 0
    last_batch_id: str | None = None
    archived: bool = False
    datasets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    received_at: datetime | None = None
    last_received_at: datetime | None = None
    calling_ae: str | None = None
    called_ae: str | None = None
    sender: str | None = None
    failure: str | None = None

    @property
    def projects(self) -> list[str]:
        """The projects the series is in."""
        return sorted(self.datasets)


#: A document lists at most this many missing Instance Numbers (the report lists them all).
MAX_LISTED_GAPS = 100
#: A document keeps at most this many notes on header values it could not index as typed.
MAX_NOTES = 20


def header_fields(
    group: SeriesGroup,
    header: Dataset | None = None,
    *,
    max_sequence_items: int = DEFAULT_MAX_SEQUENCE_ITEMS,
) -> tuple[dict[str, Any], list[str]]:
    """The DICOM fields of a series' document, from one representative header.

    Parameters
    ----------
    group
        The series as grouped by :func:`dicomflow.dicom.headers.group_series`.
    header
        A representative header; by default the header of the instance with the lowest
        Instance Number is read (pixel data is never read).
    max_sequence_items
        See :func:`dataset_fields`.

    Returns
    -------
    tuple
        The fields and the notes on values that could not be indexed as their type.
    """
    if header is None:
        header = read_header(min(group.instances, key=Instance.sort_key).path)
    notes: list[str] = []
    fields = dataset_fields(header, notes=notes, max_sequence_items=max_sequence_items)
    # The representative instance's own identity would mislead at series level, and the
    # grouping is the source of truth for the series and study UIDs.
    for tag, keyword in ((0x00080018, "SOPInstanceUID"), (0x00200013, "InstanceNumber")):
        for field_type in (FieldType.KEYWORD, FieldType.INTEGER):
            fields.pop(field_name(tag, keyword, field_type), None)
    fields[field_name(0x0020000E, "SeriesInstanceUID", FieldType.KEYWORD)] = (
        group.series_instance_uid
    )
    fields[field_name(0x0020000D, "StudyInstanceUID", FieldType.KEYWORD)] = group.study_instance_uid
    return fields, notes


def dicom_fields(document: Mapping[str, Any]) -> dict[str, Any]:
    """The DICOM element fields of a stored document (its representative header)."""
    return {k: v for k, v in document.items() if is_dicom_field(k)}


def _validation_block(
    validation: Mapping[str, Any] | None, facts: SeriesFacts
) -> dict[str, Any] | None:
    if not validation:
        return None
    instance_numbers = facts.instance_numbers
    checked = int(validation.get("instances_checked", 0))
    present = sorted(set(instance_numbers))
    missing_count = present[-1] - present[0] + 1 - len(present) if len(present) > 1 else 0
    return {
        "errors": int(validation.get("errors", 0)),
        "warnings": int(validation.get("warnings", 0)),
        "instances_checked": checked,
        # Every instance received so far checked, or the representative set (the first
        # lane) while the background lane is still to come.
        "level": "complete" if checked >= facts.instance_count else "representative",
        "checked_at": _utc_iso(validation.get("checked_at")),
        "report_key": validation.get("report_key"),
        "missing_instances": missing_count,
        "missing_instance_numbers": missing_instance_numbers(present, limit=MAX_LISTED_GAPS),
    }


def _pacs_state(facts: SeriesFacts) -> PacsState:
    if facts.archived:
        return PacsState.STORED
    return PacsState.FAILED if facts.failure else PacsState.STORING


def series_document(
    fields: Mapping[str, Any],
    facts: SeriesFacts,
    *,
    project: str | None = None,
    thumbnail_key: str | None = None,
    validation: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The index document of a series, as one project (or the admin index) shows it.

    This is the one place where a document is made; whatever writes the index (the pipeline
    on arrival and after each step, a rebuild) computes it here from the series' facts, so
    writes never merge and a document never grows with the series' history.

    Parameters
    ----------
    fields
        The DICOM fields (:func:`header_fields`, or those of the stored document: the
        representative header stays the one first indexed).
    facts
        What the platform database knows of the series.
    project
        The project whose index the document is for; ``None`` for the admin index, which
        lists every project and dataset of the series. A project's copy names only that
        project and its own datasets.
    thumbnail_key
        Object-store key of the thumbnail PNG, when there is one.
    validation
        The validation of the whole series so far: ``errors``, ``warnings``,
        ``instances_checked``, ``checked_at``, ``report_key``; ``None`` before any.
    notes
        Notes on header values that could not be indexed as their type.

    Returns
    -------
    dict
        A JSON-able document; its index id is the Series Instance UID.
    """
    if project is None:
        projects = facts.projects
        datasets = sorted({d for names in facts.datasets.values() for d in names})
    else:
        projects = [project]
        datasets = sorted(facts.datasets.get(project, ()))
    document = dict(fields)
    document.update(
        {
            "schema_version": SCHEMA_VERSION,
            "project": projects,
            "dataset": datasets,
            "instance_count": facts.instance_count,
            "sop_class_uids": list(facts.sop_class_uids),
            "batch_count": facts.batch_count,
            "last_batch_id": facts.last_batch_id,
            "pacs_state": _pacs_state(facts),
            "failure": facts.failure if not facts.archived else None,
            "calling_ae": facts.calling_ae,
            "called_ae": facts.called_ae,
            "sender": facts.sender,
            "received_at": _utc_iso(facts.received_at),
            "last_received_at": _utc_iso(facts.last_received_at),
            "thumbnail_key": thumbnail_key,
            "validation": _validation_block(validation, facts),
            "header_notes": list(notes)[:MAX_NOTES],
        }
    )
    return document
