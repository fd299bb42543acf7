"""Wire encoding of the file meta and of C-STORE requests and responses, without pydicom.

Per small instance pynetdicom 3.0.4 built and encoded a pydicom file meta data set for the
received data set, decoded the C-STORE request's command set with pydicom, and built,
validated and encoded a pydicom command data set for the response. The functions here do
the plain cases with ``struct``, byte for byte as pynetdicom and pydicom do, and leave
everything else to them:

* :func:`encode_file_meta`: the file meta group written before a received data set;
* :func:`parse_store_request`: a plain C-STORE request's command set, as a
  :class:`StoreRequest` (``None``: pydicom decodes it);
* :func:`encode_store_response`, :func:`encode_plain_store_response`: a plain C-STORE
  response (no error comment or offending element; ``None``: pynetdicom encodes it).

Tests compare the file meta and the responses byte for byte with what pynetdicom and pydicom
write.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta

if TYPE_CHECKING:
    from pydicom.uid import UID

__all__ = [
    "NO_DATA_SET",
    "StoreRequest",
    "encode_file_meta",
    "encode_plain_store_response",
    "encode_store_response",
    "parse_store_request",
]

_C_STORE_RSP = 0x8001
#: Command Data Set Type (0000,0800) of a message without a data set (PS3.7 E.1-1).
NO_DATA_SET = 0x0101


def _ui(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def _explicit(tag: int, vr: bytes, value: bytes) -> bytes:
    """One Explicit VR Little Endian element of a short VR."""
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def encode_file_meta(
    sop_class_uid: str | None, sop_instance_uid: str | None, transfer_syntax_uid: str
) -> bytes:
    """The file meta group pynetdicom writes for a received data set, byte for byte.

    As ``write_file_meta_info(fp, create_file_meta(...))`` encodes it; a missing value or
    one that is not plain ASCII goes through pydicom itself (and fails as it fails there).
    """
    if sop_class_uid is None or sop_instance_uid is None:
        return _pydicom_file_meta(sop_class_uid, sop_instance_uid, transfer_syntax_uid)
    try:
        body = (
            # (0002,0001) File Meta Information Version, OB: a long VR.
            struct.pack("<HH2sHL", 0x0002, 0x0001, b"OB", 0, 2)
            + b"\x00\x01"
            + _explicit(0x00020002, b"UI", _ui(sop_class_uid))
            + _explicit(0x00020003, b"UI", _ui(sop_instance_uid))
            + _explicit(0x00020010, b"UI", _ui(transfer_syntax_uid))
            + _explicit(0x00020012, b"UI", _ui(PYNETDICOM_IMPLEMENTATION_UID))
            + _explicit(0x00020013, b"SH", _sh(PYNETDICOM_IMPLEMENTATION_VERSION))
        )
    except UnicodeEncodeError:
        return _pydicom_file_meta(sop_class_uid, sop_instance_uid, transfer_syntax_uid)
    return _explicit(0x00020000, b"UL", struct.pack("<L", len(body))) + body


def _sh(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b" " if len(data) % 2 else data


def _pydicom_file_meta(
    sop_class_uid: str | None, sop_instance_uid: str | None, transfer_syntax: str
) -> bytes:
    meta: FileMetaDataset = create_file_meta(
        sop_class_uid=cast("UID", sop_class_uid),
        sop_instance_uid=cast("UID", sop_instance_uid),
        transfer_syntax=cast("UID", transfer_syntax),
    )
    buffer = DicomBytesIO()
    write_file_meta_info(buffer, meta)
    return buffer.getvalue()


def encode_plain_store_response(primitive: C_STORE) -> bytes | None:
    """The command set of a C-STORE response without optional fields, or ``None``.

    Implicit VR Little Endian, elements in tag order, as pynetdicom encodes it; ``None``
    when the response carries more than the fixed fields (error comment, offending element)
    or lacks one of them: pynetdicom encodes those.
    """
    if (
        primitive.MessageIDBeingRespondedTo is None
        or primitive.Status is None
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
        or not primitive.AffectedSOPClassUID
        or not primitive.AffectedSOPInstanceUID
    ):
        return None
    try:
        return encode_store_response(
            int(primitive.MessageIDBeingRespondedTo),
            str(primitive.AffectedSOPClassUID),
            str(primitive.AffectedSOPInstanceUID),
            int(primitive.Status),
        )
    except UnicodeEncodeError:
        return None


def encode_store_response(
    message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int
) -> bytes:
    """The command set of a C-STORE response with only the fixed fields, as pynetdicom encodes it.

    Raises
    ------
    UnicodeEncodeError
        When a UID is not ASCII.
    """
    body = (
        _implicit(0x00000002, _ui(sop_class_uid))
        + _implicit(0x00000100, struct.pack("<H", _C_STORE_RSP))
        + _implicit(0x00000120, struct.pack("<H", message_id))
        + _implicit(0x00000800, struct.pack("<H", NO_DATA_SET))
        + _implicit(0x00000900, struct.pack("<H", status))
        + _implicit(0x00001000, _ui(sop_instance_uid))
    )
    return _implicit(0x00000000, struct.pack("<L", len(body))) + body


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """The fields of a plain C-STORE request's command set (PS3.7 9.3.1.1)."""

    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    priority: int
    move_originator_aet: str | None = None
    move_originator_message_id: int | None = None


#: The elements a C-STORE request may have and :func:`parse_store_request` reads:
#: tag -> fixed value length (``None``: a UID or AE title, of any length).
_STORE_RQ_ELEMENTS: dict[int, int | None] = {
    0x00000000: 4,  # Command Group Length (UL)
    0x00000002: None,  # Affected SOP Class UID
    0x00000100: 2,  # Command Field
    0x00000110: 2,  # Message ID
    0x00000700: 2,  # Priority
    0x00000800: 2,  # Command Data Set Type
    0x00001000: None,  # Affected SOP Instance UID
    0x00001030: None,  # Move Originator Application Entity Title
    0x00001031: 2,  # Move Originator Message ID
}
_IMPLICIT_HEADER = struct.Struct("<HHL")
_U16 = struct.Struct("<H")
_C_STORE_RQ = 0x0001


def parse_store_request(command: bytes) -> StoreRequest | None:
    """Read a C-STORE request's command set, or ``None`` when it is anything else.

    Decoding the command set with pydicom and building pynetdicom's request and response
    primitives, whose setters validate every UID, cost ~0.2 ms per instance. This reads
    the command set of a plain C-STORE request (Implicit VR Little Endian, PS3.7 6.3.1)
    with ``struct``: only the elements a C-STORE request has, each once and in order, a
    data set announced, the UIDs as pydicom decodes them (trailing NULs and spaces
    removed) and as pynetdicom accepts them (1 to 64 characters). Anything else, ``None``:
    pynetdicom decodes it, as before.
    """
    values: dict[int, bytes] = {}
    pos, end, previous = 0, len(command), -1
    while pos < end:
        if pos + 8 > end:
            return None
        group, element, length = _IMPLICIT_HEADER.unpack_from(command, pos)
        tag = group << 16 | element
        pos += 8
        if tag <= previous or tag not in _STORE_RQ_ELEMENTS or pos + length > end:
            return None
        fixed = _STORE_RQ_ELEMENTS[tag]
        if fixed is not None and length != fixed:
            return None
        values[tag] = command[pos : pos + length]
        pos += length
        previous = tag
    try:
        if (
            _U16.unpack(values[0x00000100])[0] != _C_STORE_RQ
            or _U16.unpack(values[0x00000800])[0] == NO_DATA_SET
        ):
            return None
        sop_class = _plain_uid(values[0x00000002])
        sop_instance = _plain_uid(values[0x00001000])
        message_id = _U16.unpack(values[0x00000110])[0]
        priority = _U16.unpack(values[0x00000700])[0]
    except KeyError:
        return None
    if sop_class is None or sop_instance is None:
        return None
    originator = values.get(0x00001030)
    originator_id = values.get(0x00001031)
    if originator is not None and not originator.isascii():
        return None
    return StoreRequest(
        message_id=message_id,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        priority=priority,
        move_originator_aet=None if originator is None else originator.decode("ascii").strip(),
        move_originator_message_id=(
            None if originator_id is None else _U16.unpack(originator_id)[0]
        ),
    )


def _plain_uid(raw: bytes) -> str | None:
    """A UID value as pydicom decodes it, if it is a single value pynetdicom accepts."""
    if not raw.isascii() or b"\\" in raw:
        return None
    value = raw.decode("ascii").rstrip("\x00 ")
    return value if 0 < len(value) <= 64 else None


def _implicit(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value
