"""The CLI group, the factory, the OpenSearch files and query translation, query parsing."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from dicomflow.cli.series import series_group
from dicomflow.config import Settings
from dicomflow.index import open_index
from dicomflow.index.base import (
    QUERY_PARAMETERS,
    SERIES_UID,
    QueryError,
    SeriesIndexError,
    SeriesQuery,
)
from dicomflow.index.dashboards import (
    DASHBOARDS_FILE,
    DashboardsError,
    import_dashboards,
    read_saved_objects,
)
from dicomflow.index.opensearch import TEMPLATE_FILE, OpenSearchSeriesIndex, build_query
from dicomflow.index.postgres import PostgresSeriesIndex
from tests.index.samples import series, store, uid


def test_query_from_params_parses_and_validates() -> None:
    query = SeriesQuery.from_params(
        {
            "modality": ["ct,mr", "SEG"],
            "from": "2024-02-29",
            "has_errors": "no",
            "page": "2",
            "dataset": ["a,b"],
            "q": " ",
            "sort": "study_date",
            "order": "asc",
        }
    )
    assert query.modality == ("CT", "MR", "SEG")
    assert query.dataset == ("a,b",)  # dataset names may hold commas
    assert query.date_from == date(2024, 2, 29)
    assert query.has_errors is False
    assert query.q is None  # blank values are ignored
    assert (query.page, query.offset) == (2, 50)
    with pytest.raises(QueryError, match="validation: 'half' is not one of none, repr"):
        SeriesQuery.from_params({"validation": "complete,half"})
    with pytest.raises(QueryError, match=r"^from: '2023-02-29' is not a date YYYY-MM-DD$") as err:
        SeriesQuery.from_params({"from": "2023-02-29"})
    assert err.value.parameter == "from"


def test_cli_series_list(index_settings: Settings) -> None:
    project = f"cli-{uuid.uuid4().hex[:8]}"
    index = open_index(index_settings)
    try:
        store(index, project, [series(n) for n in range(3)])
        store(index, project, [series(3, **{"00080060 Modality_keyword": "MR"})])
    finally:
        index.close()
    runner = CliRunner()
    result = runner.invoke(
        series_group,
        ["list", "--project", project, "--modality", "CT", "--json", "--size", "2"],
        obj=index_settings,
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["total"] == 3
    assert [d[SERIES_UID] for d in body["items"]] == [uid(2), uid(1)]
    result = runner.invoke(series_group, ["list", "--project", project], obj=index_settings)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"4 series in {project}")
    assert "modality: CT 3, MR 1" in result.output
    result = runner.invoke(
        series_group, ["show", uid(3), "--project", project, "--json"], obj=index_settings
    )
    assert json.loads(result.output)["document"]["00080060 Modality_keyword"] == "MR"
    result = runner.invoke(series_group, ["list", "--from", "2024-13-01"], obj=index_settings)
    assert result.exit_code == 2
    assert "--from" in result.output
    assert "'2024-13-01' is not a date YYYY-MM-DD" in result.output


def test_open_index_picks_the_backend(index_settings: Settings) -> None:
    index = open_index(index_settings)
    assert isinstance(index, PostgresSeriesIndex)
    index.close()
    opensearch = index_settings.replace(index=index_settings.index.replace(backend="opensearch"))
    with pytest.raises(SeriesIndexError, match=r"index\.opensearch_url is empty"):
        open_index(opensearch)
    configured = opensearch.replace(
        index=opensearch.index.replace(opensearch_url="https://127.0.0.1:9")
    )
    index = open_index(configured)
    assert isinstance(index, OpenSearchSeriesIndex)
    index.close()


def test_index_template_maps_every_suffix() -> None:
    template = json.loads(TEMPLATE_FILE.read_text())
    assert template["index_patterns"] == ["project_*"]
    mappings = template["template"]["mappings"]
    by_match = {
        next(iter(t.values())).get("match"): next(iter(t.values()))["mapping"]
        for t in mappings["dynamic_templates"]
    }
    assert by_match["*_keyword"]["type"] == "keyword"
    assert by_match["*_date"]["type"] == "date"
    assert by_match["*_time"]["type"] == "keyword"
    assert by_match["*_integer"]["type"] == "long"
    assert by_match["*_float"]["type"] == "double"
    assert by_match["*_object"]["type"] == "object"
    assert "description_text" in by_match["0008103E SeriesDescription_keyword"]["copy_to"]
    # Specific field templates must come before the generic suffix they would also match.
    order = [next(iter(t.values())).get("match") for t in mappings["dynamic_templates"]]
    assert order.index("00100010 PatientName_keyword") < order.index("*_keyword")
    props = mappings["properties"]
    for text_field in ("all_text", "description_text", "patient_name_text"):
        assert props[text_field]["type"] == "text"
    assert props["batch_count"]["type"] == "long" and props["instance_count"]["type"] == "long"
    analysis = template["template"]["settings"]["index"]["analysis"]
    assert props["all_text"]["analyzer"] in analysis["analyzer"]


def test_opensearch_query_covers_every_filter() -> None:
    query = SeriesQuery.from_params(
        {
            "dataset": "d",
            "modality": "ct",
            "patient_id": "p",
            "patient_name": "doe",
            "body_part": "chest",
            "from": "2020-01-01",
            "to": "2020-12-31",
            "description": "thorax",
            "has_errors": "true",
            "has_warnings": "false",
            "validation": "none,complete",
            "sop_class": "1.2",
            "study_uid": "1.3",
            "q": "CT-Thorax",
        }
    )
    assert set(QUERY_PARAMETERS) - {"page", "size", "sort", "order"} == {
        "dataset",
        "modality",
        "patient_id",
        "patient_name",
        "body_part",
        "from",
        "to",
        "description",
        "has_errors",
        "has_warnings",
        "validation",
        "sop_class",
        "study_uid",
        "q",
    }
    body = json.dumps(build_query(query))
    for expected in (
        '"dataset": ["d"]',
        '"00080060 Modality_keyword": ["CT"]',
        '"00100020 PatientID_keyword": "p"',
        '"00180015 BodyPartExamined_keyword"',
        '"gte": "2020-01-01"',
        '"lte": "2020-12-31"',
        '"description_text"',
        '"patient_name_text"',
        '"validation.errors"',
        '"validation.warnings"',
        '"validation.level": ["complete"]',
        '"must_not": [{"exists": {"field": "validation.level"}}]',
        '"00080016 SOPClassUID_keyword": ["1.2"]',
        '"all_text": {"query": "ct thorax"',
        '"0020000D StudyInstanceUID_keyword": "1.3"',
    ):
        assert expected in body


def test_dashboards_file_is_self_contained() -> None:
    objects = read_saved_objects(DASHBOARDS_FILE)
    types = {o["type"] for o in objects}
    assert {"index-pattern", "visualization", "dashboard"} <= types
    titles = {o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    assert "project_*" in titles
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    assert len(panels) == len([o for o in objects if o["type"] == "visualization"])
    fields = " ".join(o["attributes"].get("visState", "") for o in objects)
    for field in ("00080060 Modality_keyword", '"project"', '"dataset"', "validation.errors"):
        assert field in fields


def test_dashboards_check_catches_dangling_reference(tmp_path: Path) -> None:
    lines = DASHBOARDS_FILE.read_text().splitlines()
    broken = tmp_path / "broken.ndjson"
    broken.write_text("\n".join(line for line in lines if '"type":"index-pattern"' not in line))
    with pytest.raises(DashboardsError, match="does not define"):
        read_saved_objects(broken)
    broken.write_text(lines[0] + "\n" + lines[0] + "\n")
    with pytest.raises(DashboardsError, match="defined twice"):
        read_saved_objects(broken)


def test_import_dashboards_reports_an_unreachable_server() -> None:
    with pytest.raises(
        DashboardsError,
        match=r"cannot reach OpenSearch Dashboards at http://127\.0\.0\.1:9/api/saved_objects/_import",
    ):
        import_dashboards("http://127.0.0.1:9", timeout=2)
