"""Checks an instance must pass before it is accepted, the same at every door."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from dicomflow.dicom.headers import HEADER_TAGS, instance_from_header
from dicomflow.dicom.instance import Instance, Orientation, Position
from dicomflow.dicom.uids import uid_problem
from dicomflow.intake.header import (
    Part10Header,
    Unsure,
    read_part10_header,
    tag_of,
    wanted_tags,
)

__all__ = ["HEAD_BYTES", "InstanceRejectedError", "StoreStatus", "inspect_instance"]

_REQUIRED_UIDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
_HEADER_TAGS = sorted({*_REQUIRED_UIDS, "SOPClassUID", *HEADER_TAGS})
_WANTED = wanted_tags(_HEADER_TAGS)
_TAG = {keyword: tag_of(keyword) for keyword in _HEADER_TAGS}
#: The fast reader gets this much of a file (a longer header is read by pydicom); a writer
#: that keeps the first ``HEAD_BYTES + 1`` bytes can pass them to :func:`inspect_instance`.
HEAD_BYTES = 64 * 1024


class StoreStatus(IntEnum):
    """Storage Service statuses (PS3.4 B.2.3) used by both doors (STOW FailureReason too)."""

    SUCCESS = 0x0000
    #: Error: Refused: Out of Resources (the spool could not write).
    OUT_OF_RESOURCES = 0xA700
    #: Error: Data Set does not match SOP Class (a required UID is missing or invalid).
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    #: Error: Cannot understand (the data set cannot be parsed).
    CANNOT_UNDERSTAND = 0xC000
    #: Processing failure (an unexpected error in the receiver).
    PROCESSING_FAILURE = 0x0110
    #: Refused: SOP Class not supported (PS3.7 C.4; e.g. a malformed SOP Class UID).
    SOP_CLASS_NOT_SUPPORTED = 0x0122


class InstanceRejectedError(Exception):
    """An instance that cannot be accepted.

    Parameters
    ----------
    reason
        A sentence naming the problem, fit for an Error Comment.
    status
        The status to answer with.
    sop_class_uid, sop_instance_uid
        What is known of the instance, for the response (may be empty).
    """

    def __init__(
        self,
        reason: str,
        status: StoreStatus,
        sop_class_uid: str = "",
        sop_instance_uid: str = "",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


def _text(value: object) -> str:
    return "" if value is None else str(value).rstrip("\x00 ")


def inspect_instance(path: Path, head: bytes | None = None) -> Instance:
    """Read the header of a DICOM Part 10 file and check the UIDs the platform relies on.

    Parameters
    ----------
    path
        A file with preamble, ``DICM`` and file meta information.
    head
        The file's first ``HEAD_BYTES + 1`` bytes (all of it when shorter), when the caller
        has them: saves reading them again.

    Returns
    -------
    Instance
        Its record: UIDs, transfer syntax and what grouping needs (no file facts yet).

    Raises
    ------
    InstanceRejectedError
        When the file cannot be parsed or a Study/Series/SOP Instance UID is missing, empty,
        too long or malformed.
    """
    # Most instances are plainly encoded and acceptable: a fast reader answers for those in
    # a tenth of the time; pydicom reads every other file and words every rejection.
    facts = _inspect_plain(path, head)
    if facts is not None:
        return facts
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        values = {kw: ds.get(kw) for kw in _HEADER_TAGS}
        transfer_syntax = _text(ds.file_meta.get("TransferSyntaxUID"))
        meta_sop_instance = _text(ds.file_meta.get("MediaStorageSOPInstanceUID"))
        meta_sop_class = _text(ds.file_meta.get("MediaStorageSOPClassUID"))
    except InvalidDicomError as exc:
        raise InstanceRejectedError(
            f"not a DICOM file: {exc}", StoreStatus.CANNOT_UNDERSTAND
        ) from None
    except Exception as exc:  # pydicom raises many types on garbage; all mean "unparseable"
        raise InstanceRejectedError(
            f"data set cannot be parsed: {type(exc).__name__}: {exc}",
            StoreStatus.CANNOT_UNDERSTAND,
        ) from None
    if not transfer_syntax:
        raise InstanceRejectedError(
            "no file meta information (Transfer Syntax UID missing)", StoreStatus.CANNOT_UNDERSTAND
        )
    if all(values[kw] is None for kw in _HEADER_TAGS):
        # Random bytes decode to some elements, but never to these: not a usable data set.
        raise InstanceRejectedError(
            "data set cannot be parsed: no SOP Class/Instance, Study or Series UID found",
            StoreStatus.CANNOT_UNDERSTAND,
            meta_sop_class,
            meta_sop_instance,
        )
    sop_class = _text(values["SOPClassUID"]) or meta_sop_class
    sop_instance = _text(values["SOPInstanceUID"]) or meta_sop_instance
    for keyword in _REQUIRED_UIDS:
        problem = uid_problem(values[keyword], keyword)
        if problem:
            raise InstanceRejectedError(
                problem, StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, sop_class, sop_instance
            )
    try:
        return instance_from_header(ds, path)
    except ValueError:
        # Accepted (e.g. the SOP Class UID only in the file meta), but grouping will read
        # the file itself and judge it: the grouping facts stay unknown.
        return Instance(
            path=path,
            sop_instance_uid=_text(values["SOPInstanceUID"]),
            series_instance_uid=_text(values["SeriesInstanceUID"]),
            study_instance_uid=_text(values["StudyInstanceUID"]),
            sop_class_uid=sop_class,
            transfer_syntax_uid=transfer_syntax,
        )


def _inspect_plain(path: Path, head: bytes | None = None) -> Instance | None:
    """What :func:`inspect_instance` returns for a plainly encoded, acceptable file.

    ``None`` when the fast reader is unsure or the file would be rejected: pydicom decides
    then. The facts mirror those of the pydicom path (``tests/receiver`` compares both).
    """
    if head is None:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES + 1)
    try:
        header = read_part10_header(head[:HEAD_BYTES], _WANTED, complete=len(head) <= HEAD_BYTES)
        return _plain_facts(path, header)
    except Unsure:
        return None


def _plain_facts(path: Path, header: Part10Header) -> Instance | None:
    uids = {keyword: header.text(_TAG[keyword]) for keyword in (*_REQUIRED_UIDS, "SOPClassUID")}
    if not header.transfer_syntax_uid or any(uid_problem(v, k) for k, v in uids.items()):
        return None
    # As instance_from_header() reads them.
    rows = header.unsigned_short(_TAG["Rows"])
    columns = header.unsigned_short(_TAG["Columns"])
    frames = (header.integer_string(_TAG["NumberOfFrames"]) or 1) if rows and columns else 0
    modality = (header.text(_TAG["Modality"]) or "").strip("\x00 ")
    return Instance(
        path=path,
        sop_instance_uid=_text(uids["SOPInstanceUID"]),
        series_instance_uid=_text(uids["SeriesInstanceUID"]),
        study_instance_uid=_text(uids["StudyInstanceUID"]),
        sop_class_uid=_text(uids["SOPClassUID"]),
        transfer_syntax_uid=header.transfer_syntax_uid,
        modality=modality or None,
        instance_number=header.integer_string(_TAG["InstanceNumber"]),
        number_of_frames=max(frames, 0),
        image_position=_position(header.decimal_strings(_TAG["ImagePositionPatient"])),
        image_orientation=_orientation(header.decimal_strings(_TAG["ImageOrientationPatient"])),
    )


def _position(values: tuple[float, ...] | None) -> Position | None:
    return (values[0], values[1], values[2]) if values is not None and len(values) == 3 else None


def _orientation(values: tuple[float, ...] | None) -> Orientation | None:
    if values is None or len(values) != 6:
        return None
    return (values[0], values[1], values[2], values[3], values[4], values[5])
