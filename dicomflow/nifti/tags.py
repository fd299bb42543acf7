"""DICOM attributes given by the user in ``meta_data.json``.

``{"global_tags": {"0008|0060": "MR"}, "series_tags": {"Case00.nii": {"0008|103e": "T2"}}}``:
keys are ``GGGG|EEEE`` (hex), global tags apply to every series and a file's
series tags win over them. Each value is checked against the VR of its tag in
pydicom's data dictionary before anything is written, so that a bad date fails
here with the file, key and line rather than later in a validator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_keyword, dictionary_VR
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import validate_value

from dicomflow.nifti.enums import Modality
from dicomflow.nifti.errors import (
    MalformedJsonError,
    TagKeyError,
    TagValueError,
    UnsupportedModalityError,
)
from dicomflow.nifti.jsonfiles import JsonDocument, read_json_object

__all__ = [
    "RESERVED_TAGS",
    "MetaData",
    "TagValue",
    "apply_tags",
    "load_meta_data",
    "parse_tag_key",
    "validate_tags",
]

_KEY = re.compile(r"^([0-9A-Fa-f]{4})\|([0-9A-Fa-f]{4})$")
_DATE = re.compile(r"^\d{8}$")

MODALITY_TAG = Tag(0x0008, 0x0060)

#: Attributes the converter derives from the volume or must own to stay valid.
RESERVED_TAGS: frozenset[BaseTag] = frozenset(
    Tag(t)
    for t in (
        0x00080005,  # Specific Character Set: chosen to fit every value
        0x00080016,  # SOP Class UID: follows the modality
        0x00080018,  # SOP Instance UID: one per slice
        0x00180050,  # Slice Thickness
        0x00180088,  # Spacing Between Slices
        0x00200013,  # Instance Number
        0x00200032,  # Image Position (Patient)
        0x00200037,  # Image Orientation (Patient)
        0x00201041,  # Slice Location
        0x00280002,  # Samples per Pixel
        0x00280004,  # Photometric Interpretation
        0x00280008,  # Number of Frames
        0x00280010,  # Rows
        0x00280011,  # Columns
        0x00280030,  # Pixel Spacing
        0x00280100,  # Bits Allocated
        0x00280101,  # Bits Stored
        0x00280102,  # High Bit
        0x00280103,  # Pixel Representation
        0x00281052,  # Rescale Intercept
        0x00281053,  # Rescale Slope
        0x00281054,  # Rescale Type
        0x7FE00010,  # Pixel Data
    )
)

_BINARY_INT_RANGES: dict[str, tuple[int, int]] = {
    "US": (0, 2**16 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "UL": (0, 2**32 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "UV": (0, 2**64 - 1),
    "SV": (-(2**63), 2**63 - 1),
}
_BINARY_FLOAT = {"FL", "FD"}
_UNSUPPORTED_VRS = {"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN", "AT"}


@dataclass(frozen=True)
class TagValue:
    """One validated attribute.

    Attributes
    ----------
    tag : pydicom.tag.BaseTag
        The attribute tag.
    keyword : str
        Its dictionary keyword (for messages and reports).
    vr : str
        Its value representation.
    value : object
        The value ready for :meth:`pydicom.dataset.Dataset.add_new`.
    """

    tag: BaseTag
    keyword: str
    vr: str
    value: Any


def parse_tag_key(key: str) -> BaseTag:
    """Turn a ``GGGG|EEEE`` key into a tag.

    Raises
    ------
    ValueError
        If ``key`` does not have that form.
    """
    match = _KEY.match(key)
    if match is None:
        raise ValueError(f"tag key {key!r} is not of the form GGGG|EEEE (hexadecimal)")
    return Tag(int(match.group(1), 16), int(match.group(2), 16))


def _coerce_one(vr: str, item: Any) -> Any:
    """Check one value (of a possibly multi-valued attribute) against ``vr``."""
    if isinstance(item, bool) or item is None or isinstance(item, dict | list):
        raise ValueError(f"a {vr} value must be a string or number, got {item!r}")
    if vr in _BINARY_INT_RANGES:
        number = int(item) if isinstance(item, str) and item.strip().lstrip("-").isdigit() else item
        if not isinstance(number, int):
            raise ValueError(f"{vr} needs an integer, got {item!r}")
        low, high = _BINARY_INT_RANGES[vr]
        if not low <= number <= high:
            raise ValueError(f"{number} is outside the {vr} range [{low}, {high}]")
        return number
    if vr in _BINARY_FLOAT:
        try:
            return float(item)
        except ValueError as exc:
            raise ValueError(f"{vr} needs a number, got {item!r}") from exc
    text = str(item)
    validate_value(vr, text, 2)  # 2 == config.RAISE
    if vr == "DA" and text:
        if not _DATE.match(text):
            raise ValueError(f"DA needs YYYYMMDD, got {text!r}")
        try:
            datetime.strptime(text, "%Y%m%d")
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a calendar date (YYYYMMDD)") from exc
    return text


def _tag_value(key: str, raw: Any) -> TagValue:
    """Validate one pair: ``LookupError`` for a bad key, ``ValueError`` for a bad value."""
    tag = parse_tag_key(key)
    if tag.is_private:
        raise LookupError(f"private tag {key} cannot be set (no private creator)")
    if tag.group == 0x0002:
        raise LookupError(f"file meta information tag {key} is written by the converter")
    if tag in RESERVED_TAGS:
        raise LookupError(
            f"tag {key} ({dictionary_keyword(tag)}) is derived from the volume and cannot be set"
        )
    try:
        vr = dictionary_VR(tag)
        keyword = dictionary_keyword(tag)
    except KeyError as exc:
        raise LookupError(f"tag {key} is not in the DICOM data dictionary") from exc
    vr = vr.split(" or ")[0]
    if vr in _UNSUPPORTED_VRS:
        raise LookupError(f"tag {key} ({keyword}) has VR {vr}, which cannot be given as JSON text")
    items = raw if isinstance(raw, list) else [raw]
    try:
        values = [_coerce_one(vr, item) for item in items]
    except ValueError as exc:
        raise ValueError(f"value {raw!r} does not fit {keyword} (VR {vr}): {exc}") from exc
    value: Any = values if isinstance(raw, list) else values[0]
    return TagValue(tag, keyword, vr, value)


def validate_tags(
    entries: Mapping[str, Any],
    *,
    doc: JsonDocument | None = None,
    parents: tuple[str, ...] = (),
) -> dict[BaseTag, TagValue]:
    """Validate a ``{"GGGG|EEEE": value}`` mapping.

    Parameters
    ----------
    entries : mapping
        Tag keys and JSON values.
    doc : JsonDocument or None, optional
        Where the entries come from, to name file and line in errors.
    parents : tuple of str, optional
        JSON keys leading to ``entries`` inside ``doc`` (to find the line).

    Returns
    -------
    dict
        Validated values by tag, in the given order.

    Raises
    ------
    TagKeyError
        For a malformed, unknown, private or reserved key.
    TagValueError
        For a value that does not fit the VR of its tag.
    UnsupportedModalityError
        For a Modality (0008,0060) other than those in :class:`Modality`.
    """
    path = doc.path if doc is not None else None
    result: dict[BaseTag, TagValue] = {}
    for key, raw in entries.items():
        line = doc.line_of(*parents, key) if doc is not None else None
        try:
            value = _tag_value(key, raw)
        except LookupError as exc:
            raise TagKeyError(str(exc), path=path, key=key, line=line) from None
        except ValueError as exc:
            if not _KEY.match(key):
                raise TagKeyError(str(exc), path=path, key=key, line=line) from None
            raise TagValueError(str(exc), path=path, key=key, line=line) from None
        if value.tag == MODALITY_TAG and value.value not in {m.value for m in Modality}:
            raise UnsupportedModalityError(
                f"modality {value.value!r} is not supported; use one of "
                f"{sorted(m.value for m in Modality)}",
                path=path,
                key=key,
                line=line,
            )
        result[value.tag] = value
    return result


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


class MetaData:
    """The contents of ``meta_data.json``.

    Global tags are validated when the file is loaded (they concern every case);
    a file's series tags are validated when that file is converted, so that one
    bad entry fails one case only.

    Parameters
    ----------
    global_tags : dict
        Validated global tags.
    series_entries : dict
        Raw series tag mappings by file name with any ``.gz`` removed.
    doc : JsonDocument or None
        Source document (``None`` when there is no ``meta_data.json``).
    """

    def __init__(
        self,
        global_tags: dict[BaseTag, TagValue],
        series_entries: dict[str, tuple[str, dict[str, Any]]],
        doc: JsonDocument | None,
    ) -> None:
        self.global_tags = global_tags
        self._series = series_entries
        self.doc = doc

    @classmethod
    def empty(cls) -> MetaData:
        """Metadata of a folder without ``meta_data.json``."""
        return cls({}, {}, None)

    @property
    def path(self) -> Path | None:
        """File the metadata was read from."""
        return self.doc.path if self.doc is not None else None

    def series_keys(self) -> list[str]:
        """The ``series_tags`` keys as written in the file."""
        return [original for original, _ in self._series.values()]

    def tags_for(self, file_name: str) -> dict[BaseTag, TagValue]:
        """Effective tags of one NIfTI file: global tags updated by its series tags.

        Parameters
        ----------
        file_name : str
            Base name of the NIfTI file (``Case00.nii.gz``); matched against
            the ``series_tags`` keys with or without ``.gz``.

        Raises
        ------
        TagKeyError, TagValueError, UnsupportedModalityError
            If that file's series tags are invalid.
        """
        tags = dict(self.global_tags)
        entry = self._series.get(_strip_gz(file_name))
        if entry is not None:
            original, mapping = entry
            tags.update(validate_tags(mapping, doc=self.doc, parents=("series_tags", original)))
        return tags


def load_meta_data(path: Path) -> MetaData:
    """Read and check ``meta_data.json``.

    Parameters
    ----------
    path : pathlib.Path
        The file.

    Returns
    -------
    MetaData
        Validated global tags and the per-file entries.

    Raises
    ------
    MissingFileError, MalformedJsonError
        If the file is missing, not JSON or not shaped as documented.
    TagKeyError, TagValueError, UnsupportedModalityError
        If a global tag is invalid.
    """
    doc = read_json_object(path)
    unknown = sorted(set(doc.data) - {"global_tags", "series_tags"})
    if unknown:
        raise MalformedJsonError(
            "unexpected top-level key; only 'global_tags' and 'series_tags' are allowed",
            path=path,
            key=unknown[0],
            line=doc.line_of(unknown[0]),
        )
    global_raw = doc.data.get("global_tags", {})
    if not isinstance(global_raw, dict):
        raise MalformedJsonError(
            "'global_tags' must be an object of \"GGGG|EEEE\": value",
            path=path,
            key="global_tags",
            line=doc.line_of("global_tags"),
        )
    series_raw = doc.data.get("series_tags", {})
    if not isinstance(series_raw, dict):
        raise MalformedJsonError(
            "'series_tags' must be an object keyed by NIfTI file name",
            path=path,
            key="series_tags",
            line=doc.line_of("series_tags"),
        )
    global_tags = validate_tags(global_raw, doc=doc, parents=("global_tags",))
    series: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, mapping in series_raw.items():
        line = doc.line_of("series_tags", name)
        if not isinstance(mapping, dict):
            raise MalformedJsonError(
                'series tags must be an object of "GGGG|EEEE": value',
                path=path,
                key=name,
                line=line,
            )
        norm = _strip_gz(name)
        if norm in series:
            raise MalformedJsonError(
                f"series_tags has both {series[norm][0]!r} and {name!r} for the same file",
                path=path,
                key=name,
                line=line,
            )
        series[norm] = (name, mapping)
    return MetaData(global_tags, series, doc)


def apply_tags(ds: Dataset, tags: Mapping[BaseTag, TagValue]) -> None:
    """Set validated tags on a dataset (overwriting what is there)."""
    for value in tags.values():
        ds.add_new(value.tag, value.vr, value.value)
