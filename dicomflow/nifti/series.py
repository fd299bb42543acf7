"""Writing one 3D volume as a CT or MR Image Storage series (one file per slice)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import format_number_as_ds

from dicomflow.nifti.enums import Modality
from dicomflow.nifti.geometry import SliceGeometry, slice_geometry
from dicomflow.nifti.options import DEFAULT_UID_PREFIX
from dicomflow.nifti.pixels import Quantisation, encode_volume
from dicomflow.nifti.tags import TagValue, apply_tags
from dicomflow.nifti.uids import derive_uid
from dicomflow.nifti.writer import SharedHeaderWriter

__all__ = ["ImageSeries", "SeriesIdentity", "volume_to_series"]

PIXEL_DATA = Tag(0x7FE0, 0x0010)


@dataclass(frozen=True)
class SeriesIdentity:
    """Who and what a written series belongs to.

    Attributes
    ----------
    patient_id, patient_name : str
        Patient ID (0010,0020) and Patient's Name (0010,0010).
    study_id : str
        Study ID (0020,0010), at most 16 characters.
    study_uid : str
        Study Instance UID; a case's image series and its SEG share it.
    series_uid : str
        Series Instance UID of this series.
    frame_of_reference_uid : str
        Frame of Reference UID; series on the same grid share it.
    series_number : int
        Series Number (0020,0011).
    series_description : str
        Series Description (0008,103E).
    study_datetime : datetime
        Study, series and content date/time.
    """

    patient_id: str
    patient_name: str
    study_id: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    series_number: int
    series_description: str
    study_datetime: datetime


@dataclass(frozen=True)
class ImageSeries:
    """A written image series.

    Attributes
    ----------
    series_uid, study_uid : str
        Its Series and Study Instance UIDs.
    modality : Modality
        CT or MR.
    files : tuple of pathlib.Path
        One file per slice, in ascending position along the slice normal.
    quantisation : Quantisation
        How voxel values were stored.
    geometry : SliceGeometry
        Orientation, spacing and positions of the slices.
    grid_shape : tuple of int
        ``(ni, nj, nk)`` of the source volume.
    affine : numpy.ndarray
        RAS+ affine of the source volume.
    headers : tuple of pydicom.dataset.Dataset
        The written datasets without Pixel Data, in file order (what a SEG
        needs to reference them).
    source : pathlib.Path or None
        The NIfTI file, if any.
    volume_index : int or None
        Index along the fourth axis for a split 4D volume.
    """

    series_uid: str
    study_uid: str
    modality: Modality
    files: tuple[Path, ...]
    quantisation: Quantisation
    geometry: SliceGeometry
    grid_shape: tuple[int, int, int]
    affine: npt.NDArray[np.float64]
    headers: tuple[Dataset, ...]
    source: Path | None = None
    volume_index: int | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain-type summary for reports (no datasets, no arrays)."""
        return {
            "series_uid": self.series_uid,
            "study_uid": self.study_uid,
            "modality": self.modality.value,
            "n_files": len(self.files),
            "directory": str(self.files[0].parent) if self.files else None,
            "source": str(self.source) if self.source else None,
            "volume_index": self.volume_index,
            "quantisation": self.quantisation.to_dict(),
        }


@cache
def software_version() -> str:
    """``dicomflow <version>`` for Software Versions (0018,1020)."""
    try:
        return f"dicomflow {metadata.version('dicomflow')}"
    except metadata.PackageNotFoundError:
        return "dicomflow"


def _ds(value: float) -> str:
    text = format_number_as_ds(float(value))
    return "0.0" if float(text) == 0.0 else text


def _base_dataset(
    modality: Modality,
    identity: SeriesIdentity,
    geometry: SliceGeometry,
    quantisation: Quantisation,
    tags: Mapping[BaseTag, TagValue],
    manufacturer: str,
) -> Dataset:
    """Attributes shared by every slice: user tags first, then ours on top."""
    ds = Dataset()
    apply_tags(ds, tags)
    # Type 2 attributes: present, empty unless the user gave a value.
    for keyword in (
        "AccessionNumber",
        "ReferringPhysicianName",
        "PatientBirthDate",
        "PatientSex",
        "PositionReferenceIndicator",
        "PatientOrientation",
        "PatientPosition",
    ):
        if keyword not in ds:
            setattr(ds, keyword, "")
    if "Laterality" not in ds and "ImageLaterality" not in ds:
        # Unknown: empty is the honest value (dciodvfy warns about that, and
        # errors when it is absent without a Body Part Examined).
        ds.Laterality = ""
    if "Manufacturer" not in ds:
        ds.Manufacturer = manufacturer
    when = identity.study_datetime
    for prefix in ("Study", "Series", "Content"):
        if f"{prefix}Date" not in ds:
            setattr(ds, f"{prefix}Date", when.strftime("%Y%m%d"))
        if f"{prefix}Time" not in ds:
            setattr(ds, f"{prefix}Time", when.strftime("%H%M%S"))
    if "ImageType" not in ds:
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality is Modality.CT else "OTHER"]
    if "SoftwareVersions" not in ds:
        ds.SoftwareVersions = software_version()

    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = modality.sop_class_uid
    ds.Modality = modality.value
    ds.PatientID = identity.patient_id
    ds.PatientName = identity.patient_name
    ds.StudyID = identity.study_id
    ds.StudyInstanceUID = identity.study_uid
    ds.SeriesInstanceUID = identity.series_uid
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.SeriesNumber = identity.series_number
    ds.SeriesDescription = identity.series_description

    ds.ImageOrientationPatient = [_ds(v) for v in geometry.orientation]
    ds.PixelSpacing = [_ds(v) for v in geometry.pixel_spacing]
    ds.SliceThickness = _ds(geometry.slice_spacing)
    if modality is Modality.MR:
        ds.SpacingBetweenSlices = _ds(geometry.slice_spacing)

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = geometry.rows
    ds.Columns = geometry.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if quantisation.signed else 0
    # CT requires rescale. The MR Image IOD has no Modality LUT, but without it a
    # quantised float volume would lose its values, so it is written when needed
    # (dciodvfy then warns that the SOP class is "standard extended").
    if modality is Modality.CT or not quantisation.is_identity:
        ds.RescaleIntercept = quantisation.intercept
        ds.RescaleSlope = quantisation.slope
    if "WindowCenter" not in ds and "WindowWidth" not in ds:
        low, high = quantisation.value_range
        ds.WindowCenter = _ds((low + high) / 2.0)
        ds.WindowWidth = _ds(max(high - low, 1.0))

    if modality is Modality.CT:
        for keyword in ("KVP", "AcquisitionNumber"):
            if keyword not in ds:
                setattr(ds, keyword, "")
    else:
        defaults: dict[str, object] = {
            # Type 1 with no way to know: "RM" (research mode) / "NONE" are the honest values.
            "ScanningSequence": "RM",
            "SequenceVariant": "NONE",
            "ScanOptions": "",
            "MRAcquisitionType": "",
            "RepetitionTime": "",
            "EchoTime": "",
            "EchoTrainLength": "",
        }
        for keyword, value in defaults.items():
            if keyword not in ds:
                setattr(ds, keyword, value)
    return ds


def volume_to_series(
    volume: npt.NDArray[np.generic],
    affine: npt.ArrayLike,
    out_dir: Path,
    *,
    modality: Modality,
    identity: SeriesIdentity,
    tags: Mapping[BaseTag, TagValue] | None = None,
    nifti_scaling: tuple[float, float] | None = None,
    uid_prefix: str = DEFAULT_UID_PREFIX,
    manufacturer: str = "dicomflow",
    orthogonality_tolerance: float = 1e-4,
    source: Path | None = None,
    volume_index: int | None = None,
) -> ImageSeries:
    """Write a 3D volume as a single-frame CT or MR image series.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(ni, nj, nk)`` voxels in NIfTI order (raw values if ``nifti_scaling``).
    affine : array_like
        NIfTI RAS+ voxel-to-world affine.
    out_dir : pathlib.Path
        Directory for the slice files (created; existing files of the same
        names are overwritten).
    modality : Modality
        Chooses CT Image or MR Image Storage.
    identity : SeriesIdentity
        Patient, study, series and frame-of-reference identity.
    tags : mapping or None, optional
        Validated user attributes (see :mod:`dicomflow.nifti.tags`); identity
        and geometry attributes win over them.
    nifti_scaling : tuple of float or None, optional
        Header ``(scl_slope, scl_inter)`` when ``volume`` holds raw values.
    uid_prefix : str, optional
        Root for the SOP Instance UIDs (derived from the series UID).
    manufacturer : str, optional
        Manufacturer written when the tags do not give one.
    orthogonality_tolerance : float, optional
        See :func:`dicomflow.nifti.geometry.slice_geometry`.
    source : pathlib.Path or None, optional
        NIfTI file, for messages and the result.
    volume_index : int or None, optional
        Index of this volume in a split 4D file, for the result.

    Returns
    -------
    ImageSeries
        Files, UIDs, geometry and quantisation of the written series.

    Raises
    ------
    VolumeError, ShearedAffineError
        If the volume cannot be stored or its grid cannot be expressed.
    """
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D, got shape {volume.shape}")
    shape = (int(volume.shape[0]), int(volume.shape[1]), int(volume.shape[2]))
    affine_arr = np.asarray(affine, dtype=np.float64)
    geometry = slice_geometry(affine_arr, shape, tolerance=orthogonality_tolerance, path=source)
    encoded = encode_volume(volume, nifti_scaling=nifti_scaling, path=source)
    base = _base_dataset(
        modality, identity, geometry, encoded.quantisation, tags or {}, manufacturer
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    locations = geometry.slice_locations()
    writer = SharedHeaderWriter(base)
    files: list[Path] = []
    headers: list[Dataset] = []
    for number, k in enumerate(geometry.slice_order, start=1):
        own = Dataset()
        sop_uid = derive_uid(uid_prefix, identity.series_uid, "instance", str(k))
        own.SOPInstanceUID = sop_uid
        own.InstanceNumber = number
        own.ImagePositionPatient = [_ds(v) for v in geometry.positions[number - 1]]
        own.SliceLocation = _ds(locations[number - 1])
        header = Dataset()
        # Shares the (never modified) elements of `base` and `own`.
        header.update(base)
        header.update(own)
        headers.append(header)
        # Frame rows run along j and columns along i: the transpose of the k slice.
        own.add_new(PIXEL_DATA, "OW", np.ascontiguousarray(encoded.pixels[:, :, k].T).tobytes())
        path = out_dir / f"{number:05d}.dcm"
        writer.write(path, base.SOPClassUID, sop_uid, own)
        files.append(path)
    return ImageSeries(
        series_uid=identity.series_uid,
        study_uid=identity.study_uid,
        modality=modality,
        files=tuple(files),
        quantisation=encoded.quantisation,
        geometry=geometry,
        grid_shape=shape,
        affine=affine_arr,
        headers=tuple(headers),
        source=source,
        volume_index=volume_index,
    )
