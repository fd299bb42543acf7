"""A radiotherapy set made from pydicom's files: CT <- RTSTRUCT <- RTPLAN <- RTDOSE.

pydicom's rtstruct.dcm, rtplan.dcm and rtdose.dcm come from different patients and refer to
objects that are not there; here they get one patient, one study and references to each other
(the structure set to the CT's frame of reference, series and images; the plan to the
structure set; the dose to the plan), with fresh UIDs so tests sharing one PACS stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.dicomfiles import pydicom_file, write_ct_series


@dataclass(frozen=True)
class RtSet:
    """The files and Series Instance UIDs of one set."""

    folder: Path
    patient_id: str
    study_uid: str
    ct: str
    rtstruct: str
    rtplan: str
    rtdose: str
    files: list[Path]


def _subject(ds: Dataset, patient_id: str, study_uid: str, sex: str) -> None:
    ds.PatientID = patient_id
    ds.PatientName = f"RT^{patient_id}"
    ds.PatientSex = sex
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = "20240105"


def _save(ds: Dataset, path: Path) -> Path:
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def rt_set(folder: Path, *, sex: str = "M", dose_sex: str | None = None) -> RtSet:
    """Write a consistent CT (3 images) + RTSTRUCT + RTPLAN + RTDOSE set into ``folder``.

    ``dose_sex`` gives the dose another Patient's Sex (a subject mismatch to catch).
    """
    folder.mkdir(parents=True, exist_ok=True)
    patient_id, study_uid, frame = f"RT-{generate_uid()[-8:]}", generate_uid(), generate_uid()

    def ct_edit(ds: Dataset, number: int) -> None:
        _subject(ds, patient_id, study_uid, sex)
        ds.FrameOfReferenceUID = frame
        ds.SeriesDescription = "planning CT"

    ct_files = write_ct_series(folder / "ct", [1, 2, 3], study_uid=study_uid, edit=ct_edit)
    cts = [pydicom.dcmread(p, stop_before_pixels=True) for p in ct_files]
    ct_series = str(cts[0].SeriesInstanceUID)

    struct = pydicom.dcmread(pydicom_file("rtstruct.dcm"), force=True)
    _subject(struct, patient_id, study_uid, sex)
    ref_frame = struct.ReferencedFrameOfReferenceSequence[0]
    ref_frame.FrameOfReferenceUID = frame
    ref_study = ref_frame.RTReferencedStudySequence[0]
    ref_series = ref_study.RTReferencedSeriesSequence[0]
    ref_series.SeriesInstanceUID = ct_series
    images = []
    for ct in cts:
        item = Dataset()
        item.ReferencedSOPClassUID = ct.SOPClassUID
        item.ReferencedSOPInstanceUID = ct.SOPInstanceUID
        images.append(item)
    ref_series.ContourImageSequence = Sequence(images)
    for roi in struct.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = frame
    struct.SeriesDescription = "structures"
    _save(struct, folder / "rtstruct.dcm")

    plan = pydicom.dcmread(pydicom_file("rtplan.dcm"))
    _subject(plan, patient_id, study_uid, sex)
    plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID = struct.SOPInstanceUID
    del plan.ReferencedRTPlanSequence
    plan.FrameOfReferenceUID = frame
    plan.SeriesDescription = "plan"
    _save(plan, folder / "rtplan.dcm")

    dose = pydicom.dcmread(pydicom_file("rtdose.dcm"))
    _subject(dose, patient_id, study_uid, dose_sex or sex)
    dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID = plan.SOPInstanceUID
    dose.FrameOfReferenceUID = frame
    dose.SeriesDescription = "dose"
    _save(dose, folder / "rtdose.dcm")

    return RtSet(
        folder,
        patient_id,
        study_uid,
        ct_series,
        str(struct.SeriesInstanceUID),
        str(plan.SeriesInstanceUID),
        str(dose.SeriesInstanceUID),
        [*ct_files, folder / "rtstruct.dcm", folder / "rtplan.dcm", folder / "rtdose.dcm"],
    )
