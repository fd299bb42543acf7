"""A fast reader of the few header elements the spool checks on every arriving instance.

``pydicom.dcmread(..., specific_tags=...)`` still decodes every element header up to the pixel
data into Python objects and converts values through its validators: about a millisecond per
instance, a fifth of the receiver's time per small instance. The spool needs a dozen
elements of plainly encoded files; :func:`read_part10_header` walks the element headers with
``struct`` and keeps the raw values of the wanted top-level elements.

It reads only what it is sure about. Anything unusual (deflated or private transfer syntaxes,
VRs that are not what the dictionary says, undefined-length values other than sequences,
values past the bytes given, multi-valued or non-ASCII text) raises :class:`Unsure`, and the
caller asks pydicom, which stays the judge of every file that is not plain; tests compare
both readers on every sample file.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import UID

__all__ = ["Part10Header", "Unsure", "read_part10_header", "tag_of", "wanted_tags"]

_PREAMBLE = 128
_UNDEFINED = 0xFFFFFFFF
#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_VALID_VRS = _LONG_VRS | {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
    b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
}  # fmt: skip
#: Explicit VR -> whether its length field is 4 bytes long; unknown VRs are absent.
_VR_HAS_LONG_LENGTH = {vr: vr in _LONG_VRS for vr in _VALID_VRS}
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
#: Nesting deeper than this is left to pydicom (and keeps the recursion bounded).
_MAX_DEPTH = 16
_META_TRANSFER_SYNTAX = 0x00020010
_META_SOP_CLASS = 0x00020002
_META_SOP_INSTANCE = 0x00020003
#: Where ``dcmread(stop_before_pixels=True)`` stops: (Float/Double Float) Pixel Data.
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_FIRST_PIXEL_TAG = min(_PIXEL_TAGS)
_IS_RE = re.compile(r"[+-]?[0-9]{1,12}")
_DS_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
#: Element headers as (group, element, VR, 2-byte length); implicit VR has no VR ("0s")
#: and a 4-byte length.
_EXPLICIT_LE = struct.Struct("<HH2sH")
_EXPLICIT_BE = struct.Struct(">HH2sH")
_IMPLICIT_LE = struct.Struct("<HH0sL")
_IMPLICIT_BE = struct.Struct(">HH0sL")
_TAG_LE = struct.Struct("<HH")
_TAG_BE = struct.Struct(">HH")
_ITEM_LE = struct.Struct("<HHL")
_ITEM_BE = struct.Struct(">HHL")
_U16 = {True: struct.Struct("<H"), False: struct.Struct(">H")}
_U32 = {True: struct.Struct("<L"), False: struct.Struct(">L")}


class Unsure(Exception):
    """The bytes are not plain enough for the fast reader: let pydicom read the file."""


def tag_of(keyword: str) -> int:
    """The tag of a DICOM keyword."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"unknown keyword {keyword!r}")
    return int(tag)


def wanted_tags(keywords: Iterable[str]) -> dict[int, str]:
    """The tags of ``keywords`` with their dictionary VRs (what the file must use too)."""
    return {tag_of(keyword): dictionary_VR(tag_of(keyword)) for keyword in keywords}


@dataclass(frozen=True, slots=True)
class Part10Header:
    """The file meta UIDs and the raw values of the wanted top-level elements of a file.

    Attributes
    ----------
    transfer_syntax_uid, media_sop_class_uid, media_sop_instance_uid
        From the file meta information, trailing padding removed ("" when absent).
    little_endian
        The byte order of the data set.
    values
        The value bytes of each wanted element present in the data set, by tag.
    """

    transfer_syntax_uid: str
    media_sop_class_uid: str
    media_sop_instance_uid: str
    little_endian: bool
    values: dict[int, bytes]

    def text(self, tag: int) -> str | None:
        """A single-valued text element as pydicom gives it (``None`` when absent).

        Raises
        ------
        Unsure
            When the value is not plain ASCII or has several values.
        """
        raw = self.values.get(tag)
        if raw is None:
            return None
        if not raw.isascii() or b"\\" in raw:
            raise Unsure(f"text value of {tag:08X}")
        return raw.decode("ascii")

    def integer_string(self, tag: int) -> int | None:
        """An IS element as an int (``None`` when absent or empty)."""
        text = self.text(tag)
        if text is None:
            return None
        text = text.strip(" \x00")
        if not text:
            return None
        if not _IS_RE.fullmatch(text):
            raise Unsure(f"IS value of {tag:08X}")
        return int(text)

    def decimal_strings(self, tag: int) -> tuple[float, ...] | None:
        """A DS element as a tuple of floats; ``None`` when absent, empty or single-valued.

        ``None`` for a single value too: pydicom returns a number there, not a sequence, and
        the callers want a position or an orientation (3 or 6 values).
        """
        raw = self.values.get(tag)
        if raw is None:
            return None
        if not raw.isascii():
            raise Unsure(f"DS value of {tag:08X}")
        text = raw.decode("ascii").strip(" \x00")
        if not text:
            return None
        parts = [part.strip(" ") for part in text.split("\\")]
        if not all(_DS_RE.fullmatch(part) for part in parts):
            raise Unsure(f"DS value of {tag:08X}")
        if len(parts) == 1:
            return None
        return tuple(float(part) for part in parts)

    def unsigned_short(self, tag: int) -> int | None:
        """A single US value (``None`` when absent or empty)."""
        raw = self.values.get(tag)
        if not raw:
            return None
        if len(raw) != 2:
            raise Unsure(f"US value of {tag:08X}")
        return int(_U16[self.little_endian].unpack(raw)[0])


def read_part10_header(data: bytes, wanted: dict[int, str], *, complete: bool) -> Part10Header:
    """Read the file meta and the ``wanted`` top-level elements of a DICOM Part 10 file.

    Parameters
    ----------
    data
        The file, or its first bytes.
    wanted
        Tag -> VR (see :func:`wanted_tags`); an element present with another VR is unsure.
    complete
        ``data`` is the whole file (so the data set may end inside it).

    Returns
    -------
    Part10Header
        The file meta UIDs and the raw values found; a wanted element that is absent has no
        entry.

    Raises
    ------
    Unsure
        When the file is not plainly encoded or the wanted elements are not all within
        ``data``: read it with pydicom.
    """
    if len(data) < _PREAMBLE + 4 or data[_PREAMBLE : _PREAMBLE + 4] != b"DICM":
        raise Unsure("no DICM prefix")
    meta: dict[int, bytes] = {}
    pos = _read_meta(data, _PREAMBLE + 4, meta)
    syntax = _meta_text(meta, _META_TRANSFER_SYNTAX)
    uid = UID(syntax)
    if not uid.is_transfer_syntax or uid.is_deflated:
        raise Unsure(f"transfer syntax {syntax!r}")
    little, implicit = uid.is_little_endian, uid.is_implicit_VR
    values: dict[int, bytes] = {}
    _read_top_level(data, pos, little, implicit, wanted, values, complete)
    return Part10Header(
        transfer_syntax_uid=syntax,
        media_sop_class_uid=_meta_text(meta, _META_SOP_CLASS),
        media_sop_instance_uid=_meta_text(meta, _META_SOP_INSTANCE),
        little_endian=little,
        values=values,
    )


def _meta_text(meta: dict[int, bytes], tag: int) -> str:
    raw = meta.get(tag, b"")
    if not raw.isascii() or b"\\" in raw:
        raise Unsure(f"file meta {tag:08X}")
    return raw.decode("ascii").rstrip("\x00 ")


def _read_meta(data: bytes, pos: int, meta: dict[int, bytes]) -> int:
    """Read group 0002 (always Explicit VR Little Endian); return where the data set starts."""
    end = len(data)
    while pos + 8 <= end:
        group, element = _TAG_LE.unpack_from(data, pos)
        if group != 0x0002:
            return pos
        vr = data[pos + 4 : pos + 6]
        if vr not in _VALID_VRS:
            raise Unsure("file meta VR")
        if vr in _LONG_VRS:
            length = _U32[True].unpack_from(data, pos + 8)[0]
            start = pos + 12
        else:
            length = _U16[True].unpack_from(data, pos + 6)[0]
            start = pos + 8
        if length == _UNDEFINED or start + length > end:
            raise Unsure("file meta length")
        meta[0x00020000 | element] = data[start : start + length]
        pos = start + length
    raise Unsure("file meta runs to the end of the bytes")


def _element(
    data: bytes, pos: int, little: bool, implicit: bool
) -> tuple[int, bytes | None, int, int]:
    """Decode the element header at ``pos``: ``(tag, vr, length, value start)``."""
    if pos + 8 > len(data):
        raise Unsure("element header past the bytes")
    group, element = (_TAG_LE if little else _TAG_BE).unpack_from(data, pos)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:
        return tag, None, _U32[little].unpack_from(data, pos + 4)[0], pos + 8
    vr = data[pos + 4 : pos + 6]
    if vr not in _VALID_VRS:
        # pydicom would switch to Implicit VR here; not a plain file.
        raise Unsure(f"VR {vr!r}")
    if vr in _LONG_VRS:
        if pos + 12 > len(data):
            raise Unsure("element header past the bytes")
        return tag, vr, _U32[little].unpack_from(data, pos + 8)[0], pos + 12
    return tag, vr, _U16[little].unpack_from(data, pos + 6)[0], pos + 8


def _read_top_level(
    data: bytes,
    pos: int,
    little: bool,
    implicit: bool,
    wanted: dict[int, str],
    values: dict[int, bytes],
    complete: bool,
) -> None:
    """Walk the data set up to the pixel data, as ``dcmread(stop_before_pixels=True)`` does.

    Every element header is checked, not only those up to the last wanted tag: a file the
    fast reader accepts is one pydicom reads without trouble as well.
    """
    end = len(data)
    previous = -1
    if implicit and pos + 6 <= end and data[pos + 4 : pos + 6] in _VALID_VRS:
        # Looks explicit although the transfer syntax says implicit: pydicom guesses; we don't.
        raise Unsure("implicit VR data set that looks explicit")
    # The element header is decoded inline rather than by _element(), with lookups bound to
    # local names: this loop runs for every element of every arriving instance.
    head = (
        (_IMPLICIT_LE if little else _IMPLICIT_BE)
        if implicit
        else (_EXPLICIT_LE if little else _EXPLICIT_BE)
    ).unpack_from
    long_length = _U32[little].unpack_from
    vr_has_long_length = _VR_HAS_LONG_LENGTH.get
    wanted_vr = wanted.get
    while pos < end:
        if pos + 8 > end:
            raise Unsure("element header past the bytes")
        group, element, vr, length = head(data, pos)
        tag = group << 16 | element
        if tag >= _FIRST_PIXEL_TAG and tag in _PIXEL_TAGS:
            return
        if tag <= previous or group == 0xFFFE:
            raise Unsure("elements out of order")
        previous = tag
        start = pos + 8
        if not implicit:
            is_long = vr_has_long_length(vr)
            if is_long is None:
                # pydicom would switch to Implicit VR here; not a plain file.
                raise Unsure(f"VR {vr!r}")
            if is_long:
                if pos + 12 > end:
                    raise Unsure("element header past the bytes")
                length = long_length(data, start)[0]
                start += 4
        if length == _UNDEFINED:
            if tag in wanted or not (implicit or vr == b"SQ"):
                raise Unsure(f"undefined length of {tag:08X}")
            pos = _skip_sequence(data, start, little, implicit, 0)
            continue
        pos = start + length
        if pos > end:
            raise Unsure(f"value of {tag:08X} past the bytes")
        expected = wanted_vr(tag)
        if expected is not None:
            if not implicit and vr.decode("ascii") != expected:
                raise Unsure(f"VR of {tag:08X}")
            values[tag] = data[start:pos]
    if not complete:
        raise Unsure("the header may go on past the bytes")


def _skip_sequence(data: bytes, pos: int, little: bool, implicit: bool, depth: int) -> int:
    """Skip the items of an undefined-length sequence; return the position after it."""
    if depth >= _MAX_DEPTH:
        raise Unsure("sequences nested too deep")
    header = _ITEM_LE if little else _ITEM_BE
    while True:
        if pos + 8 > len(data):
            raise Unsure("sequence past the bytes")
        group, element, length = header.unpack_from(data, pos)
        tag = group << 16 | element
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise Unsure("no item in a sequence")
        if length != _UNDEFINED:
            pos += length
            continue
        pos = _skip_item(data, pos, little, implicit, depth + 1)


def _skip_item(data: bytes, pos: int, little: bool, implicit: bool, depth: int) -> int:
    """Skip the elements of an undefined-length item; return the position after it."""
    while True:
        tag, vr, length, start = _element(data, pos, little, implicit)
        if tag == _ITEM_END:
            return start
        if length == _UNDEFINED:
            if not (implicit or vr == b"SQ"):
                raise Unsure(f"undefined length of {tag:08X}")
            pos = _skip_sequence(data, start, little, implicit, depth)
            continue
        pos = start + length
