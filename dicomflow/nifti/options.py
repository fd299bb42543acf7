"""Options of a NIfTI import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dicomflow.nifti.enums import FourDPolicy, Modality, UnknownLabelPolicy

__all__ = ["DEFAULT_UID_PREFIX", "NiftiImportOptions"]

#: Root of generated UIDs when no organisation root is configured (pydicom's root).
DEFAULT_UID_PREFIX = "1.2.826.0.1.3680043.8.498."


@dataclass(frozen=True)
class NiftiImportOptions:
    """Switches of a NIfTI import.

    Parameters
    ----------
    default_modality : Modality
        Modality of a series whose modality is neither tagged (``0008|0060``)
        nor recognisable from an nnU-Net channel name.
    unknown_labels : UnknownLabelPolicy
        What to do with label values that are not described.
    four_d : FourDPolicy
        Split 4D volumes into one series per volume, or refuse them.
    include_test_set : bool
        Also convert nnU-Net ``imagesTs/`` cases.
    uid_namespace : str
        Mixed into every generated UID. Identical inputs converted with the
        same namespace get identical UIDs (re-runs are idempotent); use e.g.
        ``"project/dataset"`` to keep the same files imported into two
        places apart.
    uid_prefix : str
        Organisation root of generated UIDs, ending with ``"."``.
    study_datetime : datetime or None
        Study/series date and time written when the tags do not give them.
        ``None`` means the time the conversion starts (``dciodvfy`` warns
        about empty study dates, so something has to be written).
    manufacturer : str
        Manufacturer (0008,0070) of the written objects, i.e. this converter.
    orthogonality_tolerance : float
        Largest accepted absolute cosine between two voxel axes before an
        affine counts as sheared.
    grid_tolerance_mm : float
        Largest accepted difference (mm) between the affine of a label map
        and the affine of its image.
    """

    default_modality: Modality = Modality.MR
    unknown_labels: UnknownLabelPolicy = UnknownLabelPolicy.ERROR
    four_d: FourDPolicy = FourDPolicy.SPLIT
    include_test_set: bool = True
    uid_namespace: str = ""
    uid_prefix: str = DEFAULT_UID_PREFIX
    study_datetime: datetime | None = None
    manufacturer: str = "dicomflow"
    orthogonality_tolerance: float = 1e-4
    grid_tolerance_mm: float = 1e-3
