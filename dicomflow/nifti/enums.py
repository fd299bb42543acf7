"""Enumerated values used by the NIfTI import."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom.uid import UID

__all__ = [
    "CaseStatus",
    "FourDPolicy",
    "Layout",
    "Modality",
    "QuantisationMethod",
    "UnknownLabelPolicy",
]


class Layout(Enum):
    """How the NIfTI files of an import are organised."""

    BASIC = "basic"
    """Volumes in one folder with ``meta_data.json`` and optional segmentations."""

    NNUNET = "nnunet"
    """nnU-Net v2 raw dataset: ``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``imagesTs/``."""

    SINGLE_FILE = "single_file"
    """One ``.nii``/``.nii.gz`` file (side files are looked up in its folder)."""


class Modality(Enum):
    """Modality (0008,0060) values this converter can write, with their storage class."""

    CT = "CT"
    MR = "MR"

    @property
    def sop_class_uid(self) -> UID:
        """Image storage SOP class used for this modality."""
        from pydicom.uid import CTImageStorage, MRImageStorage

        return CTImageStorage if self is Modality.CT else MRImageStorage


class UnknownLabelPolicy(Enum):
    """What to do with label values that the label description does not list."""

    ERROR = "error"
    """Refuse the segmentation (:class:`~dicomflow.nifti.errors.UnknownLabelError`)."""

    SEGMENT = "segment"
    """Give each unlisted value its own segment labelled ``unknown (label N)``."""


class FourDPolicy(Enum):
    """What to do with 4D volumes."""

    SPLIT = "split"
    """One image series per volume along the fourth axis."""

    REFUSE = "refuse"
    """Refuse (:class:`~dicomflow.nifti.errors.FourDimensionalVolumeError`)."""


class QuantisationMethod(Enum):
    """How voxel values were mapped to stored 16-bit pixel values."""

    LOSSLESS = "lossless"
    """Integer values stored as they are (slope 1; the intercept may shift the range)."""

    NIFTI_SCALING = "nifti_scaling"
    """The file's integer voxels stored with its own ``scl_slope``/``scl_inter``."""

    LINEAR = "linear"
    """Values linearly quantised to 16 bits; see ``max_abs_error``."""


class CaseStatus(Enum):
    """Outcome of converting one case."""

    OK = "ok"
    FAILED = "failed"
