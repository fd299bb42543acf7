"""Exceptions raised while converting NIfTI to DICOM.

Every error names where the problem is (file, JSON key, line) so that a user
can fix the input without reading the converter's code. All of them derive
from :class:`NiftiImportError`, so callers that only want "this input is bad"
can catch a single class.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "FourDimensionalVolumeError",
    "GridMismatchError",
    "LabelMapError",
    "LayoutError",
    "MalformedJsonError",
    "MetadataError",
    "MissingFileError",
    "NiftiImportError",
    "SegInfoError",
    "ShearedAffineError",
    "TagKeyError",
    "TagValueError",
    "UnknownLabelError",
    "UnsupportedModalityError",
    "VolumeError",
]


class NiftiImportError(Exception):
    """Base class of every error about the input of a NIfTI import.

    Parameters
    ----------
    message : str
        What is wrong, in words a user understands.
    path : pathlib.Path or None, optional
        File (or folder) the problem was found in.
    key : str or None, optional
        JSON key or tag key involved.
    line : int or None, optional
        1-based line of ``path`` where the problem is, when known.

    Attributes
    ----------
    reason : str
        ``message`` without the location prefix.
    path, key, line
        As given.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.reason = message
        self.path = path
        self.key = key
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where: list[str] = []
        if self.path is not None:
            where.append(str(self.path))
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


class LayoutError(NiftiImportError):
    """The folder is not a layout we can convert (or is missing a required part)."""


class MissingFileError(LayoutError):
    """A file the layout requires (e.g. nnU-Net ``dataset.json``) does not exist."""


class MetadataError(NiftiImportError):
    """A JSON side file (``meta_data.json``, ``seg_info.json``, ``dataset.json``) is invalid."""


class MalformedJsonError(MetadataError):
    """A JSON side file cannot be parsed or has the wrong structure."""


class TagKeyError(MetadataError):
    """A tag key is not ``GGGG|EEEE``, unknown to the DICOM dictionary, or reserved."""


class TagValueError(MetadataError):
    """A tag value does not fit the value representation (VR) of its tag."""


class SegInfoError(MetadataError):
    """``seg_info.json`` (or nnU-Net ``labels``) does not describe the labels usably."""


class UnsupportedModalityError(NiftiImportError):
    """The requested modality has no image IOD this converter writes."""


class VolumeError(NiftiImportError):
    """A NIfTI volume cannot be represented as a DICOM image series."""


class ShearedAffineError(VolumeError):
    """The voxel axes are not orthogonal; DICOM cannot express a sheared grid."""


class FourDimensionalVolumeError(VolumeError):
    """A 4D volume was given while splitting 4D volumes was switched off."""


class LabelMapError(NiftiImportError):
    """A label map cannot be turned into a segmentation of its image."""


class GridMismatchError(LabelMapError):
    """The label map's voxel grid (shape or affine) differs from its image's."""


class UnknownLabelError(LabelMapError):
    """The label map holds values that the label description does not list."""
