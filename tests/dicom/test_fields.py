"""Kaapana field names made readable for the Series pages."""

from __future__ import annotations

import pydicom

from dicomflow.dicom.document import dataset_fields
from dicomflow.dicom.fields import parse_field_name, readable_tags
from tests.dicomfiles import pydicom_file


def test_parse_field_name() -> None:
    assert parse_field_name("00100020 PatientID_keyword") == (0x00100020, "PatientID", "keyword")
    assert parse_field_name("0008103E SeriesDescription_keyword")[0] == 0x0008103E  # type: ignore[index]
    assert parse_field_name("instance_count") is None
    assert parse_field_name("0010 PatientID_keyword") is None


def test_readable_tags_of_a_real_header_in_tag_order_with_sequences() -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"), stop_before_pixels=True)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    document = {**dataset_fields(ds), "project": ["p"], "instance_count": 3}
    rows = readable_tags(document)
    tags = [r.tag for r in rows if r.depth == 0]
    assert tags == sorted(tags)
    by_keyword = {r.keyword: r for r in rows}
    assert "project" not in by_keyword and "instance_count" not in by_keyword
    patient = by_keyword["PatientID"]
    assert (patient.tag, patient.name, patient.value) == ("(0010,0020)", "Patient ID", ds.PatientID)
    assert by_keyword["ImageType"].value == "ORIGINAL \\ PRIMARY \\ AXIAL"
    assert by_keyword["StudyDate"].type == "date"
    # A sequence: its row counts the items, the items' fields follow one level deeper.
    sequence = by_keyword["OtherPatientIDsSequence"]
    items = len(ds.OtherPatientIDsSequence)
    assert (sequence.type, sequence.value, sequence.depth) == ("object", f"{items} item(s)", 0)
    nested = by_keyword["OtherPatientIDsSequence[0].PatientID"]
    assert (nested.depth, nested.name) == (1, "Patient ID")
    assert nested.value == ds.OtherPatientIDsSequence[0].PatientID
