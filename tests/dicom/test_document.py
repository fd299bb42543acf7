"""Series documents with Kaapana field names, computed from a series' facts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from dicomflow.dicom.document import (
    MAX_LISTED_GAPS,
    SeriesFacts,
    dataset_fields,
    format_da,
    format_dt,
    format_tm,
    header_fields,
    series_document,
)
from dicomflow.dicom.headers import SeriesGroup, group_series
from tests.dicomfiles import pydicom_file, write_ct_series


def one_series(paths: list[Any]) -> SeriesGroup:
    scan = group_series(paths)
    assert len(scan.series) == 1, scan.rejected
    return scan.series[0]


def test_fields_of_a_ct_header_are_typed_by_vr() -> None:
    fields = dataset_fields(pydicom.dcmread(pydicom_file("CT_small.dcm")))

    assert fields["00100020 PatientID_keyword"] == "1CT1"
    assert fields["00100010 PatientName_keyword"] == "CompressedSamples^CT1"
    assert fields["00080020 StudyDate_date"] == "2004-01-19"
    assert fields["00080030 StudyTime_time"] == "07:27:30.000000"
    assert fields["00200013 InstanceNumber_integer"] == 1
    assert fields["00280010 Rows_integer"] == 128
    assert fields["00280030 PixelSpacing_float"] == [0.661468, 0.661468]
    assert fields["00080008 ImageType_keyword"] == ["ORIGINAL", "PRIMARY", "AXIAL"]
    nested = fields["00101002 OtherPatientIDsSequence_object"]
    assert isinstance(nested, list) and nested[0]["00100020 PatientID_keyword"] == "ABCD1234"
    # Pixel data and other binary elements never reach the index.
    assert not [k for k in fields if k.startswith("7FE0") or "PixelData" in k]
    assert not [k for k in fields if k.split(" ")[0].startswith("0009")]  # private group
    json.dumps(fields, allow_nan=False)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_malformed_values_are_kept_as_keywords_with_a_note() -> None:
    ds = Dataset()
    ds.StudyDate = "20241301"  # month 13
    ds.StudyTime = "2561"  # hour 25
    ds.AcquisitionDateTime = "2024-01-01"
    ds.SeriesDate = "20240229"
    ds.SeriesTime = "1015"
    ds.ContentTime = "10:15:30.5"  # ACR-NEMA colons
    ds.AcquisitionDate = "2023.11.05"
    notes: list[str] = []
    fields = dataset_fields(ds, notes=notes)

    assert fields["00080020 StudyDate_keyword"] == "20241301"
    assert fields["00080030 StudyTime_keyword"] == "2561"
    assert fields["0008002A AcquisitionDateTime_keyword"] == "2024-01-01"
    assert fields["00080021 SeriesDate_date"] == "2024-02-29"
    assert fields["00080031 SeriesTime_time"] == "10:15:00.000000"
    assert fields["00080033 ContentTime_time"] == "10:15:30.500000"
    assert fields["00080022 AcquisitionDate_date"] == "2023-11-05"
    assert len(notes) == 3 and all("kept as keyword" in n for n in notes)


def test_real_file_with_bad_integer_string() -> None:
    notes: list[str] = []
    with pytest.warns(UserWarning):
        ds = pydicom.dcmread(pydicom_file("badVR.dcm"), stop_before_pixels=True)
        fields = dataset_fields(ds, notes=notes)
    assert fields["00280008 NumberOfFrames_keyword"] == "1A"
    assert "00280008 NumberOfFrames_integer" not in fields
    assert any("NumberOfFrames" in n for n in notes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20240131", "2024-01-31"), (" 19991231 ", "1999-12-31"), ("1999.12.31", "1999-12-31")],
)
def test_format_da(text: str, expected: str) -> None:
    assert format_da(text) == expected


@pytest.mark.parametrize("text", ["2024013", "20240230", "abcdefgh", ""])
def test_format_da_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        format_da(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("07", "07:00:00.000000"),
        ("0730", "07:30:00.000000"),
        ("073015.12", "07:30:15.120000"),
        ("235959.999999", "23:59:59.999999"),
    ],
)
def test_format_tm(text: str, expected: str) -> None:
    assert format_tm(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", "2024-01-01 00:00:00.000000"),
        ("20240131101502.5+0100", "2024-01-31 10:15:02.500000"),
    ],
)
def test_format_dt(text: str, expected: str) -> None:
    assert format_dt(text) == expected


def test_documents_of_several_pydicom_files_are_json(tmp_path: Path) -> None:
    names = ["rtstruct.dcm", "emri_small.dcm", "reportsi.dcm", "rtplan.dcm", "US1_J2KR.dcm"]
    for name in names:
        group = one_series([pydicom_file(name)])
        fields, _ = header_fields(group)
        document = series_document(fields, _facts(group.series_instance_uid, instance_count=1))
        text = json.dumps(document, allow_nan=False)
        assert document["instance_count"] == 1, name
        assert json.loads(text)["0020000E SeriesInstanceUID_keyword"] == group.series_instance_uid


def test_long_sequences_are_truncated_with_a_note() -> None:
    ds = Dataset()
    ds.PerFrameFunctionalGroupsSequence = [Dataset() for _ in range(10)]
    for index, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        frame = Dataset()
        frame.FrameAcquisitionNumber = index
        item.FrameContentSequence = [frame]
    notes: list[str] = []
    fields = dataset_fields(ds, notes=notes, max_sequence_items=3)
    per_frame = fields["52009230 PerFrameFunctionalGroupsSequence_object"]
    assert len(per_frame) == 3
    assert per_frame[2]["00209111 FrameContentSequence_object"] == [
        {"00209156 FrameAcquisitionNumber_integer": 2}
    ]
    assert notes == ["PerFrameFunctionalGroupsSequence: 10 items, only the first 3 indexed"]


def _facts(uid: str, **changes: Any) -> SeriesFacts:
    base: dict[str, Any] = {
        "series_uid": uid,
        "instance_count": 3,
        "sop_class_uids": ("1.2.840.10008.5.1.4.1.1.2",),
        "instance_numbers": (1, 2, 4),
        "batch_count": 2,
        "last_batch_id": "batch-2",
        "archived": True,
        "datasets": {"lung": ("d1", "d2"), "heart": ("h1",)},
        "received_at": datetime(2024, 5, 1, 10, tzinfo=UTC),
        "last_received_at": datetime(2024, 5, 2, 10, tzinfo=UTC),
        "calling_ae": "CT01",
        "called_ae": "LUNG",
        "sender": "10.0.0.5:4000",
    }
    return SeriesFacts(**{**base, **changes})


def test_header_fields_describe_the_series_not_one_instance(tmp_path: Path) -> None:
    group = one_series(write_ct_series(tmp_path / "series", [2, 1, 4]))
    fields, notes = header_fields(group)
    assert fields["00080060 Modality_keyword"] == "CT"
    assert fields["0020000E SeriesInstanceUID_keyword"] == group.series_instance_uid
    assert fields["0020000D StudyInstanceUID_keyword"] == group.study_instance_uid
    # Per-instance identity would be misleading on a series document.
    assert "00080018 SOPInstanceUID_keyword" not in fields
    assert "00200013 InstanceNumber_integer" not in fields
    assert notes == []


def test_series_document_summarises_the_facts(tmp_path: Path) -> None:
    group = one_series(write_ct_series(tmp_path / "series", [1, 2, 4]))
    fields, _ = header_fields(group)
    facts = _facts(group.series_instance_uid)
    validation = {
        "errors": 2,
        "warnings": 5,
        "instances_checked": 3,
        "report_key": "r1",
        "checked_at": "2024-05-02T11:00:00",
    }
    admin = series_document(
        fields, facts, thumbnail_key="thumbnails/x.png", validation=validation, notes=["n"]
    )
    assert admin["project"] == ["heart", "lung"]
    assert admin["dataset"] == ["d1", "d2", "h1"]
    assert admin["instance_count"] == 3 and admin["batch_count"] == 2
    assert admin["last_batch_id"] == "batch-2"
    assert admin["pacs_state"] == "stored"
    assert (admin["calling_ae"], admin["called_ae"]) == ("CT01", "LUNG")
    assert admin["received_at"] == "2024-05-01T10:00:00+00:00"
    assert admin["last_received_at"] == "2024-05-02T10:00:00+00:00"
    assert admin["validation"] == {
        "errors": 2,
        "warnings": 5,
        "instances_checked": 3,
        "level": "complete",
        "checked_at": "2024-05-02T11:00:00+00:00",
        "report_key": "r1",
        "missing_instances": 1,
        "missing_instance_numbers": [3],
    }
    assert admin["00080060 Modality_keyword"] == "CT"
    assert admin["header_notes"] == ["n"]
    json.dumps(admin)  # JSON-able

    # A project's copy names that project and its own datasets only.
    lung = series_document(fields, facts, project="lung")
    assert (lung["project"], lung["dataset"]) == (["lung"], ["d1", "d2"])
    assert lung["validation"] is None, "not validated yet"
    assert series_document(fields, _facts("x", archived=False))["pacs_state"] == "storing"


def test_a_document_is_bounded_by_the_series_not_its_history(tmp_path: Path) -> None:
    group = one_series(write_ct_series(tmp_path / "series", [1]))
    fields, _ = header_fields(group)
    small = series_document(
        fields, _facts("x", instance_count=1, instance_numbers=(1,)), validation={"errors": 0}
    )
    # 5,000 instances arrived in 100 batches, every other instance number missing.
    big = series_document(
        fields,
        _facts(
            "x",
            instance_count=5000,
            instance_numbers=tuple(range(1, 10_001, 2)),
            batch_count=100,
            last_batch_id="batch-100",
        ),
        validation={"errors": 0},
        notes=[f"note {n}" for n in range(500)],
    )
    assert big["validation"]["missing_instances"] == 4999
    assert len(big["validation"]["missing_instance_numbers"]) == MAX_LISTED_GAPS
    assert len(json.dumps(big)) < len(json.dumps(small)) + 3_000
