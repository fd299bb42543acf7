"""Review before import: the tree, the references between series, the selection, the flags.

Headers only, no server: what ``dicomflow import --review`` and the review page show.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from dicomflow.config import Settings
from dicomflow.importer.report import IgnoreReason
from dicomflow.importer.review import ExpectedSubject, FlagKind, SubjectMismatchError
from dicomflow.importer.review_files import review_paths
from dicomflow.importer.selection import (
    SelectionError,
    read_selection,
    resolve_selection,
    write_selection,
)
from tests.dicomfiles import pydicom_file
from tests.importer.importer_testutil import make_zip, new_series
from tests.importer.rt_testutil import rt_set

TODAY = dt.date(2025, 6, 1)


@pytest.fixture
def local(settings: Settings, tmp_path: Path) -> Settings:
    return settings.replace(data_dir=tmp_path / "data")


def test_rt_set_tree_references_and_closure(local: Settings, tmp_path: Path) -> None:
    rt = rt_set(tmp_path / "rt")
    # The dose and the plan in a zip, the rest loose, with a file that is not DICOM.
    archive = make_zip(tmp_path / "rt.zip", {"x/dose.dcm": rt.files[-1], "plan.dcm": rt.files[-2]})
    for path in rt.files[-2:]:
        path.unlink()
    (rt.folder / "notes.txt").write_text("not an image")

    review = review_paths(local, [rt.folder, archive], extension="", today=TODAY)

    assert review.analysed == 7 and not review.failures
    assert [(i.name, i.reason) for i in review.ignored] == [
        ("rt/notes.txt", IgnoreReason.NOT_DICOM)
    ]
    [patient] = review.patients
    assert patient.patient_id == rt.patient_id and patient.sex == "M"
    [study] = patient.studies
    assert study.study_uid == rt.study_uid and study.study_date == "20240105"
    series = review.series_by_uid()
    assert {uid: series[uid].modality for uid in series} == {
        rt.ct: "CT",
        rt.rtstruct: "RTSTRUCT",
        rt.rtplan: "RTPLAN",
        rt.rtdose: "RTDOSE",
    }
    assert series[rt.ct].instances == 3 and series[rt.ct].bytes > 0
    assert series[rt.rtdose].files == ["rt.zip!x/dose.dcm"]
    # The radiotherapy tree: dose -> plan -> structure set -> images.
    assert series[rt.rtdose].references == [rt.rtplan]
    assert series[rt.rtplan].references == [rt.rtstruct]
    assert series[rt.rtstruct].references == [rt.ct]
    assert series[rt.ct].references == []
    # Selecting a series selects what it references, transitively, and nothing else.
    assert review.closure([rt.rtdose]) == {rt.ct, rt.rtstruct, rt.rtplan, rt.rtdose}
    assert review.closure([rt.rtstruct]) == {rt.ct, rt.rtstruct}
    assert review.closure([rt.ct]) == {rt.ct}
    assert not review.flags
    # Nothing is left behind by the review (archives unpack into a scratch folder).
    assert not any(local.imports_dir.iterdir())


def test_structure_set_without_series_falls_back_to_its_frame_of_reference(
    local: Settings, tmp_path: Path
) -> None:
    rt = rt_set(tmp_path / "rt")
    struct = pydicom.dcmread(rt.folder / "rtstruct.dcm")
    del struct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence
    struct.save_as(rt.folder / "rtstruct.dcm")
    review = review_paths(local, [rt.folder], today=TODAY)
    assert review.series_by_uid()[rt.rtstruct].references == [rt.ct]


def test_seg_and_sr_reference_what_they_annotate_and_cite(local: Settings, tmp_path: Path) -> None:
    ct_uid, ct_files = new_series(tmp_path / "ct", 2)
    ct = pydicom.dcmread(ct_files[0], stop_before_pixels=True)

    seg = pydicom.dcmread(ct_files[0])
    seg.SeriesInstanceUID, seg.SOPInstanceUID = generate_uid(), generate_uid()
    seg.file_meta.MediaStorageSOPInstanceUID = seg.SOPInstanceUID
    seg.Modality = "SEG"
    ref = Dataset()
    ref.SeriesInstanceUID = ct_uid
    seg.ReferencedSeriesSequence = Sequence([ref])
    seg.save_as(tmp_path / "seg.dcm")

    sr = pydicom.dcmread(pydicom_file("reportsi.dcm"))
    sr.StudyInstanceUID = ct.StudyInstanceUID
    sr.PatientID = ct.PatientID
    sr.SeriesInstanceUID, sr.SOPInstanceUID = generate_uid(), generate_uid()
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    cited = Dataset()
    cited.SeriesInstanceUID = ct_uid
    evidence = Dataset()
    evidence.StudyInstanceUID = ct.StudyInstanceUID
    evidence.ReferencedSeriesSequence = Sequence([cited])
    sr.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    sr.save_as(tmp_path / "sr.dcm")

    review = review_paths(
        local, [tmp_path / "ct", tmp_path / "seg.dcm", tmp_path / "sr.dcm"], today=TODAY
    )
    series = review.series_by_uid()
    assert series[seg.SeriesInstanceUID].references == [ct_uid]
    assert series[sr.SeriesInstanceUID].references == [ct_uid]
    assert review.closure([sr.SeriesInstanceUID]) == {ct_uid, sr.SeriesInstanceUID}


def test_subject_mismatch_is_flagged_and_needs_an_override(local: Settings, tmp_path: Path) -> None:
    rt = rt_set(tmp_path / "rt", sex="M", dose_sex="F")
    review = review_paths(
        local, [rt.folder], expected=ExpectedSubject(sex="m", birth_date="1970-01-01")
    )
    [flag] = review.flags
    assert (flag.kind, flag.series_uid, flag.field, flag.expected, flag.found) == (
        FlagKind.SUBJECT_MISMATCH,
        rt.rtdose,
        "PatientSex",
        "M",
        "F",
    )
    assert "PatientSex is 'F', expected 'M'" in flag.message
    # The CT alone is fine; the dose (or anything bringing it in) needs the override.
    assert resolve_selection(review, [rt.ct]) == ({rt.ct}, [])
    with pytest.raises(SubjectMismatchError) as refused:
        resolve_selection(review, [rt.rtdose])
    assert "PatientSex is 'F', expected 'M'" in str(refused.value)
    chosen, overridden = resolve_selection(review, [rt.rtdose], override=True)
    assert chosen == {rt.ct, rt.rtstruct, rt.rtplan, rt.rtdose} and overridden == [flag]
    # Without its references, only what was asked for.
    assert resolve_selection(review, [rt.rtplan], references=False) == ({rt.rtplan}, [])


def test_several_patients_empty_patient_id_and_future_dates_are_flagged(
    local: Settings, tmp_path: Path
) -> None:
    a, _ = new_series(tmp_path / "a", 1)
    b, b_files = new_series(tmp_path / "b", 1)
    ds = pydicom.dcmread(b_files[0])
    ds.PatientID = ""
    ds.StudyDate = "20250602"
    ds.save_as(b_files[0])
    review = review_paths(local, [tmp_path / "a", tmp_path / "b"], today=TODAY)
    kinds = {(f.kind, f.series_uid) for f in review.flags}
    assert kinds == {
        (FlagKind.SEVERAL_PATIENTS, ""),
        (FlagKind.EMPTY_PATIENT_ID, b),
        (FlagKind.FUTURE_DATE, b),
    }
    # An empty Patient ID needs an override; several patients and future dates are warnings.
    assert [f.kind for f in review.flags_needing_override([a, b])] == [FlagKind.EMPTY_PATIENT_ID]
    assert resolve_selection(review, [a]) == ({a}, [])


def test_ignored_files_say_why(local: Settings, tmp_path: Path) -> None:
    _, files = new_series(tmp_path / "s", 1)
    (tmp_path / "s" / "DICOMDIR").write_bytes(b"x")
    (tmp_path / "s" / "image.txt").write_bytes(files[0].read_bytes())
    broken = tmp_path / "s" / "no-uids.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"\x07" * 50)
    review = review_paths(local, [tmp_path / "s", tmp_path / "missing"], today=TODAY)
    reasons = {i.name: i.reason for i in review.ignored}
    assert reasons == {
        "s/DICOMDIR": IgnoreReason.DICOMDIR,
        "s/image.txt": IgnoreReason.WRONG_EXTENSION,
        "s/no-uids.dcm": IgnoreReason.BAD_UID,
    }
    assert [f.name for f in review.failures] == [str(tmp_path / "missing")]


def test_selection_file_round_trip_and_bad_files(local: Settings, tmp_path: Path) -> None:
    rt = rt_set(tmp_path / "rt")
    review = review_paths(local, [rt.folder], held=lambda uid: uid == rt.ct, today=TODAY)
    # What the project holds is marked and not ticked at first.
    assert review.series_by_uid()[rt.ct].in_project
    assert review.default_selection() == {rt.rtstruct, rt.rtplan, rt.rtdose}
    path = write_selection(tmp_path / "sel.json", review, [rt.rtplan])
    assert read_selection(path) == [rt.rtplan]
    assert "[x] " + rt.rtplan in "\n".join(review.lines(selected=[rt.rtplan]))

    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SelectionError, match="not JSON"):
        read_selection(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(SelectionError, match="--review"):
        read_selection(tmp_path / "other.json")
    with pytest.raises(SelectionError, match="not among the reviewed files"):
        resolve_selection(review, ["1.2.3"])
    with pytest.raises(SelectionError, match="no series selected"):
        resolve_selection(review, [])


def test_a_kept_review_reads_back_the_same(local: Settings, tmp_path: Path) -> None:
    from dicomflow.importer.review import Review

    rt = rt_set(tmp_path / "rt", dose_sex="F")
    review = review_paths(local, [rt.folder], expected=ExpectedSubject(sex="M"), today=TODAY)
    again = Review.from_dict(json.loads(json.dumps(review.as_dict())))
    assert again.as_dict() == review.as_dict()
    assert again.closure([rt.rtdose]) == review.closure([rt.rtdose])
