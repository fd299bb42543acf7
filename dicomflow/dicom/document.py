"""Series documents for the search index, with Kaapana-compatible field names.

Every DICOM element of a representative header becomes one field named
``"GGGGEEEE Keyword_<type>"``, e.g. ``"00100020 PatientID_keyword"`` or
``"00080020 StudyDate_date"``, the naming Kaapana's OpenSearch documents use, so index
templates, dashboards and queries written for Kaapana keep working. Next to those, the
platform's own fields (projects, datasets, batches, validation, ...) use plain names.

A series can arrive over several batches; :func:`merge_series_documents` folds a new
document into the stored one. It is idempotent: folding the same batch in twice gives
the same document, because counts are derived from sets of UIDs, never added up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from dicomflow.dicom.completeness import missing_instance_numbers
from dicomflow.dicom.headers import SeriesGroup, read_header

__all__ = [
    "BULK_VRS",
    "DEFAULT_MAX_SEQUENCE_ITEMS",
    "SCHEMA_VERSION",
    "FieldType",
    "build_series_document",
    "dataset_fields",
    "field_name",
    "format_da",
    "format_dt",
    "format_tm",
    "is_dicom_field",
    "merge_series_documents",
]

#: Bump when the meaning of a platform field changes, so stored documents can be migrated.
SCHEMA_VERSION = 1

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


def _sorted_union(*lists: Iterable[Any] | None) -> list[Any]:
    merged: set[Any] = set()
    for values in lists:
        merged.update(values or ())
    return sorted(merged)


def _validation_run(
    validation: Mapping[str, Any], batch_id: str | None, fallback_time: str | None
) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "errors": int(validation.get("errors", 0)),
        "warnings": int(validation.get("warnings", 0)),
        "instances_checked": int(validation.get("instances_checked", 0)),
        "checked_at": _utc_iso(validation.get("checked_at")) or fallback_time,
        "report_key": validation.get("report_key"),
        "series_totals": _series_totals(validation.get("series_totals")),
    }


# The validation counts of a series document, summed or taken from one run's series totals.
_VALIDATION_TOTALS = ("errors", "warnings", "instances_checked")


def _series_totals(totals: Mapping[str, Any] | None) -> dict[str, int] | None:
    if not totals:
        return None
    return {key: int(totals.get(key, 0)) for key in _VALIDATION_TOTALS}


def _validation_block(
    runs: Sequence[Mapping[str, Any]], instance_numbers: Sequence[int]
) -> dict[str, Any] | None:
    if not runs:
        return None
    ordered = sorted(runs, key=lambda run: (run.get("checked_at") or "", run.get("batch_id") or ""))
    latest = ordered[-1]
    # Each run knows the series' totals after its merge; the merge only ever adds instances,
    # so the totals over the most instances are the newest (on a tie, the latest run's).
    merges = [
        (i, run["series_totals"]) for i, run in enumerate(ordered) if run.get("series_totals")
    ]
    if merges:
        _, totals = max(merges, key=lambda item: (item[1]["instances_checked"], item[0]))
    else:  # documents written before runs carried totals
        totals = {key: sum(int(run.get(key, 0)) for run in ordered) for key in _VALIDATION_TOTALS}
    return {
        **totals,
        "checked_at": latest.get("checked_at"),
        "report_key": latest.get("report_key"),
        "missing_instance_numbers": missing_instance_numbers(instance_numbers),
        "runs": [dict(run) for run in ordered],
    }


def build_series_document(
    group: SeriesGroup,
    header: Dataset | None = None,
    *,
    projects: Sequence[str] = (),
    datasets: Sequence[str] = (),
    batch_id: str | None = None,
    calling_ae: str | None = None,
    called_ae: str | None = None,
    sender: str | None = None,
    received_at: datetime | str | None = None,
    thumbnail_key: str | None = None,
    validation: Mapping[str, Any] | None = None,
    archived: bool = True,
    max_sequence_items: int = DEFAULT_MAX_SEQUENCE_ITEMS,
) -> dict[str, Any]:
    """Build the index document of one series from one batch.

    Parameters
    ----------
    group
        The series as grouped by :func:`dicomflow.dicom.headers.group_series`.
    header
        A representative header; by default the header of the instance with the lowest
        Instance Number is read (pixel data is never read).
    projects, datasets
        The platform projects and datasets the series belongs to.
    batch_id
        The receive batch the instances came in.
    calling_ae, called_ae, sender
        Who sent the batch (AE titles, peer address or user name).
    received_at
        When the batch was received; naive datetimes are taken as UTC.
    thumbnail_key
        Object-store key of the thumbnail PNG, when one was made.
    validation
        Summary of the validation of this batch's instances: ``errors``, ``warnings``,
        ``instances_checked``, ``checked_at`` and ``report_key`` (e.g.
        :meth:`dicomflow.validation.SeriesValidation.summary` plus the report key), and
        optionally ``series_totals``: ``errors``, ``warnings`` and ``instances_checked`` of
        the whole series so far, each instance counted once. The document's totals are
        those of its most complete run, or sums over the runs when none has them.
    archived
        Whether the PACS has confirmed this batch's instances. A series is indexed as soon as
        its batch arrives, before the PACS holds it: ``pacs_state`` then says ``"storing"``
        until every batch of the series is archived.
    max_sequence_items
        See :func:`dataset_fields`.

    Returns
    -------
    dict
        A JSON-able document; its index id is the Series Instance UID.
    """
    if header is None:
        first = min(
            group.instances,
            key=lambda i: (i.instance_number is None, i.instance_number or 0, str(i.path)),
        )
        header = read_header(first.path)
    notes: list[str] = []
    document = dataset_fields(header, notes=notes, max_sequence_items=max_sequence_items)
    # The representative instance's own identity would mislead at series level, and the
    # grouping is the source of truth for the series/study/class UIDs.
    for tag, keyword in ((0x00080018, "SOPInstanceUID"), (0x00200013, "InstanceNumber")):
        for field_type in (FieldType.KEYWORD, FieldType.INTEGER):
            document.pop(field_name(tag, keyword, field_type), None)
    document[field_name(0x0020000E, "SeriesInstanceUID", FieldType.KEYWORD)] = (
        group.series_instance_uid
    )
    document[field_name(0x0020000D, "StudyInstanceUID", FieldType.KEYWORD)] = (
        group.study_instance_uid
    )
    received = _utc_iso(received_at)
    instance_numbers = _sorted_union(
        i.instance_number for i in group.instances if i.instance_number is not None
    )
    runs = [_validation_run(validation, batch_id, received)] if validation is not None else []
    document.update(
        {
            "schema_version": SCHEMA_VERSION,
            "project": _sorted_union(projects),
            "dataset": _sorted_union(datasets),
            "sop_instance_uids": _sorted_union(group.sop_instance_uids),
            "instance_count": len(set(group.sop_instance_uids)),
            "instance_numbers": instance_numbers,
            "sop_class_uids": group.sop_class_uids,
            "batch_ids": [batch_id] if batch_id else [],
            "archived_batch_ids": [batch_id] if batch_id and archived else [],
            "pacs_state": PacsState.STORED if archived else PacsState.STORING,
            "calling_ae": calling_ae,
            "called_ae": called_ae,
            "sender": sender,
            "received_at": received,
            "last_received_at": received,
            "thumbnail_key": thumbnail_key,
            "validation": _validation_block(runs, instance_numbers),
            "header_notes": notes,
        }
    )
    return document


def _time_bound(values: Iterable[str | None], pick: Any) -> str | None:
    present = [datetime.fromisoformat(v) for v in values if v]
    return pick(present).isoformat() if present else None


class PacsState(StrEnum):
    """Whether the PACS holds every instance the index counts for a series."""

    #: Every batch of the series is confirmed by the PACS.
    STORED = "stored"
    #: At least one batch is indexed but not yet confirmed (being stored, or its store failed
    #: and waits for a re-run).
    STORING = "storing"


def _archived_batches(document: Mapping[str, Any]) -> list[Any]:
    # Documents written before the field existed were written only after the PACS store.
    if "archived_batch_ids" not in document:
        return list(document.get("batch_ids") or [])
    return list(document.get("archived_batch_ids") or [])


def merge_series_documents(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Fold the document of a new batch into the stored document of the same series.

    Parameters
    ----------
    old
        The stored document.
    new
        The document built from the new batch.

    Returns
    -------
    dict
        The merged document. Sets (projects, datasets, batch ids, SOP Instance UIDs,
        Instance Numbers) are unions, so the instance count is that of distinct SOP
        Instance UIDs and merging the same batch twice changes nothing. DICOM fields of
        the stored document are kept (the representative header stays stable) and only
        fields it lacks are added. Sender fields and the thumbnail key follow the newest
        batch; ``received_at`` is the earliest receipt and ``last_received_at`` the latest.
        Validation runs are keyed by batch id: re-validating a batch replaces its run.
        ``archived_batch_ids`` (batches the PACS confirmed) is a union too, and
        ``pacs_state`` is ``"stored"`` once it covers every batch id.

    Raises
    ------
    ValueError
        When the documents belong to different series.
    """
    uid_field = field_name(0x0020000E, "SeriesInstanceUID", FieldType.KEYWORD)
    if old.get(uid_field) and new.get(uid_field) and old[uid_field] != new[uid_field]:
        raise ValueError(f"cannot merge series {new[uid_field]} into {old[uid_field]}")

    merged: dict[str, Any] = {k: v for k, v in new.items() if is_dicom_field(k)}
    merged.update({k: v for k, v in old.items() if is_dicom_field(k)})

    uids = _sorted_union(old.get("sop_instance_uids"), new.get("sop_instance_uids"))
    batch_ids = _sorted_union(old.get("batch_ids"), new.get("batch_ids"))
    archived = _sorted_union(_archived_batches(old), _archived_batches(new))
    numbers = _sorted_union(old.get("instance_numbers"), new.get("instance_numbers"))
    runs: dict[str | None, Mapping[str, Any]] = {}
    for document in (old, new):
        for run in (document.get("validation") or {}).get("runs") or []:
            runs[run.get("batch_id")] = run
    notes = list(old.get("header_notes") or [])
    notes += [n for n in new.get("header_notes") or [] if n not in notes]

    def newest(key: str) -> Any:
        value = new.get(key)
        return value if value is not None else old.get(key)

    merged.update(
        {
            "schema_version": SCHEMA_VERSION,
            "project": _sorted_union(old.get("project"), new.get("project")),
            "dataset": _sorted_union(old.get("dataset"), new.get("dataset")),
            "sop_instance_uids": uids,
            "instance_count": len(uids),
            "instance_numbers": numbers,
            "sop_class_uids": _sorted_union(old.get("sop_class_uids"), new.get("sop_class_uids")),
            "batch_ids": batch_ids,
            "archived_batch_ids": archived,
            "pacs_state": PacsState.STORED
            if set(batch_ids) <= set(archived)
            else PacsState.STORING,
            "calling_ae": newest("calling_ae"),
            "called_ae": newest("called_ae"),
            "sender": newest("sender"),
            "received_at": _time_bound((old.get("received_at"), new.get("received_at")), min),
            "last_received_at": _time_bound(
                (old.get("last_received_at"), new.get("last_received_at")), max
            ),
            "thumbnail_key": newest("thumbnail_key"),
            "validation": _validation_block(list(runs.values()), numbers),
            "header_notes": notes,
        }
    )
    return merged
