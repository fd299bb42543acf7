"""Synthetic series documents with realistic tag sets, for the index benchmark and tests.

Deterministic for a seed: about 60 fields per document (Kaapana field names), several
modalities, projects and datasets, study dates spread over years.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

MODALITIES = ("CT", "MR", "PT", "CR", "US", "SEG", "RTSTRUCT", "DX", "MG", "NM")
MODALITY_WEIGHTS = (30, 25, 6, 10, 6, 8, 3, 6, 4, 2)
BODY_PARTS = ("CHEST", "HEAD", "ABDOMEN", "PELVIS", "KNEE", "BREAST", "NECK", "SPINE", "LIVER")
PROJECTS = ("lung-study", "brain-mri", "onco-pet", "knee-ai", "teaching")
DESCRIPTIONS = (
    "Thorax contrast",
    "T1 AX post gad",
    "T2 FLAIR sag",
    "Abdomen venous",
    "Knee PD fat sat",
    "Whole body PET",
    "Lung nodule follow-up",
    "Head without contrast",
    "Spine T2 sag",
    "Liver segmentation",
    "Chest PA lateral",
    "Breast tomosynthesis",
    "Pelvis DWI b800",
)
FAMILY = ("Doe", "Smith", "Muller", "Rossi", "Garcia", "Nowak", "Tanaka", "Okafor", "Larsen")
GIVEN = ("John", "Jane", "Anna", "Luca", "Maria", "Piotr", "Yuki", "Chidi", "Freja", "Max")
SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
    "RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "NM": "1.2.840.10008.5.1.4.1.1.20",
}
EPOCH = date(2012, 1, 1)
DAYS = 365 * 12


def patient_name(i: int) -> str:
    """DICOM PN of patient ``i``."""
    return f"{FAMILY[i % len(FAMILY)]}^{GIVEN[(i // len(FAMILY)) % len(GIVEN)]}{i}".upper()


def make_document(i: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """Series ``i``: returns ``(project, document)``."""
    modality = rng.choices(MODALITIES, MODALITY_WEIGHTS)[0]
    project = PROJECTS[rng.randrange(len(PROJECTS))]
    dataset = f"{project[:6]}-ds{rng.randrange(8)}"
    patient = rng.randrange(max(1, i // 6 + 1))
    study = i // 3
    study_date = EPOCH + timedelta(days=rng.randrange(DAYS))
    received = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(60_000_000))
    root = "1.2.826.0.1.3680043.8.498"
    errors = rng.choice((0, 0, 0, 0, 1, 3))
    doc: dict[str, Any] = {
        "00100020 PatientID_keyword": f"PID{patient:07d}",
        "00100010 PatientName_keyword": patient_name(patient),
        "00100030 PatientBirthDate_date": (
            EPOCH - timedelta(days=rng.randrange(30000))
        ).isoformat(),
        "00100040 PatientSex_keyword": rng.choice(("F", "M", "O")),
        "00101010 PatientAge_keyword": f"{rng.randrange(1, 95):03d}Y",
        "00101020 PatientSize_float": round(rng.uniform(1.4, 2.0), 2),
        "00101030 PatientWeight_float": round(rng.uniform(40, 120), 1),
        "00080060 Modality_keyword": modality,
        "00180015 BodyPartExamined_keyword": rng.choice(BODY_PARTS),
        "00080020 StudyDate_date": study_date.isoformat(),
        "00080030 StudyTime_time": f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:00",
        "00080021 SeriesDate_date": study_date.isoformat(),
        "00080031 SeriesTime_time": f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:30",
        "00080022 AcquisitionDate_date": study_date.isoformat(),
        "00080023 ContentDate_date": study_date.isoformat(),
        "0008103E SeriesDescription_keyword": rng.choice(DESCRIPTIONS),
        "00081030 StudyDescription_keyword": f"{modality} {rng.choice(BODY_PARTS).title()}",
        "00080016 SOPClassUID_keyword": SOP_CLASSES[modality],
        "0020000D StudyInstanceUID_keyword": f"{root}.1.{study}",
        "0020000E SeriesInstanceUID_keyword": f"{root}.2.{i}",
        "00080018 SOPInstanceUID_keyword": f"{root}.3.{i}.1",
        "00080050 AccessionNumber_keyword": f"ACC{study:08d}",
        "00200010 StudyID_keyword": str(study % 10000),
        "00200011 SeriesNumber_integer": rng.randrange(1, 30),
        "00200013 InstanceNumber_integer": 1,
        "00080070 Manufacturer_keyword": rng.choice(("SIEMENS", "GE MEDICAL SYSTEMS", "Philips")),
        "00081090 ManufacturerModelName_keyword": rng.choice(("Aera", "Revolution", "Ingenia")),
        "00080080 InstitutionName_keyword": rng.choice(("University Hospital", "City Clinic")),
        "00081010 StationName_keyword": f"STATION{rng.randrange(20)}",
        "00081040 InstitutionalDepartmentName_keyword": "Radiology",
        "00080090 ReferringPhysicianName_keyword": f"DR^{rng.choice(FAMILY).upper()}",
        "00181030 ProtocolName_keyword": rng.choice(DESCRIPTIONS),
        "00180050 SliceThickness_float": rng.choice((0.625, 1.0, 1.25, 3.0, 5.0)),
        "00180088 SpacingBetweenSlices_float": rng.choice((0.625, 1.0, 3.0)),
        "00280010 Rows_integer": rng.choice((256, 512, 1024)),
        "00280011 Columns_integer": rng.choice((256, 512, 1024)),
        "00280030 PixelSpacing_float": [0.7, 0.7],
        "00280100 BitsAllocated_integer": 16,
        "00280101 BitsStored_integer": 12,
        "00280102 HighBit_integer": 11,
        "00280103 PixelRepresentation_integer": 0,
        "00280004 PhotometricInterpretation_keyword": "MONOCHROME2",
        "00281050 WindowCenter_float": 40.0,
        "00281051 WindowWidth_float": 400.0,
        "00281052 RescaleIntercept_float": -1024.0,
        "00281053 RescaleSlope_float": 1.0,
        "00080008 ImageType_keyword": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "00200037 ImageOrientationPatient_float": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        "00200052 FrameOfReferenceUID_keyword": f"{root}.4.{study}",
        "00180060 KVP_float": rng.choice((100.0, 120.0, 140.0)),
        "00180087 MagneticFieldStrength_float": rng.choice((1.5, 3.0)),
        "00020010 TransferSyntaxUID_keyword": "1.2.840.10008.1.2.1",
        "00080005 SpecificCharacterSet_keyword": "ISO_IR 100",
        "00400275 RequestAttributesSequence_object": {
            "00401001 RequestedProcedureID_keyword": f"RP{study}",
        },
        "project": [project],
        "dataset": [dataset],
        "instance_count": rng.randrange(1, 600),
        "batch_count": 1,
        "last_batch_id": f"batch-{i // 50:06d}",
        "calling_ae": dataset.upper()[:16],
        "called_ae": project.upper()[:16],
        "received_at": received.isoformat(),
        "thumbnail_key": f"thumbnails/{root}.2.{i}.png",
        "validation": {
            "errors": errors,
            "warnings": rng.choice((0, 1, 2, 5)),
            "checked_at": received.isoformat(),
            "report_key": f"validation/{root}.2.{i}.html",
        },
    }
    return project, doc
