"""NIfTI to DICOM conversion: image series (CT/MR Image Storage) and SEG.

Plain library code, called by the import DAG, the ``dicomflow import-nifti``
command and tests::

    from dicomflow.nifti import NiftiImportOptions, convert_folder

    report = convert_folder(src, out_dir, options=NiftiImportOptions())
    for case in report.failed:
        print(case.case_id, case.reason)

Layouts: a folder of volumes with ``meta_data.json`` and optional
segmentations plus ``seg_info.json`` (basic), or an nnU-Net v2 raw dataset.
"""

from dicomflow.nifti.convert import convert_case, convert_folder
from dicomflow.nifti.enums import (
    CaseStatus,
    FourDPolicy,
    Layout,
    Modality,
    QuantisationMethod,
    UnknownLabelPolicy,
)
from dicomflow.nifti.errors import (
    FourDimensionalVolumeError,
    GridMismatchError,
    LabelMapError,
    LayoutError,
    MalformedJsonError,
    MetadataError,
    MissingFileError,
    NiftiImportError,
    SegInfoError,
    ShearedAffineError,
    TagKeyError,
    TagValueError,
    UnknownLabelError,
    UnsupportedModalityError,
    VolumeError,
)
from dicomflow.nifti.geometry import SliceGeometry, reorient_to, slice_geometry
from dicomflow.nifti.labels import LabelDescription, SegInfo, load_seg_info
from dicomflow.nifti.layout import CaseSpec, ImportPlan, detect_layout, plan_import
from dicomflow.nifti.options import NiftiImportOptions
from dicomflow.nifti.pixels import Quantisation
from dicomflow.nifti.report import CaseResult, ConversionReport
from dicomflow.nifti.seg import Segment, SegmentationResult, labelmap_to_seg, seg_to_labelmap
from dicomflow.nifti.series import ImageSeries, SeriesIdentity, volume_to_series
from dicomflow.nifti.tags import MetaData, load_meta_data

__all__ = [
    "CaseResult",
    "CaseSpec",
    "CaseStatus",
    "ConversionReport",
    "FourDPolicy",
    "FourDimensionalVolumeError",
    "GridMismatchError",
    "ImageSeries",
    "ImportPlan",
    "LabelDescription",
    "LabelMapError",
    "Layout",
    "LayoutError",
    "MalformedJsonError",
    "MetaData",
    "MetadataError",
    "MissingFileError",
    "Modality",
    "NiftiImportError",
    "NiftiImportOptions",
    "Quantisation",
    "QuantisationMethod",
    "SegInfo",
    "SegInfoError",
    "Segment",
    "SegmentationResult",
    "SeriesIdentity",
    "ShearedAffineError",
    "SliceGeometry",
    "TagKeyError",
    "TagValueError",
    "UnknownLabelError",
    "UnknownLabelPolicy",
    "UnsupportedModalityError",
    "VolumeError",
    "convert_case",
    "convert_folder",
    "detect_layout",
    "labelmap_to_seg",
    "load_meta_data",
    "load_seg_info",
    "plan_import",
    "reorient_to",
    "seg_to_labelmap",
    "slice_geometry",
    "volume_to_series",
]
