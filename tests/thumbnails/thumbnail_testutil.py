"""Helpers for the thumbnail tests: real pydicom files and series derived from them."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.dicomfiles import pydicom_file

#: Geometry of the synthetic CT series: non-square pixels, so a swapped PixelSpacing
#: would put contours in the wrong place.
ROW_SPACING = 0.5
COLUMN_SPACING = 0.8
ORIGIN = (-50.0, -40.0, 0.0)
SLICE_GAP = 2.5


def png_array(png: bytes | None) -> NDArray[np.uint8]:
    """Decode a PNG into an RGB array."""
    assert png is not None
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def coloured(pixels: NDArray[np.uint8], threshold: int = 60) -> NDArray[np.bool_]:
    """Pixels that are clearly not gray (a grayscale render has R == G == B)."""
    channels = pixels.astype(np.int16)
    spread = channels.max(axis=2) - channels.min(axis=2)
    return spread > threshold


def slice_z(index: int) -> float:
    return ORIGIN[2] + SLICE_GAP * index


def patient_point(row: float, column: float, index: int) -> tuple[float, float, float]:
    """Patient coordinates of pixel (row, column) of slice ``index`` (axial, identity)."""
    return (ORIGIN[0] + column * COLUMN_SPACING, ORIGIN[1] + row * ROW_SPACING, slice_z(index))


def write_ct_series(folder: Path, count: int = 5) -> list[Dataset]:
    """``count`` axial 128x128 CT slices made from CT_small.dcm, saved into ``folder``."""
    source = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    series_uid, frame_uid = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    datasets: list[Dataset] = []
    for index in range(count):
        ds = copy.deepcopy(source)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = index + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = list(patient_point(0, 0, index))
        ds.PixelSpacing = [ROW_SPACING, COLUMN_SPACING]
        ds.SliceThickness = SLICE_GAP
        ds.filename = str(folder / f"{index + 1}.dcm")
        ds.save_as(ds.filename, enforce_file_format=True)
        datasets.append(ds)
    return datasets


def write_rtstruct(
    path: Path,
    ct: list[Dataset],
    contours: list[tuple[list[tuple[float, float, float]], str | None]],
) -> Path:
    """Write a minimal RT Structure Set with one ROI per contour.

    ``contours`` holds (points in patient coordinates, referenced SOP Instance UID or
    ``None`` to leave the Contour Image Sequence out). ROI colours are red, then green.
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StudyInstanceUID = ct[0].StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = ct[0].PatientID
    ds.StructureSetLabel = "test"
    rois, observations = [], []
    colours = ([255, 0, 0], [0, 255, 0])
    for number, (points, uid) in enumerate(contours, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = f"roi {number}"
        rois.append(roi)
        contour = Dataset()
        contour.ContourGeometricType = "CLOSED_PLANAR"
        contour.NumberOfContourPoints = len(points)
        contour.ContourData = [f"{v:.4f}" for point in points for v in point]
        if uid is not None:
            image = Dataset()
            image.ReferencedSOPClassUID = ct[0].SOPClassUID
            image.ReferencedSOPInstanceUID = uid
            contour.ContourImageSequence = Sequence([image])
        observation = Dataset()
        observation.ReferencedROINumber = number
        observation.ROIDisplayColor = colours[(number - 1) % 2]
        observation.ContourSequence = Sequence([contour])
        observations.append(observation)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(observations)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_seg(path: Path, ct: list[Dataset], labels: NDArray[np.uint8]) -> Path:
    """Write a BINARY SEG (highdicom) over ``ct``; ``labels[i]`` holds segment numbers."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"segment {number}",
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for number in range(1, int(labels.max()) + 1)
    ]
    seg = hd.seg.Segmentation(
        source_images=ct,
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="dicomflow tests",
        manufacturer_model_name="tests",
        software_versions="0",
        device_serial_number="0",
    )
    seg.save_as(path)
    return path
