"""Geometry, quantisation, writer, tag and label handling of the NIfTI import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicomflow.nifti import (
    MalformedJsonError,
    MissingFileError,
    NiftiImportError,
    QuantisationMethod,
    SegInfoError,
    ShearedAffineError,
    TagKeyError,
    TagValueError,
    UnsupportedModalityError,
    VolumeError,
    load_meta_data,
    load_seg_info,
    reorient_to,
    slice_geometry,
)
from dicomflow.nifti.labels import code_for_label
from dicomflow.nifti.pixels import encode_volume
from dicomflow.nifti.writer import SharedHeaderWriter
from tests.nifti.nifti_testutil import SEG_INFO, make_affine, write_json

# --- geometry -------------------------------------------------------------------


def test_axis_aligned_geometry_flips_ras_to_lps_and_orders_pixel_spacing() -> None:
    affine = make_affine((0.7, 0.9, 3.0), origin=(10.0, 20.0, 30.0))
    geo = slice_geometry(affine, (4, 5, 3))
    # i runs to RAS +x (= LPS -x), j to RAS +y (= LPS -y).
    assert geo.orientation == [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]
    assert geo.pixel_spacing == pytest.approx((0.9, 0.7))  # [row spacing (j), column spacing (i)]
    assert (geo.rows, geo.columns) == (5, 4)
    assert geo.slice_spacing == pytest.approx(3.0)
    # normal = (-x) x (-y) = +z, and k runs along +z: kept in order.
    assert geo.slice_order == (0, 1, 2)
    np.testing.assert_allclose(geo.positions[0], [-10.0, -20.0, 30.0])
    np.testing.assert_allclose(geo.positions[2], [-10.0, -20.0, 36.0])
    assert geo.slice_locations() == pytest.approx([30.0, 33.0, 36.0])


def test_k_against_the_normal_is_written_in_ascending_position() -> None:
    affine = make_affine((1.0, 1.0, 2.0), flips=(2,), origin=(0.0, 0.0, 50.0))
    geo = slice_geometry(affine, (3, 3, 4))
    assert geo.slice_order == (3, 2, 1, 0)
    locations = geo.slice_locations()
    assert locations == sorted(locations)
    np.testing.assert_allclose(geo.positions[0], [0.0, 0.0, 44.0])


def test_oblique_geometry_is_orthonormal() -> None:
    affine = make_affine((0.5, 0.6, 1.5), angles=(17.0, -23.0, 41.0))
    geo = slice_geometry(affine, (6, 7, 8))
    assert np.linalg.norm(geo.row_cosine) == pytest.approx(1.0)
    assert float(geo.row_cosine @ geo.column_cosine) == pytest.approx(0.0, abs=1e-12)
    steps = np.diff(geo.positions @ geo.normal)
    np.testing.assert_allclose(steps, 1.5)


def test_sheared_affine_is_refused_with_the_angle() -> None:
    affine = make_affine((1.0, 1.0, 2.0))
    affine[0, 2] = 0.3  # slice axis leans along x: a gantry tilt
    with pytest.raises(ShearedAffineError, match=r"voxel axes 0 and 2 meet at 8[0-9.]+ degrees"):
        slice_geometry(affine, (3, 3, 3), path=Path("tilted.nii"))


def test_degenerate_affine_is_refused() -> None:
    affine = np.diag([1.0, 0.0, 1.0, 1.0])
    with pytest.raises(VolumeError, match="zero-length"):
        slice_geometry(affine, (2, 2, 2))


def test_reorient_to_undoes_axis_permutation_and_flip() -> None:
    affine = make_affine((1.0, 2.0, 3.0), flips=(0,))
    data = np.arange(24).reshape(2, 3, 4)
    permuted = np.flip(data.transpose(2, 0, 1), axis=1)
    # affine of `permuted`: new axis 0 = old k, new 1 = old i reversed, new 2 = old j
    new = np.eye(4)
    new[:3, 0] = affine[:3, 2]
    new[:3, 1] = -affine[:3, 0]
    new[:3, 2] = affine[:3, 1]
    new[:3, 3] = affine[:3, 3] + affine[:3, 0] * (data.shape[0] - 1)
    np.testing.assert_array_equal(reorient_to(permuted, new, affine), data)
    with pytest.raises(ValueError, match="differ by more than axis order"):
        shifted = new.copy()
        shifted[0, 3] += 0.5
        reorient_to(permuted, shifted, affine)


# --- pixel values ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "low", "high", "signed", "intercept"),
    [
        (np.uint8, 0, 255, False, "0.0"),
        (np.int16, -1024, 3071, True, "0.0"),
        (np.uint16, 0, 65535, False, "0.0"),
        (np.int32, 100000, 160000, False, "100000"),
        (np.float64, -5.0, 900.0, True, "0.0"),  # integral floats are stored exactly
    ],
)
def test_integer_values_are_lossless(
    dtype: type, low: int, high: int, signed: bool, intercept: str
) -> None:
    data: np.ndarray = np.linspace(low, high, 60).round().astype(dtype).reshape(3, 4, 5)
    encoded = encode_volume(data)
    q = encoded.quantisation
    assert q.method is QuantisationMethod.LOSSLESS
    assert (q.signed, q.intercept, q.max_abs_error) == (signed, intercept, 0.0)
    restored = encoded.pixels.astype(np.float64) * float(q.slope) + float(q.intercept)
    np.testing.assert_array_equal(restored, data.astype(np.float64))
    assert encoded.pixels.dtype.byteorder in ("<", "=") and encoded.pixels.itemsize == 2


def test_big_endian_input_is_stored_little_endian() -> None:
    data = np.arange(-30, 30, dtype=">i2").reshape(3, 4, 5)
    encoded = encode_volume(data)
    assert encoded.pixels.dtype.str == "<i2"
    np.testing.assert_array_equal(encoded.pixels, data)


def test_float_values_are_quantised_with_an_honest_error() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(50.0, 30.0, size=(8, 9, 10)).astype(np.float32)
    encoded = encode_volume(data)
    q = encoded.quantisation
    assert q.method is QuantisationMethod.LINEAR
    restored = encoded.pixels * float(q.slope) + float(q.intercept)
    actual = float(np.max(np.abs(restored - data.astype(np.float64))))
    assert actual == pytest.approx(q.max_abs_error)
    # 16-bit quantisation over the range: half a step at most.
    assert 0 < q.max_abs_error <= (float(data.max()) - float(data.min())) / 65535 * 0.5 + 1e-9
    assert len(q.slope) <= 16 and len(q.intercept) <= 16


def test_constant_float_volume() -> None:
    encoded = encode_volume(np.full((2, 2, 2), 0.25, dtype=np.float32))
    q = encoded.quantisation
    assert float(q.intercept) + float(q.slope) * int(encoded.pixels.max()) == 0.25
    assert q.max_abs_error == 0.0


def test_nifti_scaling_is_kept() -> None:
    raw = np.arange(-100, 100, dtype=np.int16).reshape(4, 5, 10)
    encoded = encode_volume(raw, nifti_scaling=(0.5, 10.0))
    q = encoded.quantisation
    assert q.method is QuantisationMethod.NIFTI_SCALING
    assert (q.slope, q.intercept, q.max_abs_error) == ("0.5", "10.0", 0.0)
    np.testing.assert_array_equal(encoded.pixels, raw)
    assert q.value_range == (-40.0, 59.5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.array([[[1.0, np.nan]]]), "NaN or infinite"),
        (np.array([[[1 + 2j]]]), "complex"),
        (np.zeros((0, 2, 2), dtype=np.int16), "no voxels"),
    ],
)
def test_unstorable_values_are_refused(data: np.ndarray, message: str) -> None:
    with pytest.raises(VolumeError, match=message):
        encode_volume(data, path=Path("x.nii"))


# --- writer ---------------------------------------------------------------------


def test_shared_header_writer_is_byte_identical_to_dcmwrite(tmp_path: Path) -> None:
    shared = Dataset()
    shared.SpecificCharacterSet = "ISO_IR 192"
    shared.SOPClassUID = CTImageStorage
    shared.PatientName = "Müller^Jörg"
    shared.Modality = "CT"
    shared.Rows = 2
    shared.Columns = 2
    own = Dataset()
    own.SOPInstanceUID = generate_uid()
    own.InstanceNumber = 7
    own.ImagePositionPatient = ["1.5", "-2", "3"]
    own.add_new(0x7FE00010, "OW", b"\x01\x00\x02\x00\x03\x00\x04\x00")
    ours = tmp_path / "ours.dcm"
    SharedHeaderWriter(shared).write(ours, CTImageStorage, own.SOPInstanceUID, own)

    full = Dataset()
    full.update(shared)
    full.update(own)
    full.file_meta = FileMetaDataset()
    full.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    reference = tmp_path / "reference.dcm"
    full.save_as(reference, enforce_file_format=True)
    assert ours.read_bytes() == reference.read_bytes()
    assert str(pydicom.dcmread(ours).PatientName) == "Müller^Jörg"


def test_shared_header_writer_refuses_duplicated_elements(tmp_path: Path) -> None:
    shared = Dataset()
    shared.InstanceNumber = 1
    own = Dataset()
    own.InstanceNumber = 2
    with pytest.raises(ValueError, match="both shared and per-file"):
        SharedHeaderWriter(shared).write(tmp_path / "x.dcm", CTImageStorage, "1.2.3", own)


# --- meta_data.json -------------------------------------------------------------


def test_meta_data_global_and_series_tags(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "meta_data.json",
        {
            "global_tags": {"0008|0060": "MR", "0010|0030": "19700101", "0020|0011": 5},
            "series_tags": {"Case00.nii": {"0008|103e": "T2 axial", "0008|0060": "CT"}},
        },
    )
    meta = load_meta_data(path)
    case00 = {v.keyword: v.value for v in meta.tags_for("Case00.nii.gz").values()}
    assert case00 == {
        "Modality": "CT",
        "PatientBirthDate": "19700101",
        "SeriesNumber": "5",
        "SeriesDescription": "T2 axial",
    }
    other = {v.keyword: v.value for v in meta.tags_for("Case01.nii").values()}
    assert other["Modality"] == "MR" and "SeriesDescription" not in other


@pytest.mark.parametrize(
    ("tags", "error", "key", "message"),
    [
        ({"0008,0060": "MR"}, TagKeyError, "0008,0060", "not of the form GGGG|EEEE"),
        ({"0008|006": "MR"}, TagKeyError, "0008|006", "not of the form"),
        ({"0011|0010": "x"}, TagKeyError, "0011|0010", "private tag"),
        ({"0028|0030": "1\\1"}, TagKeyError, "0028|0030", "derived from the volume"),
        ({"0002|0010": "1.2"}, TagKeyError, "0002|0010", "file meta"),
        ({"0009|0000": "x"}, TagKeyError, "0009|0000", "private"),
        ({"0010|0030": "1970-01-01"}, TagValueError, "0010|0030", "PatientBirthDate"),
        ({"0008|0020": "20230230"}, TagValueError, "0008|0020", "not a calendar date"),
        ({"0020|0011": "five"}, TagValueError, "0020|0011", "VR IS"),
        ({"0008|0060": "mr"}, TagValueError, "0008|0060", "VR CS"),
        ({"0010|0020": "x" * 65}, TagValueError, "0010|0020", "exceeds the maximum length"),
        ({"0028|0106": -1}, TagValueError, "0028|0106", "outside the US range"),
        ({"0008|0060": "PT"}, UnsupportedModalityError, "0008|0060", "'PT' is not supported"),
        ({"0040|0275": "x"}, TagKeyError, "0040|0275", "VR SQ"),
        ({"0010|0010": {"a": 1}}, TagValueError, "0010|0010", "string or number"),
    ],
)
def test_bad_global_tag_names_file_key_and_line(
    tmp_path: Path,
    tags: dict[str, object],
    error: type[NiftiImportError],
    key: str,
    message: str,
) -> None:
    path = write_json(tmp_path / "meta_data.json", {"global_tags": tags})
    with pytest.raises(error) as info:
        load_meta_data(path)
    exc = info.value
    assert exc.path == path and exc.key == key and exc.line == 3
    assert message in str(exc)
    assert str(path) in str(exc) and "line 3" in str(exc)


def test_bad_series_tag_fails_only_when_that_file_is_converted(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "meta_data.json",
        {"series_tags": {"good.nii": {"0008|103e": "ok"}, "bad.nii.gz": {"0008|0021": "2024"}}},
    )
    meta = load_meta_data(path)
    assert meta.tags_for("good.nii")
    with pytest.raises(TagValueError) as info:
        meta.tags_for("bad.nii.gz")
    assert info.value.line == 7 and info.value.key == "0008|0021"


def test_malformed_json_gives_line(tmp_path: Path) -> None:
    path = tmp_path / "meta_data.json"
    path.write_text('{\n  "global_tags": {\n    "0008|0060": "MR",\n  }\n}\n')
    with pytest.raises(MalformedJsonError) as info:
        load_meta_data(path)
    assert info.value.line == 4 and "invalid JSON" in str(info.value)


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ({"global_tags": ["0008|0060"]}, "global_tags"),
        ({"series_tags": {"a.nii": "MR"}}, "a.nii"),
        ({"globaltags": {}}, "globaltags"),
        ({"series_tags": {"a.nii": {}, "a.nii.gz": {}}}, "a.nii.gz"),
    ],
)
def test_wrongly_shaped_meta_data(tmp_path: Path, content: object, key: str) -> None:
    path = write_json(tmp_path / "meta_data.json", content)
    with pytest.raises(MalformedJsonError) as info:
        load_meta_data(path)
    assert info.value.key == key and info.value.line is not None


def test_missing_and_non_object_json(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        load_meta_data(tmp_path / "meta_data.json")
    path = write_json(tmp_path / "meta_data.json", [1, 2])
    with pytest.raises(MalformedJsonError, match="top level must be a JSON object"):
        load_meta_data(path)


# --- seg_info.json --------------------------------------------------------------


def test_seg_info_labels_codes_and_colours(tmp_path: Path) -> None:
    info = load_seg_info(write_json(tmp_path / "seg_info.json", SEG_INFO))
    assert info.manual and info.body_part == "prostate"
    prostate, special = info.labels
    assert (prostate.value, prostate.property_type.value, prostate.coded) == (1, "41216001", True)
    assert (special.value, special.property_type.meaning, special.coded) == (2, "Tissue", False)
    assert prostate.rgb != special.rgb


def test_seg_info_automatic_algorithm(tmp_path: Path) -> None:
    content = dict(SEG_INFO, algorithm="nnU-Net 3d_fullres", algorithm_version="2.5")
    info = load_seg_info(write_json(tmp_path / "seg_info.json", content))
    assert not info.manual
    assert (info.algorithm, info.algorithm_version) == ("nnU-Net 3d_fullres", "2.5")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"label_name": "a", "label_int": "x"}], "non-negative integer"),
        ([{"label_name": "a", "label_int": -1}], "non-negative integer"),
        ([{"label_name": "a"}], "needs 'label_name' and 'label_int'"),
        ([{"label_name": "", "label_int": 1}], "non-empty string"),
        ([{"label_name": "a", "label_int": 1}, {"label_name": "b", "label_int": "1"}], "twice"),
        ([{"label_name": "background", "label_int": 0}], "no label other than background"),
    ],
)
def test_bad_seg_info(tmp_path: Path, entries: list[object], message: str) -> None:
    path = write_json(
        tmp_path / "seg_info.json", {"algorithm": "Ground truth", "seg_info": entries}
    )
    with pytest.raises(SegInfoError, match=message) as info:
        load_seg_info(path)
    assert info.value.path == path


def test_known_label_names() -> None:
    assert code_for_label("Peripheral_Zone") is not None
    assert code_for_label("left kidney") == code_for_label("kidney")
    assert code_for_label("TUMOUR")[1].value == "108369006"  # type: ignore[index]
    assert code_for_label("zebra") is None
