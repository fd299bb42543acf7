"""Read DICOM headers of a batch of files and group the instances by series.

Only the headers are read (the pixel data is never loaded), so grouping a batch of
thousands of instances costs well under a millisecond per file. A file that cannot be
used (not DICOM, truncated, a required UID missing or malformed, a series that claims two
studies) is returned with its reason instead of failing the batch: the caller keeps it
and tells the user why (nothing is silently dropped).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicomflow.dicom.instance import Instance
from dicomflow.dicom.uids import uid_problem

__all__ = [
    "HEADER_TAGS",
    "HeaderScan",
    "Instance",
    "RejectedFile",
    "SeriesGroup",
    "group_instances",
    "group_series",
    "instance_from_header",
    "read_header",
    "read_instance_info",
]

#: The elements needed to group, sort and count instances (read with ``specific_tags``).
HEADER_TAGS: tuple[str, ...] = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "InstanceNumber",
    "NumberOfFrames",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "Rows",
    "Columns",
)

PathLike = str | os.PathLike[str]

#: Version of :meth:`HeaderScan.to_json`'s format (1 grouped the instances itself).
_SCAN_FORMAT = 2


@dataclass(slots=True)
class SeriesGroup:
    """The instances of one series found in a batch.

    Attributes
    ----------
    series_instance_uid
        Series Instance UID (0020,000E).
    study_instance_uid
        Study Instance UID (0020,000D), the same for every instance.
    modality
        Modality (0008,0060) of the first instance, ``None`` when absent.
    sop_class_uid
        SOP Class UID of the first instance.
    instances
        The instances in the order they were given.
    """

    series_instance_uid: str
    study_instance_uid: str
    modality: str | None
    sop_class_uid: str
    instances: list[Instance] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        """The file paths of all instances."""
        return [instance.path for instance in self.instances]

    @property
    def sop_instance_uids(self) -> list[str]:
        """The SOP Instance UIDs of all instances."""
        return [instance.sop_instance_uid for instance in self.instances]

    @property
    def total_size(self) -> int:
        """The sum of the file sizes in bytes."""
        return sum(instance.size for instance in self.instances)

    @property
    def sop_class_uids(self) -> list[str]:
        """The distinct SOP Class UIDs of the instances (usually exactly one)."""
        return sorted({instance.sop_class_uid for instance in self.instances})


@dataclass(frozen=True, slots=True)
class RejectedFile:
    """A file of the batch that is not part of any series, and why.

    Attributes
    ----------
    path
        The file.
    reason
        A sentence for the user, e.g. ``"SeriesInstanceUID is missing"``.
    duplicate_of
        For a second copy of an instance already present in the batch: the path of the
        copy that was kept. Such a file is not broken, only redundant.
    """

    path: Path
    reason: str
    duplicate_of: Path | None = None


@dataclass(slots=True)
class HeaderScan:
    """The result of :func:`group_series`.

    Attributes
    ----------
    series
        One group per Series Instance UID, in the order the series were first seen.
    rejected
        Files that could not be used, each with its reason (duplicates included, with
        :attr:`RejectedFile.duplicate_of` set).
    """

    series: list[SeriesGroup] = field(default_factory=list)
    rejected: list[RejectedFile] = field(default_factory=list)

    @property
    def instance_count(self) -> int:
        """The number of grouped instances."""
        return sum(len(group.instances) for group in self.series)

    def to_json(self, base: Path) -> dict[str, Any]:
        """A JSON-able form with paths relative to ``base`` (see :meth:`from_json`).

        A batch whose manifest lacks the grouping facts (written by an older version) is
        scanned once and every later step reads this form: re-reading thousands of headers
        in each step cost seconds per step.
        """

        def rel(path: Path) -> str:
            return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)

        return {
            "version": _SCAN_FORMAT,
            "instances": [
                {**i.manifest_record(), "file": rel(i.path)}
                for g in self.series
                for i in g.instances
            ],
            "rejected": [
                {
                    "path": rel(r.path),
                    "reason": r.reason,
                    "duplicate_of": rel(r.duplicate_of) if r.duplicate_of else None,
                }
                for r in self.rejected
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: Path) -> HeaderScan:
        """Inverse of :meth:`to_json`; relative paths are resolved against ``base``.

        Raises
        ------
        ValueError
            When ``data`` is not in the format this version writes.
        """
        if data.get("version") != _SCAN_FORMAT:
            raise ValueError(f"unknown header scan format {data.get('version')!r}")
        scan = group_instances(Instance.from_manifest_record(r, base) for r in data["instances"])
        for r in data["rejected"]:
            duplicate = r.get("duplicate_of")
            scan.rejected.append(
                RejectedFile(base / r["path"], r["reason"], base / duplicate if duplicate else None)
            )
        return scan


def read_header(path: PathLike, *, specific_tags: Sequence[str] | None = None) -> Dataset:
    """Read the header of one DICOM file, never its pixel data.

    Parameters
    ----------
    path
        The file.
    specific_tags
        Read only these elements (keywords), e.g. :data:`HEADER_TAGS`.

    Returns
    -------
    pydicom.dataset.Dataset
        The dataset, file meta information included.

    Raises
    ------
    pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError
        When the file is not a readable DICOM file.
    """
    tags = list(specific_tags) if specific_tags is not None else None
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except InvalidDicomError:
        # Files written without the Part 10 preamble and meta header (old tools, some
        # test data) are still datasets; `force` reads them, and the UID checks below
        # reject anything that is not really DICOM.
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags, force=True)
        if len(ds) == 0:
            raise
        return ds


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip("\x00 ")
    return text or None


def _int_or_none(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        try:
            number = float(str(value))
        except ValueError:
            return None
        return int(number) if number.is_integer() else None


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def read_instance_info(path: PathLike) -> Instance:
    """Read what grouping needs from one file.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    Instance
        Its record (no hash: the file is not read beyond its header).

    Raises
    ------
    ValueError
        With a user-facing reason when the file cannot be used.
    """
    file_path = Path(path)
    try:
        size = file_path.stat().st_size
        ds = read_header(file_path, specific_tags=HEADER_TAGS)
    except FileNotFoundError as exc:
        raise ValueError("file not found") from exc
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a readable DICOM file: {exc}") from exc

    return instance_from_header(ds, file_path, size)


def instance_from_header(ds: Dataset, path: Path, size: int = 0) -> Instance:
    """The record of an instance whose header was read (a file's, or the PACS's metadata).

    Parameters
    ----------
    ds
        The header.
    path
        Where the instance is (for a PACS instance, any name that identifies it).
    size
        Its size in bytes, when known.

    Returns
    -------
    Instance
        Its record; the transfer syntax when the header has file meta information.

    Raises
    ------
    ValueError
        With a user-facing reason when a required UID is missing or malformed.
    """
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "SOPClassUID"):
        problem = uid_problem(ds.get(keyword), keyword)
        if problem is not None:
            raise ValueError(problem)

    rows, columns = ds.get("Rows"), ds.get("Columns")
    frames = _int_or_none(ds.get("NumberOfFrames")) or 1 if rows and columns else 0
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return Instance(
        path=path,
        sop_instance_uid=str(_text(ds, "SOPInstanceUID")),
        series_instance_uid=str(_text(ds, "SeriesInstanceUID")),
        study_instance_uid=str(_text(ds, "StudyInstanceUID")),
        sop_class_uid=str(_text(ds, "SOPClassUID")),
        transfer_syntax_uid=str(syntax or "").rstrip("\x00 "),
        modality=_text(ds, "Modality"),
        instance_number=_int_or_none(ds.get("InstanceNumber")),
        number_of_frames=max(frames, 0),
        image_position=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        image_orientation=_floats(ds.get("ImageOrientationPatient"), 6),  # type: ignore[arg-type]
        size=size,
    )


def group_series(paths: Iterable[PathLike]) -> HeaderScan:
    """Group files into series by Series Instance UID, reading headers only.

    Parameters
    ----------
    paths
        The files of a batch.

    Returns
    -------
    HeaderScan
        The series groups and the rejected files. Never raises for a bad file.

    Notes
    -----
    A second file with a SOP Instance UID already seen in the batch is a resend, not new
    data: it is listed in ``rejected`` with ``duplicate_of`` set and left out of the group
    so the instance is counted, validated and stored once. An instance whose Study
    Instance UID differs from the one its series was first seen with is rejected, since a
    series belongs to exactly one study (PS3.3 C.7.3).
    """
    scan = HeaderScan()

    def read(path: Path) -> Instance | RejectedFile:
        try:
            return read_instance_info(path)
        except ValueError as exc:
            return RejectedFile(path, str(exc))

    return group_instances((read(Path(p)) for p in paths), scan)


def group_instances(
    items: Iterable[Instance | RejectedFile], scan: HeaderScan | None = None
) -> HeaderScan:
    """Group instances whose headers were already read, by the rules of :func:`group_series`.

    Parameters
    ----------
    items
        Instances (from their headers, or the records of a manifest), or files already
        rejected.
    scan
        The scan to add to (a new one by default).

    Returns
    -------
    HeaderScan
        The series groups and the rejected files.
    """
    scan = scan if scan is not None else HeaderScan()
    groups: dict[str, SeriesGroup] = {}
    seen: dict[str, Path] = {}
    for item in items:
        if isinstance(item, RejectedFile):
            scan.rejected.append(item)
            continue
        instance = item
        series_uid, study_uid = instance.series_instance_uid, instance.study_instance_uid
        path = instance.path
        kept = seen.get(instance.sop_instance_uid)
        if kept is not None:
            scan.rejected.append(
                RejectedFile(
                    path,
                    f"duplicate of SOPInstanceUID {instance.sop_instance_uid} in {kept}",
                    duplicate_of=kept,
                )
            )
            continue
        group = groups.get(series_uid)
        if group is None:
            group = SeriesGroup(series_uid, study_uid, instance.modality, instance.sop_class_uid)
            groups[series_uid] = group
            scan.series.append(group)
        elif group.study_instance_uid != study_uid:
            scan.rejected.append(
                RejectedFile(
                    path,
                    f"StudyInstanceUID {study_uid} differs from {group.study_instance_uid} "
                    f"of the other instances of series {series_uid}",
                )
            )
            continue
        seen[instance.sop_instance_uid] = path
        group.instances.append(instance)
    return scan
