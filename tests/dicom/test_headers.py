"""Grouping a batch of files into series, headers only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from dicomflow.dicom.headers import group_series, read_instance_info
from tests.dicomfiles import pydicom_file, write_ct_series


def test_groups_instances_by_series_with_counts_and_sizes(tmp_path: Path) -> None:
    ct = write_ct_series(tmp_path / "a", [1, 2, 3])
    other = write_ct_series(tmp_path / "b", [7, 8])
    mr = pydicom_file("MR_small.dcm")
    scan = group_series([ct[0], other[0], mr, ct[1], other[1], ct[2]])

    assert scan.rejected == []
    assert [len(g.instances) for g in scan.series] == [3, 2, 1]
    first = scan.series[0]
    assert first.series_instance_uid == pydicom.dcmread(ct[0]).SeriesInstanceUID
    assert first.modality == "CT"
    assert first.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert [i.instance_number for i in first.instances] == [1, 2, 3]
    assert first.paths == ct
    assert [i.size for i in first.instances] == [p.stat().st_size for p in ct]
    assert first.total_size == sum(p.stat().st_size for p in ct)
    assert first.instances[0].image_position is not None
    assert scan.series[2].modality == "MR"
    assert scan.instance_count == 6


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_bad_files_are_returned_with_reasons_not_raised(tmp_path: Path) -> None:
    good = write_ct_series(tmp_path / "series", [1])
    text = tmp_path / "notes.txt"
    text.write_text("this is not DICOM\n" * 20)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(pydicom_file("CT_small.dcm").read_bytes()[:200])
    bad_uid = write_ct_series(
        tmp_path / "bad", [2], edit=lambda ds, _: setattr(ds, "SeriesInstanceUID", "1.02.3")
    )
    no_uid = write_ct_series(
        tmp_path / "nouid", [3], edit=lambda ds, _: delattr(ds, "SOPInstanceUID")
    )
    missing = tmp_path / "gone.dcm"

    scan = group_series([*good, text, truncated, *bad_uid, *no_uid, missing])

    assert [len(g.instances) for g in scan.series] == [1]
    reasons = {r.path.name: r.reason for r in scan.rejected}
    assert set(reasons) == {
        "notes.txt",
        "truncated.dcm",
        bad_uid[0].name,
        no_uid[0].name,
        "gone.dcm",
    }
    assert reasons["notes.txt"].startswith("not a readable DICOM file")
    assert "SeriesInstanceUID '1.02.3' is not a valid UID" in reasons[bad_uid[0].name]
    assert reasons[no_uid[0].name] == "SOPInstanceUID is missing"
    assert reasons["gone.dcm"] == "file not found"


def test_duplicates_and_study_conflicts_are_kept_out_of_the_group(tmp_path: Path) -> None:
    series_uid = generate_uid()
    paths = write_ct_series(tmp_path / "series", [1, 2], series_uid=series_uid)
    copy = tmp_path / "copy.dcm"
    shutil.copy(paths[0], copy)
    stranger = write_ct_series(tmp_path / "other-study", [3], series_uid=series_uid)

    scan = group_series([*paths, copy, *stranger])

    assert [i.path for i in scan.series[0].instances] == paths
    duplicate, conflict = scan.rejected
    assert duplicate.path == copy and duplicate.duplicate_of == paths[0]
    assert conflict.path == stranger[0] and "differs" in conflict.reason


def test_files_without_part10_header_and_without_pixels() -> None:
    rtstruct = pydicom_file("rtstruct.dcm")  # written without preamble/meta
    sr = pydicom_file("reportsi.dcm")
    instance = read_instance_info(rtstruct)
    assert instance.modality == "RTSTRUCT" and instance.series_instance_uid
    assert instance.number_of_frames == 0
    assert read_instance_info(sr).number_of_frames == 0
    assert read_instance_info(pydicom_file("emri_small.dcm")).number_of_frames == 10
