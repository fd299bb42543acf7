"""Checks an instance must pass before it is accepted, shared by the DIMSE and STOW-RS doors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from dicomflow.dicom.uids import uid_problem

__all__ = ["InstanceFacts", "InstanceRejectedError", "StoreStatus", "inspect_instance"]

_REQUIRED_UIDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
_HEADER_TAGS = [*_REQUIRED_UIDS, "SOPClassUID"]


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


@dataclass(frozen=True, slots=True)
class InstanceFacts:
    """What the spool records of an accepted instance."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str


def _text(value: object) -> str:
    return "" if value is None else str(value).rstrip("\x00 ")


def inspect_instance(path: Path) -> InstanceFacts:
    """Read the header of a DICOM Part 10 file and check the UIDs the platform relies on.

    Parameters
    ----------
    path
        A file with preamble, ``DICM`` and file meta information.

    Returns
    -------
    InstanceFacts
        The UIDs and transfer syntax.

    Raises
    ------
    InstanceRejectedError
        When the file cannot be parsed or a Study/Series/SOP Instance UID is missing, empty,
        too long or malformed.
    """
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
    return InstanceFacts(
        sop_instance_uid=_text(values["SOPInstanceUID"]),
        series_instance_uid=_text(values["SeriesInstanceUID"]),
        study_instance_uid=_text(values["StudyInstanceUID"]),
        sop_class_uid=sop_class,
        transfer_syntax_uid=transfer_syntax,
    )
