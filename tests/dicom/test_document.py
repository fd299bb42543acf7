"""Series documents with Kaapana field names, and merging across batches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomflow.dicom.document import (
    build_series_document,
    dataset_fields,
    format_da,
    format_dt,
    format_tm,
    merge_series_documents,
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
        document = build_series_document(group, batch_id="b", received_at="2024-05-01T10:00:00")
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


def test_series_document_platform_fields(tmp_path: Path) -> None:
    group = one_series(write_ct_series(tmp_path / "series", [1, 2, 4]))
    document = build_series_document(
        group,
        projects=["lung", "admin"],
        datasets=["d1"],
        batch_id="batch-1",
        calling_ae="CT01",
        called_ae="DICOMFLOW",
        sender="10.0.0.5",
        received_at="2024-05-01T10:00:00",
        thumbnail_key="thumbnails/x.png",
        validation={"errors": 2, "warnings": 5, "instances_checked": 3, "report_key": "r1"},
    )
    assert document["project"] == ["admin", "lung"]
    assert document["instance_count"] == 3
    assert document["sop_instance_uids"] == sorted(group.sop_instance_uids)
    assert document["batch_ids"] == ["batch-1"]
    assert document["received_at"] == "2024-05-01T10:00:00+00:00"
    assert document["validation"]["errors"] == 2
    assert document["validation"]["missing_instance_numbers"] == [3]
    assert document["validation"]["report_key"] == "r1"
    assert document["00080060 Modality_keyword"] == "CT"
    # Per-instance identity would be misleading on a series document.
    assert "00080018 SOPInstanceUID_keyword" not in document
    assert "00200013 InstanceNumber_integer" not in document


def test_merge_unions_and_is_idempotent(tmp_path: Any) -> None:
    from pydicom.uid import generate_uid

    series_uid, study_uid = generate_uid(), generate_uid()
    first = write_ct_series(tmp_path / "b1", [1, 2], series_uid=series_uid, study_uid=study_uid)
    second = write_ct_series(tmp_path / "b2", [5], series_uid=series_uid, study_uid=study_uid)
    # A resend of instance 2 arrives again with batch 2.
    group_1 = one_series(first)
    group_2 = one_series([*second, first[1]])
    doc_1 = build_series_document(
        group_1,
        projects=["p1"],
        batch_id="b1",
        received_at="2024-05-01T10:00:00",
        calling_ae="A",
        validation={"errors": 1, "warnings": 0, "instances_checked": 2},
    )
    doc_2 = build_series_document(
        group_2,
        projects=["p2"],
        datasets=["d"],
        batch_id="b2",
        received_at="2024-05-02T10:00:00",
        calling_ae="B",
        validation={"errors": 0, "warnings": 3, "instances_checked": 2},
    )

    merged = merge_series_documents(doc_1, doc_2)
    assert merged["instance_count"] == 3
    assert merged["project"] == ["p1", "p2"] and merged["dataset"] == ["d"]
    assert merged["batch_ids"] == ["b1", "b2"]
    assert merged["calling_ae"] == "B"
    assert merged["received_at"] == "2024-05-01T10:00:00+00:00"
    assert merged["last_received_at"] == "2024-05-02T10:00:00+00:00"
    assert merged["validation"]["errors"] == 1 and merged["validation"]["warnings"] == 3
    assert merged["validation"]["missing_instance_numbers"] == [3, 4]

    assert merge_series_documents(merged, doc_2) == merged
    assert merge_series_documents(merge_series_documents(merged, doc_1), doc_2) == merged

    # Re-validating batch 1 replaces its run instead of adding to it.
    doc_1_again = dict(doc_1)
    doc_1_again["validation"] = dict(doc_1["validation"])
    doc_1_again["validation"]["runs"] = [dict(doc_1["validation"]["runs"][0], errors=0)]
    assert merge_series_documents(merged, doc_1_again)["validation"]["errors"] == 0

    filled = build_series_document(
        one_series(
            write_ct_series(tmp_path / "b3", [3, 4], series_uid=series_uid, study_uid=study_uid)
        )
    )
    assert merge_series_documents(merged, filled)["validation"]["missing_instance_numbers"] == []
    assert merge_series_documents(merged, filled)["instance_count"] == 5


def test_validation_totals_count_a_resent_instance_once(tmp_path: Path) -> None:
    series_uid, study_uid = generate_uid(), generate_uid()
    first = write_ct_series(tmp_path / "b1", [1, 2], series_uid=series_uid, study_uid=study_uid)
    second = write_ct_series(tmp_path / "b2", [3], series_uid=series_uid, study_uid=study_uid)
    # Batch 2 resends instance 2; the validate step reports the series' totals after its merge.
    doc_1 = build_series_document(
        one_series(first),
        batch_id="b1",
        validation={
            "errors": 0,
            "warnings": 2,
            "instances_checked": 2,
            "checked_at": "2024-05-01T10:00:00+00:00",
            "series_totals": {"errors": 0, "warnings": 2, "instances_checked": 2},
        },
    )
    doc_2 = build_series_document(
        one_series([first[1], *second]),
        batch_id="b2",
        validation={
            "errors": 1,
            "warnings": 2,
            "instances_checked": 2,
            "checked_at": "2024-05-01T09:00:00+00:00",  # finished first, merged last
            "series_totals": {"errors": 1, "warnings": 3, "instances_checked": 3},
        },
    )
    for merged in (merge_series_documents(doc_1, doc_2), merge_series_documents(doc_2, doc_1)):
        block = merged["validation"]
        assert (block["errors"], block["warnings"], block["instances_checked"]) == (1, 3, 3)
        assert len(block["runs"]) == 2


def test_merge_refuses_another_series(tmp_path: Path) -> None:
    a = build_series_document(one_series(write_ct_series(tmp_path / "x", [1])))
    b = build_series_document(one_series(write_ct_series(tmp_path / "y", [1])))
    with pytest.raises(ValueError, match="cannot merge"):
        merge_series_documents(a, b)


def test_pacs_state_is_stored_only_when_every_batch_is_archived(tmp_path: Path) -> None:
    from pydicom.uid import generate_uid

    series_uid, study_uid = generate_uid(), generate_uid()
    group_1 = one_series(
        write_ct_series(tmp_path / "b1", [1], series_uid=series_uid, study_uid=study_uid)
    )
    group_2 = one_series(
        write_ct_series(tmp_path / "b2", [2], series_uid=series_uid, study_uid=study_uid)
    )
    arrived_1 = build_series_document(group_1, batch_id="b1", archived=False)
    stored_1 = build_series_document(group_1, batch_id="b1")
    arrived_2 = build_series_document(group_2, batch_id="b2", archived=False)
    assert arrived_1["pacs_state"] == "storing" and stored_1["pacs_state"] == "stored"

    # The arrival document and the DAG's document of one batch merge in either order.
    assert merge_series_documents(arrived_1, stored_1)["pacs_state"] == "stored"
    assert merge_series_documents(stored_1, arrived_1)["pacs_state"] == "stored"
    # A second batch arriving makes the series "storing" again until it is archived too.
    growing = merge_series_documents(stored_1, arrived_2)
    assert growing["pacs_state"] == "storing" and growing["instance_count"] == 2
    stored_2 = build_series_document(group_2, batch_id="b2")
    assert merge_series_documents(growing, stored_2)["pacs_state"] == "stored"

    # Documents indexed before the state existed were written after the PACS store.
    legacy = {k: v for k, v in stored_1.items() if k not in ("archived_batch_ids", "pacs_state")}
    assert merge_series_documents(legacy, stored_1)["pacs_state"] == "stored"
