"""End-to-end NIfTI imports checked with dciodvfy, dcm2niix and highdicom."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from dicomflow.nifti import (
    CaseStatus,
    FourDPolicy,
    Layout,
    MalformedJsonError,
    MissingFileError,
    NiftiImportOptions,
    QuantisationMethod,
    TagValueError,
    UnknownLabelPolicy,
    convert_folder,
    detect_layout,
    reorient_to,
    seg_to_labelmap,
)
from dicomflow.nifti.geometry import RAS_TO_LPS
from tests.nifti.nifti_testutil import (
    MR_RESCALE,
    NIBABEL_DATA,
    SEG_INFO,
    UNKNOWN_LATERALITY,
    assert_valid,
    dcm2niix,
    labels_for,
    load_image,
    make_affine,
    phantom,
    save_nifti,
    write_json,
)

OPTIONS = NiftiImportOptions(study_datetime=datetime(2024, 5, 6, 7, 8, 9))
SHAPE = (24, 20, 9)


def check_round_trip(
    series_dir: Path, original: np.ndarray, affine: np.ndarray, work: Path, atol: float = 0.0
) -> None:
    """dcm2niix gives back the voxels and an affine within 1e-3 mm."""
    image = dcm2niix(series_dir, work)
    back = reorient_to(np.asanyarray(image.get_fdata()), image.affine, affine, atol_mm=1e-3)
    # dcm2niix keeps the rescale as float32 scl_slope/scl_inter: a relative 1e-6 on top.
    rtol = 1e-6 if atol else 0.0
    np.testing.assert_allclose(
        np.asarray(back, dtype=np.float64), original.astype(np.float64), rtol=rtol, atol=atol + 1e-9
    )


def basic_case(root: Path, affine: np.ndarray, *, dtype: type = np.int16) -> np.ndarray:
    root.mkdir(parents=True, exist_ok=True)
    data = phantom(SHAPE, dtype)
    save_nifti(root / "Case00.nii.gz", data, affine)
    save_nifti(root / "Case00_seg.nii.gz", labels_for(SHAPE), affine)
    write_json(root / "seg_info.json", SEG_INFO)
    write_json(
        root / "meta_data.json",
        {
            "global_tags": {"0008|0060": "CT", "0010|0040": "O"},
            "series_tags": {"Case00.nii": {"0008|103e": "phantom"}},
        },
    )
    return data


@pytest.mark.parametrize(
    "affine",
    [
        pytest.param(make_affine(), id="axis-aligned"),
        pytest.param(make_affine(angles=(12.0, -25.0, 33.0)), id="oblique"),
        pytest.param(make_affine(flips=(0,)), id="negative-determinant"),
        pytest.param(make_affine(angles=(0.0, 30.0, 0.0), flips=(2,)), id="oblique-k-reversed"),
        pytest.param(
            make_affine(angles=(90.0, 0.0, 0.0), flips=(1,), spacing=(0.5, 3.0, 0.7)),
            id="coronal-negative-determinant",
        ),
    ],
)
def test_basic_case_is_valid_and_round_trips(tmp_path: Path, affine: np.ndarray) -> None:
    data = basic_case(tmp_path / "in", affine)
    report = convert_folder(tmp_path / "in", tmp_path / "out", options=OPTIONS)
    assert report.layout is Layout.BASIC and report.all_ok, report.summary()
    case = report.case("Case00")
    (series,) = case.series
    assert series.quantisation.method is QuantisationMethod.LOSSLESS
    assert len(series.files) == SHAPE[2]
    assert case.segmentation is not None
    assert_valid([*series.files, case.segmentation.path])

    first = pydicom.dcmread(series.files[0])
    assert (first.Modality, first.SeriesDescription, first.PatientSex) == ("CT", "phantom", "O")
    assert (first.Rows, first.Columns) == (SHAPE[1], SHAPE[0])
    positions = [np.array(pydicom.dcmread(f).ImagePositionPatient, float) for f in series.files]
    normal = np.cross(*np.array(first.ImageOrientationPatient, float).reshape(2, 3))
    assert np.all(np.diff([p @ normal for p in positions]) > 0)

    check_round_trip(series.files[0].parent, data, affine, tmp_path)

    # SEG: shares patient and study, and reads back to the label map.
    seg = pydicom.dcmread(case.segmentation.path)
    assert (seg.PatientID, seg.StudyInstanceUID) == (first.PatientID, first.StudyInstanceUID)
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    labels = labels_for(SHAPE)
    back = seg_to_labelmap(case.segmentation.path, series)
    mapping = case.segmentation.label_values()
    np.testing.assert_array_equal(np.vectorize(lambda v: mapping.get(v, 0))(back), labels)


def test_seg_volume_geometry_matches_the_nifti_grid(tmp_path: Path) -> None:
    affine = make_affine(angles=(5.0, 10.0, -20.0), flips=(0,))
    root = tmp_path / "in"
    root.mkdir()
    save_nifti(root / "c.nii", phantom(SHAPE), affine)
    labels = np.ones(SHAPE, dtype=np.uint8)  # every slice non-empty: a full volume
    labels[: SHAPE[0] // 2] = 2
    save_nifti(root / "c_seg.nii", labels, affine)
    write_json(root / "seg_info.json", SEG_INFO)
    report = convert_folder(root, tmp_path / "out", options=OPTIONS)
    seg_result = report.case("c").segmentation
    assert seg_result is not None
    volume = hd.seg.segread(seg_result.path).get_volume(combine_segments=True)
    ras = np.linalg.inv(RAS_TO_LPS) @ volume.affine
    np.testing.assert_array_equal(reorient_to(volume.array, ras, affine, atol_mm=1e-3), labels)


def test_seg_coding_colours_and_algorithm(tmp_path: Path) -> None:
    basic_case(tmp_path / "in", make_affine())
    write_json(
        tmp_path / "in" / "seg_info.json",
        dict(SEG_INFO, algorithm="TotalSegmentator", algorithm_version="2.4"),
    )
    report = convert_folder(tmp_path / "in", tmp_path / "out", options=OPTIONS)
    seg_result = report.case("Case00").segmentation
    assert seg_result is not None
    seg = pydicom.dcmread(seg_result.path)
    prostate, special = seg.SegmentSequence
    assert prostate.SegmentLabel == "prostate"
    assert prostate.SegmentedPropertyTypeCodeSequence[0].CodeValue == "41216001"
    assert special.SegmentLabel == "my_special_region"
    assert special.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"
    assert prostate.SegmentAlgorithmType == "AUTOMATIC"
    assert prostate.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == (
        "TotalSegmentator"
    )
    assert prostate.RecommendedDisplayCIELabValue != special.RecommendedDisplayCIELabValue


def test_ground_truth_is_manual(tmp_path: Path) -> None:
    basic_case(tmp_path / "in", make_affine())
    report = convert_folder(tmp_path / "in", tmp_path / "out", options=OPTIONS)
    seg_result = report.case("Case00").segmentation
    assert seg_result is not None
    seg = pydicom.dcmread(seg_result.path)
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"MANUAL"}


def test_float_mr_volume_is_quantised_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    affine = make_affine(angles=(0.0, 0.0, 15.0))
    data = phantom(SHAPE, np.float32) / 7.0
    save_nifti(root / "adc.nii.gz", data, affine)
    write_json(root / "meta_data.json", {"global_tags": {"0008|0060": "MR"}})
    report = convert_folder(root, tmp_path / "out", options=OPTIONS)
    (series,) = report.case("adc").series
    q = series.quantisation
    step = (float(data.max()) - float(data.min())) / 65535
    assert q.method is QuantisationMethod.LINEAR and 0 < q.max_abs_error <= step / 2 + 1e-9
    assert report.to_dict()["cases"][0]["series"][0]["quantisation"]["max_abs_error"] > 0  # type: ignore[index]
    assert_valid(series.files, allowed=(UNKNOWN_LATERALITY, MR_RESCALE))
    check_round_trip(series.files[0].parent, data, affine, tmp_path, atol=q.max_abs_error)


def test_nifti_scaled_integers_keep_their_scaling(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    affine = make_affine()
    save_nifti(
        root / "pet.nii", phantom(SHAPE, np.float64) * 0.37 + 2.5, affine, stored_dtype=np.int16
    )
    image = load_image(root / "pet.nii")
    report = convert_folder(root, tmp_path / "out", options=OPTIONS)
    (series,) = report.case("pet").series
    assert series.quantisation.method is QuantisationMethod.NIFTI_SCALING
    assert series.modality.value == "MR"  # the default modality
    check_round_trip(
        series.files[0].parent,
        image.get_fdata(),
        affine,
        tmp_path,
        atol=series.quantisation.max_abs_error + 1e-9,
    )


def test_zero_warnings_when_laterality_is_known(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    save_nifti(root / "c.nii", phantom(SHAPE, np.uint8), make_affine())
    write_json(root / "meta_data.json", {"global_tags": {"0020|0060": "R", "0008|0060": "MR"}})
    report = convert_folder(root, tmp_path / "out", options=OPTIONS)
    assert_valid(report.case("c").series[0].files, allowed=())


def test_nibabel_anatomical_big_endian_radiological(tmp_path: Path) -> None:
    source = NIBABEL_DATA / "anatomical.nii"
    report = convert_folder(source, tmp_path / "out", options=OPTIONS)
    assert report.layout is Layout.SINGLE_FILE and report.all_ok, report.summary()
    (series,) = report.case("anatomical").series
    assert_valid(series.files[:3])
    image = load_image(source)
    check_round_trip(series.files[0].parent, np.asanyarray(image.dataobj), image.affine, tmp_path)


def test_4d_is_split_into_series_or_refused(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(NIBABEL_DATA / "example4d.nii.gz", root / "fmri.nii.gz")
    report = convert_folder(root, tmp_path / "out", options=OPTIONS)
    case = report.case("fmri")
    assert case.ok, case.reason
    assert [s.volume_index for s in case.series] == [0, 1]
    assert len({s.series_uid for s in case.series}) == 2
    assert len({s.study_uid for s in case.series}) == 1
    image = load_image(root / "fmri.nii.gz")
    assert_valid([case.series[1].files[0], case.series[1].files[-1]])
    check_round_trip(
        case.series[1].files[0].parent,
        np.asanyarray(image.dataobj)[..., 1],
        image.affine,
        tmp_path,
    )

    refused = convert_folder(
        root, tmp_path / "out2", options=NiftiImportOptions(four_d=FourDPolicy.REFUSE)
    )
    failed = refused.case("fmri")
    assert failed.status is CaseStatus.FAILED and failed.error_type == "FourDimensionalVolumeError"
    assert "fmri.nii.gz" in (failed.reason or "") and "four_d=split" in (failed.reason or "")
    assert not (tmp_path / "out2" / "fmri").exists()


def test_rerun_gives_the_same_uids(tmp_path: Path) -> None:
    basic_case(tmp_path / "in", make_affine())
    first = convert_folder(tmp_path / "in", tmp_path / "out", options=OPTIONS).case("Case00")
    second = convert_folder(tmp_path / "in", tmp_path / "out", options=NiftiImportOptions()).case(
        "Case00"
    )
    assert first.series_uids == second.series_uids
    assert [pydicom.dcmread(f).SOPInstanceUID for f in first.series[0].files[:2]] == [
        pydicom.dcmread(f).SOPInstanceUID for f in second.series[0].files[:2]
    ]
    other = convert_folder(
        tmp_path / "in", tmp_path / "out3", options=NiftiImportOptions(uid_namespace="p/d")
    ).case("Case00")
    assert set(other.series_uids).isdisjoint(first.series_uids)


def test_bad_cases_fail_alone(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    affine = make_affine()
    save_nifti(root / "good.nii.gz", phantom(SHAPE), affine)
    save_nifti(root / "good_seg.nii.gz", labels_for(SHAPE), affine)
    save_nifti(root / "shifted.nii.gz", phantom(SHAPE), affine)
    save_nifti(root / "shifted_seg.nii.gz", labels_for(SHAPE), make_affine(origin=(0, 0, 0)))
    save_nifti(root / "small.nii.gz", phantom(SHAPE), affine)
    save_nifti(root / "small_seg.nii.gz", labels_for((24, 20, 8)), affine)
    save_nifti(root / "extra.nii.gz", phantom(SHAPE), affine)
    save_nifti(root / "extra_seg.nii.gz", labels_for(SHAPE, (1, 7)), affine)
    sheared = affine.copy()
    sheared[1, 2] = 0.4
    save_nifti(root / "sheared.nii.gz", phantom(SHAPE), sheared)
    save_nifti(root / "baddate.nii.gz", phantom(SHAPE), affine)
    (root / "broken.nii.gz").write_bytes(b"not a nifti file")
    write_json(root / "seg_info.json", SEG_INFO)
    meta = {"series_tags": {"baddate.nii.gz": {"0008|0020": "2024-01-01"}}}
    write_json(root / "meta_data.json", meta)

    report = convert_folder(root, tmp_path / "out", options=OPTIONS)
    assert [c.case_id for c in report.ok] == ["good"]
    reasons = {c.case_id: (c.error_type, c.reason or "") for c in report.failed}
    assert reasons["shifted"][0] == "GridMismatchError"
    assert "shifted_seg.nii.gz" in reasons["shifted"][1] and "mm" in reasons["shifted"][1]
    assert reasons["small"][0] == "GridMismatchError" and "(24, 20, 8)" in reasons["small"][1]
    assert reasons["extra"][0] == "UnknownLabelError" and "7" in reasons["extra"][1]
    assert "seg_info.json" in reasons["extra"][1]
    assert reasons["sheared"][0] == "ShearedAffineError" and "degrees" in reasons["sheared"][1]
    assert reasons["baddate"][0] == "TagValueError"
    assert "meta_data.json, line 4, key '0008|0020'" in reasons["baddate"][1]
    assert reasons["broken"][0] == "VolumeError" and "broken.nii.gz" in reasons["broken"][1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good"]
    assert "FAILED  sheared" in report.summary()

    lenient = convert_folder(
        root,
        tmp_path / "out2",
        options=NiftiImportOptions(unknown_labels=UnknownLabelPolicy.SEGMENT),
    )
    extra = lenient.case("extra")
    assert extra.ok and extra.segmentation is not None
    assert [s.name for s in extra.segmentation.segments][-1] == "unknown (label 7)"
    assert extra.segmentation.unknown_values == (7,)
    assert_valid([extra.segmentation.path])
    back = seg_to_labelmap(extra.segmentation.path, extra.series[0])
    mapping = extra.segmentation.label_values()
    np.testing.assert_array_equal(
        np.vectorize(lambda v: mapping.get(v, 0))(back), labels_for(SHAPE, (1, 7))
    )


def test_folder_level_errors_raise(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    save_nifti(root / "a.nii", phantom(SHAPE), make_affine())
    (root / "meta_data.json").write_text('{"global_tags": {"0008|0060": "MR",}}')
    with pytest.raises(MalformedJsonError, match="line 1"):
        convert_folder(root, tmp_path / "out")
    (root / "meta_data.json").unlink()
    save_nifti(root / "a_seg.nii", labels_for(SHAPE), make_affine())
    with pytest.raises(MissingFileError, match=r"seg_info\.json"):
        convert_folder(root, tmp_path / "out")


def nnunet_folder(root: Path) -> None:
    affine = make_affine(angles=(0.0, 10.0, 0.0))
    for split in ("imagesTr", "labelsTr", "imagesTs"):
        (root / split).mkdir(parents=True)
    write_json(
        root / "dataset.json",
        {
            "channel_names": {"0": "T2", "1": "ADC"},
            "labels": {"background": 0, "PZ": 1, "TZ": 2},
            "numTraining": 2,
            "file_ending": ".nii.gz",
        },
    )
    for n, case in enumerate(("prostate_00", "prostate_01")):
        save_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", phantom(SHAPE, seed=n), affine)
        save_nifti(root / "imagesTr" / f"{case}_0001.nii.gz", phantom(SHAPE, np.uint16), affine)
        save_nifti(root / "labelsTr" / f"{case}.nii.gz", labels_for(SHAPE), affine)
    save_nifti(root / "imagesTs" / "prostate_09_0000.nii.gz", phantom(SHAPE), affine)
    save_nifti(root / "imagesTs" / "prostate_09_0001.nii.gz", phantom(SHAPE), affine)


def test_nnunet_dataset(tmp_path: Path) -> None:
    root = tmp_path / "Dataset005_Prostate"
    nnunet_folder(root)
    assert detect_layout(root) is Layout.NNUNET
    report = convert_folder(root, tmp_path / "out", options=OPTIONS)
    assert report.all_ok, report.summary()
    assert [c.case_id for c in report.cases] == ["prostate_00", "prostate_01", "prostate_09"]
    assert json.loads(json.dumps(report.to_dict()))["n_ok"] == 3
    case = report.case("prostate_00")
    t2, adc = case.series
    assert (t2.modality.value, adc.modality.value) == ("MR", "MR")
    assert pydicom.dcmread(adc.files[0]).SeriesDescription == "ADC"
    assert len({t2.study_uid, adc.study_uid}) == 1
    assert case.segmentation is not None
    assert case.segmentation.source_series_uid == t2.series_uid
    assert [s.name for s in case.segmentation.segments] == ["PZ", "TZ"]
    assert all(s.coded for s in case.segmentation.segments)
    assert_valid([t2.files[0], adc.files[-1], case.segmentation.path])
    assert report.case("prostate_09").segmentation is None
    assert (
        report.case("prostate_00").series[0].study_uid
        != report.case("prostate_01").series[0].study_uid
    )

    without_test = convert_folder(
        root, tmp_path / "out2", options=NiftiImportOptions(include_test_set=False)
    )
    assert [c.case_id for c in without_test.cases] == ["prostate_00", "prostate_01"]


def test_nnunet_problems(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    nnunet_folder(root)
    (root / "imagesTr" / "prostate_01_0001.nii.gz").unlink()
    report = convert_folder(root, tmp_path / "out", options=OPTIONS)
    failed = report.case("prostate_01")
    assert failed.status is CaseStatus.FAILED and "channels [0]" in (failed.reason or "")
    assert report.case("prostate_00").ok

    (root / "dataset.json").unlink()
    with pytest.raises(MissingFileError, match=r"dataset\.json"):
        convert_folder(root, tmp_path / "out")
    write_json(root / "dataset.json", {"channel_names": {"0": "CT"}, "labels": {"a": [1, 2]}})
    with pytest.raises(Exception, match="region-based") as info:
        convert_folder(root, tmp_path / "out")
    assert getattr(info.value, "key", None) == "a"


def test_series_tag_errors_name_the_file(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    save_nifti(root / "a.nii", phantom(SHAPE), make_affine())
    write_json(root / "meta_data.json", {"series_tags": {"a.nii": {"0010|0030": "1.1.1970"}}})
    report = convert_folder(root, tmp_path / "out")
    (case,) = report.failed
    assert case.error_type == TagValueError.__name__
    assert str(root / "meta_data.json") in (case.reason or "")
