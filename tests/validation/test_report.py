"""HTML validation reports: summary first, every finding listed, everything escaped."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pydicom
import pytest

from dicomflow.dicom.headers import group_series
from dicomflow.validation import render_report_html, validate_series
from dicomflow.validation.report import read_report_summary
from tests.dicomfiles import pydicom_file, write_ct_series


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


def test_report_lists_findings_per_instance_with_summary_first(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path / "ct", [1, 2, 4])
    series = group_series(paths).series[0]
    result = validate_series(series)
    html = render_report_html(result, details={"Modality": "CT"})

    assert html.startswith("<!DOCTYPE html>")
    assert html.index("Missing instance numbers") < html.index("<h2>Findings</h2>")
    text = "".join(parse(html).text)
    assert f"{result.warnings} warning(s)" in text
    assert "Modality" in text
    for instance in result.instances:
        assert instance.sop_instance_uid is not None
        assert html.count(f"<code>{instance.sop_instance_uid}</code>") == len(instance.findings)
    assert ">3</td>" in html  # the gap


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_values_from_files_are_escaped(tmp_path: Path) -> None:
    # dciodvfy quotes offending values in its messages; make one carry markup.
    paths = write_ct_series(
        tmp_path / "ct",
        [1],
        edit=lambda ds, _: setattr(ds, "Modality", "<b>X</b>"),
    )
    series = group_series(paths).series[0]
    result = validate_series(series)
    assert any("<b>X</b>" in f.message for i in result.instances for f in i.findings)
    html = render_report_html(result, title='Series "<script>alert(1)</script>"')

    assert "<script>" not in html and "<b>X</b>" not in html
    assert "&lt;b&gt;X&lt;/b&gt;" in html
    parsed = parse(html)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert 'Series "<script>alert(1)</script>"' in "".join(parsed.text)


def test_clean_report_says_no_findings(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path / "ct", [1])
    series = group_series(paths).series[0]
    result = validate_series(series, sample=0)
    html = render_report_html(result)
    assert "No findings." in html and "0 of 1" in html
    assert pydicom.dcmread(paths[0]).SeriesInstanceUID in html


def test_report_of_a_crashed_validator() -> None:
    series = group_series([pydicom_file("rtdose.dcm")]).series[0]
    html = render_report_html(validate_series(series))
    assert "validator crashed (signal 6, SIGABRT)" in html
    assert "Validator crashes</th><td>1<" in html


def test_report_summary_reads_back_what_the_report_says(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path / "ct", [1, 2, 4])
    result = validate_series(group_series(paths).series[0])
    html = render_report_html(result, details={"Errors": "<not this one>"})
    summary = read_report_summary(html)
    expected = result.summary()
    assert summary == {
        "errors": expected["errors"],
        "warnings": expected["warnings"],
        "instances_checked": 3,
        "checked_at": expected["checked_at"],
    }
    assert read_report_summary("<html><body>not a report</body></html>") is None
