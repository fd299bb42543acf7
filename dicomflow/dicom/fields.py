"""Kaapana-style field names made readable: tag, keyword, DICOM name and value per row.

A series document names DICOM fields ``"GGGGEEEE Keyword_type"`` and nests sequences as lists
of such dicts (:mod:`dicomflow.dicom.document`). People reading a series want the tag as
``(0010,0020)``, the keyword, the standard's name ("Patient ID") and the value as text; a
sequence's items follow it, their keywords prefixed with the item path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pydicom.datadict import dictionary_description

__all__ = ["TagRow", "parse_field_name", "readable_tags"]

_FIELD_RE = re.compile(r"^([0-9A-F]{4})([0-9A-F]{4}) ([A-Za-z0-9]+)_([a-z]+)$")


@dataclass(frozen=True)
class TagRow:
    """One DICOM field of a document, readable.

    Attributes
    ----------
    tag
        ``(GGGG,EEEE)``.
    keyword
        The keyword, prefixed with the sequence items it sits in
        (``ReferencedSeriesSequence[0].SeriesInstanceUID``).
    name
        The DICOM dictionary's name of the element ("Patient ID"), or the keyword.
    type
        The field's type suffix (``keyword``, ``date``, ``integer``, ``object``, ...).
    value
        The value as text; multiple values joined by `` \\ `` as DICOM writes them; empty for
        a sequence (its items are the following rows).
    depth
        0 at the top level, 1 inside a sequence item, ...
    """

    tag: str
    keyword: str
    name: str
    type: str
    value: str
    depth: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def parse_field_name(name: str) -> tuple[int, str, str] | None:
    """``"00100020 PatientID_keyword"`` -> ``(0x00100020, "PatientID", "keyword")``.

    Returns ``None`` for a platform field (``project``, ``instance_count``, ...).
    """
    match = _FIELD_RE.match(name)
    if match is None:
        return None
    group, element, keyword, field_type = match.groups()
    return int(group + element, 16), keyword, field_type


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " \\ ".join(_text(v) for v in value)
    if value is None:
        return ""
    return str(value)


def _dictionary_name(tag: int, keyword: str) -> str:
    try:
        return str(dictionary_description(tag))
    except KeyError:
        # Repeating groups (curves, overlays) and retired oddities: the keyword says enough.
        return keyword


def readable_tags(document: Mapping[str, Any]) -> list[TagRow]:
    """The DICOM fields of a document as rows in tag order (platform fields left out)."""
    rows: list[TagRow] = []
    _collect(document, "", 0, rows)
    return rows


def _collect(fields: Mapping[str, Any], prefix: str, depth: int, rows: list[TagRow]) -> None:
    parsed = sorted(
        (p, value) for name, value in fields.items() if (p := parse_field_name(name)) is not None
    )
    for (tag, keyword, field_type), value in parsed:
        tag_text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        path = f"{prefix}{keyword}"
        name = _dictionary_name(tag, keyword)
        if field_type == "object" and isinstance(value, list):
            rows.append(TagRow(tag_text, path, name, field_type, f"{len(value)} item(s)", depth))
            for number, item in enumerate(value):
                if isinstance(item, Mapping):
                    _collect(item, f"{path}[{number}].", depth + 1, rows)
            continue
        rows.append(TagRow(tag_text, path, name, field_type, _text(value), depth))
