"""The real dciodvfy on real files: findings, crashes, parallel runs, completeness."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from dicomflow.dicom.headers import group_series
from dicomflow.validation import (
    Severity,
    Validator,
    ValidatorUnavailableError,
    parse_dciodvfy_output,
    run_dciodvfy,
    sample_evenly,
    validate_series,
)
from tests.dicomfiles import pydicom_file, write_ct_series

pytestmark = pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed"
)


def test_parse_output_splits_iod_findings_and_other_lines() -> None:
    text = (
        "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Date\n"
        "RTStructureSet\n"
        "Error - Missing attribute Type 1 Required Element=<FrameOfReferenceUID>\n"
        "\n"
        "dciodvfy: attrothr.cc:46: Assertion `x' failed.\n"
    )
    iod, findings, other = parse_dciodvfy_output(text)
    assert iod == "RTStructureSet"
    assert [f.severity for f in findings] == [Severity.WARNING, Severity.ERROR]
    assert findings[1].message.endswith("<FrameOfReferenceUID>")
    assert other == ["dciodvfy: attrothr.cc:46: Assertion `x' failed."]


def test_ct_small_has_warnings_only() -> None:
    result = run_dciodvfy(pydicom_file("CT_small.dcm"), sop_instance_uid="1.2.3")
    assert result.iod == "CTImage"
    assert result.errors == 0 and result.warnings >= 1
    assert not result.crashed and result.returncode == 0
    assert any("Patient's Weight" in f.message for f in result.findings)


def test_errors_are_found_even_though_the_exit_code_says_little() -> None:
    result = run_dciodvfy(pydicom_file("rtstruct.dcm"))
    assert result.iod == "RTStructureSet"
    assert result.errors >= 3
    assert any("FrameOfReferenceUID" in f.message for f in result.findings)


def test_a_validator_crash_is_a_finding() -> None:
    result = run_dciodvfy(pydicom_file("rtdose.dcm"))  # dciodvfy aborts on this file
    assert result.crashed
    assert result.returncode is not None and result.returncode < 0
    last = result.findings[-1]
    assert last.severity is Severity.ERROR
    assert last.message.startswith("validator crashed (signal 6, SIGABRT)")
    assert "Assertion" in last.message


def test_missing_validator_is_a_deployment_error() -> None:
    with pytest.raises(ValidatorUnavailableError, match="dicom3tools"):
        Validator(executable="no-such-dciodvfy")


def test_series_validation_in_parallel_with_gaps(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, [1, 2, 5, 6, 9, 9])
    series = group_series(reversed(paths)).series[0]
    with Validator(workers=2) as validator:
        result = validate_series(series, validator)
    assert result.total_instances == 6 and len(result.instances) == 6
    assert not result.sampled
    numbers = [int(pydicom.dcmread(i.path).InstanceNumber) for i in result.instances]
    assert numbers == [1, 2, 5, 6, 9, 9]  # reported in series order
    assert result.missing_instance_numbers == [3, 4, 7, 8]
    assert result.duplicate_instance_numbers == [9]
    assert result.errors == 0 and result.warnings == sum(i.warnings for i in result.instances)
    assert result.warnings >= 6
    summary = result.summary()
    assert summary["instances_checked"] == 6 and summary["missing_instance_numbers"] == [3, 4, 7, 8]


def test_sample_validates_evenly_spaced_instances(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, list(range(1, 11)))
    series = group_series(paths).series[0]
    result = validate_series(series, sample=3)
    assert result.sampled and result.total_instances == 10
    numbers = [int(pydicom.dcmread(i.path).InstanceNumber) for i in result.instances]
    assert numbers == [1, 6, 10]
    assert result.missing_instance_numbers == []


def test_sample_evenly() -> None:
    items = list(range(100))
    assert sample_evenly(items, None) == items
    assert sample_evenly(items, 500) == items
    assert sample_evenly(items, 5) == [0, 25, 50, 74, 99]
    assert sample_evenly(items, 1) == [49]
    assert sample_evenly(items, 0) == []


def test_validations_of_two_batches_merge_into_one_series_validation(tmp_path: Path) -> None:
    from pydicom.uid import generate_uid

    from dicomflow.validation import SeriesValidation

    series_uid, study_uid = generate_uid(), generate_uid()
    first = write_ct_series(tmp_path / "a", [1, 2, 3], series_uid=series_uid, study_uid=study_uid)
    # The second batch resends instance 3 and brings 5 (4 never arrives).
    later = write_ct_series(tmp_path / "b", [5], series_uid=series_uid, study_uid=study_uid)
    one = validate_series(group_series(first).series[0])
    two = validate_series(group_series([first[2], *later]).series[0])

    # Kept as JSON between batches, merged when the next one is validated.
    stored = SeriesValidation.from_json(one.to_json())
    assert stored.summary() | {"checked_at": ""} == one.summary() | {"checked_at": ""}
    merged = stored.merged_with(two)

    assert merged.total_instances == 4 and len(merged.instances) == 4
    assert merged.missing_instance_numbers == [4]
    assert merged.duplicate_instance_numbers == []
    assert merged.warnings == one.warnings + two.warnings - two.instances[0].warnings
    assert [i.sop_instance_uid for i in merged.instances] == [
        str(pydicom.dcmread(p).SOPInstanceUID) for p in [*first, *later]
    ]
    with pytest.raises(ValueError, match="cannot merge"):
        merged.merged_with(
            validate_series(group_series(write_ct_series(tmp_path / "c", [1])).series[0])
        )
