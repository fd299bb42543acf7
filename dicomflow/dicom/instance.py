"""The one record of a DICOM instance: what the doors check, the spool keeps and the steps use.

A door reads it from the header when the instance arrives (:mod:`dicomflow.intake.checks`),
the spool completes it with the file's facts and keeps it as a line of the batch's manifest,
and the pipeline groups the batch's records into series without reading a header again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Instance", "Orientation", "Position", "dataset_digest"]

Position = tuple[float, float, float]
Orientation = tuple[float, float, float, float, float, float]


def dataset_digest(data: bytes) -> str:
    """SHA-256 of the dataset after the file meta, which PACSs may legitimately rewrite.

    The PACS keeps the dataset of an instance byte for byte as it was sent (measured on
    Orthanc with every transfer syntax), but writes its own file meta; so an instance in the
    PACS is the file given when this digest of both agrees.
    """
    if data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00":
        meta_length = int.from_bytes(data[140:144], "little")
        data = data[144 + meta_length :]
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance: its identity, what grouping and sorting need, and its file.

    Attributes
    ----------
    path
        Where its file is (for an instance known from the PACS's metadata: any name that
        identifies it).
    sop_instance_uid, series_instance_uid, study_instance_uid, sop_class_uid
        (0008,0018), (0020,000E), (0020,000D), (0008,0016).
    transfer_syntax_uid
        (0002,0010) of the file; empty when not known.
    modality
        Modality (0008,0060), ``None`` when absent.
    instance_number
        Instance Number (0020,0013), ``None`` when absent or not an integer.
    number_of_frames
        Number of Frames (0028,0008); 1 for a single-frame image, 0 when there is no image at
        all (no Rows/Columns: SR, RT Structure Set); ``None`` when the header did not tell
        consistently (grouping then reads the file).
    image_position, image_orientation
        Image Position/Orientation (Patient) when present at the top level.
    size, sha256, received_at
        The file's length, SHA-256 (hex) and arrival time (ISO 8601, UTC) once the spool
        holds it; empty before.
    """

    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str = ""
    modality: str | None = None
    instance_number: int | None = None
    number_of_frames: int | None = None
    image_position: Position | None = None
    image_orientation: Orientation | None = None
    size: int = 0
    sha256: str = ""
    received_at: str = ""

    @property
    def frames(self) -> int:
        """Frames of image data (0: none; an unknown count reads as one image)."""
        return 1 if self.number_of_frames is None else self.number_of_frames

    def sort_key(self) -> tuple[bool, int, str]:
        """Order within a series: by Instance Number (missing last), then by file."""
        number = self.instance_number
        return (number is None, number or 0, str(self.path))

    def manifest_record(self) -> dict[str, Any]:
        """The batch-manifest line of this instance (its file named relative to the batch).

        Written per received instance: built by hand, not with ``dataclasses.asdict`` (its
        deep copy cost ~0.1 ms an instance).
        """
        return {
            "file": self.path.name,
            "sop_instance_uid": self.sop_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "transfer_syntax_uid": self.transfer_syntax_uid,
            "size": self.size,
            "sha256": self.sha256,
            "received_at": self.received_at,
            "modality": self.modality,
            "instance_number": self.instance_number,
            "number_of_frames": self.number_of_frames,
            "image_position": list(self.image_position) if self.image_position else None,
            "image_orientation": list(self.image_orientation) if self.image_orientation else None,
        }

    @classmethod
    def from_manifest_record(cls, record: dict[str, Any], directory: Path) -> Instance:
        """Inverse of :meth:`manifest_record`, the file found in ``directory``.

        Lines written before the grouping facts were recorded lack them: they read as
        ``None`` (not known), and grouping reads those files' headers.
        """
        position = record.get("image_position")
        orientation = record.get("image_orientation")
        return cls(
            path=directory / record["file"],
            sop_instance_uid=record["sop_instance_uid"],
            series_instance_uid=record["series_instance_uid"],
            study_instance_uid=record["study_instance_uid"],
            sop_class_uid=record["sop_class_uid"],
            transfer_syntax_uid=record.get("transfer_syntax_uid", ""),
            modality=record.get("modality"),
            instance_number=record.get("instance_number"),
            number_of_frames=record.get("number_of_frames"),
            image_position=_position(position),
            image_orientation=_orientation(orientation),
            size=int(record.get("size", 0)),
            sha256=record.get("sha256", ""),
            received_at=record.get("received_at", ""),
        )


def _position(values: list[float] | None) -> Position | None:
    return (values[0], values[1], values[2]) if values and len(values) == 3 else None


def _orientation(values: list[float] | None) -> Orientation | None:
    if not values or len(values) != 6:
        return None
    return (values[0], values[1], values[2], values[3], values[4], values[5])
