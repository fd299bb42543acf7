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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The names below are loaded on first use (PEP 562): importing the package for its enums or
# options (the CLI, DAG files) must not load nibabel, highdicom and numpy.
if TYPE_CHECKING:
    from dicomflow.nifti.convert import (
        convert_case,
        convert_folder,
    )
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
    from dicomflow.nifti.geometry import (
        SliceGeometry,
        reorient_to,
        slice_geometry,
    )
    from dicomflow.nifti.labels import (
        LabelDescription,
        SegInfo,
        load_seg_info,
    )
    from dicomflow.nifti.layout import (
        CaseSpec,
        ImportPlan,
        detect_layout,
        plan_import,
    )
    from dicomflow.nifti.options import (
        NiftiImportOptions,
    )
    from dicomflow.nifti.pixels import (
        Quantisation,
    )
    from dicomflow.nifti.report import (
        CaseResult,
        ConversionReport,
    )
    from dicomflow.nifti.seg import (
        Segment,
        SegmentationResult,
        labelmap_to_seg,
        seg_to_labelmap,
    )
    from dicomflow.nifti.series import (
        ImageSeries,
        SeriesIdentity,
        volume_to_series,
    )
    from dicomflow.nifti.tags import (
        MetaData,
        load_meta_data,
    )

_SOURCES: dict[str, str] = {
    "CaseResult": "dicomflow.nifti.report",
    "CaseSpec": "dicomflow.nifti.layout",
    "CaseStatus": "dicomflow.nifti.enums",
    "ConversionReport": "dicomflow.nifti.report",
    "FourDPolicy": "dicomflow.nifti.enums",
    "FourDimensionalVolumeError": "dicomflow.nifti.errors",
    "GridMismatchError": "dicomflow.nifti.errors",
    "ImageSeries": "dicomflow.nifti.series",
    "ImportPlan": "dicomflow.nifti.layout",
    "LabelDescription": "dicomflow.nifti.labels",
    "LabelMapError": "dicomflow.nifti.errors",
    "Layout": "dicomflow.nifti.enums",
    "LayoutError": "dicomflow.nifti.errors",
    "MalformedJsonError": "dicomflow.nifti.errors",
    "MetaData": "dicomflow.nifti.tags",
    "MetadataError": "dicomflow.nifti.errors",
    "MissingFileError": "dicomflow.nifti.errors",
    "Modality": "dicomflow.nifti.enums",
    "NiftiImportError": "dicomflow.nifti.errors",
    "NiftiImportOptions": "dicomflow.nifti.options",
    "Quantisation": "dicomflow.nifti.pixels",
    "QuantisationMethod": "dicomflow.nifti.enums",
    "SegInfo": "dicomflow.nifti.labels",
    "SegInfoError": "dicomflow.nifti.errors",
    "Segment": "dicomflow.nifti.seg",
    "SegmentationResult": "dicomflow.nifti.seg",
    "SeriesIdentity": "dicomflow.nifti.series",
    "ShearedAffineError": "dicomflow.nifti.errors",
    "SliceGeometry": "dicomflow.nifti.geometry",
    "TagKeyError": "dicomflow.nifti.errors",
    "TagValueError": "dicomflow.nifti.errors",
    "UnknownLabelError": "dicomflow.nifti.errors",
    "UnknownLabelPolicy": "dicomflow.nifti.enums",
    "UnsupportedModalityError": "dicomflow.nifti.errors",
    "VolumeError": "dicomflow.nifti.errors",
    "convert_case": "dicomflow.nifti.convert",
    "convert_folder": "dicomflow.nifti.convert",
    "detect_layout": "dicomflow.nifti.layout",
    "labelmap_to_seg": "dicomflow.nifti.seg",
    "load_meta_data": "dicomflow.nifti.tags",
    "load_seg_info": "dicomflow.nifti.labels",
    "plan_import": "dicomflow.nifti.layout",
    "reorient_to": "dicomflow.nifti.geometry",
    "seg_to_labelmap": "dicomflow.nifti.seg",
    "slice_geometry": "dicomflow.nifti.geometry",
    "volume_to_series": "dicomflow.nifti.series",
}

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


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value
