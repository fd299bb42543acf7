"""The Dashboards saved objects against the index template, on the real engine.

No OpenSearch Dashboards runs here, so the check asks the engine what Dashboards would ask it:
documents written the way the pipeline writes them go into indexes made from the shipped
template, and ``_field_caps`` (what an index pattern is built from) says each field's type and
whether it can be aggregated. Every field a visualization or index pattern of
``config/opensearch/dashboards.ndjson`` uses must be there, with a type its use accepts.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from dicomflow.config import Settings
from dicomflow.db.projects import ADMIN_PROJECT
from dicomflow.dicom.document import SeriesFacts, header_fields, series_document
from dicomflow.dicom.headers import group_series
from dicomflow.index.dashboards import read_saved_objects
from dicomflow.index.opensearch import INDEX_PREFIX, OpenSearchSeriesIndex, connect
from tests.dicomfiles import fresh_copy, write_ct_series

NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
DATES = {"date", "date_nanos"}
# Aggregation type -> the field types it accepts (None: any aggregatable type).
AGGREGATIONS: dict[str, set[str] | None] = {
    "terms": None,
    "cardinality": None,
    "date_histogram": DATES,
    "date_range": DATES,
    "histogram": NUMERIC,
    "range": NUMERIC,
    "sum": NUMERIC,
    "avg": NUMERIC,
    "min": NUMERIC | DATES,
    "max": NUMERIC | DATES,
    "median": NUMERIC,
    "percentiles": NUMERIC,
}
# Field caps: field -> {type -> {"type", "aggregatable", ...}}.
FieldCaps = dict[str, dict[str, dict[str, Any]]]


def field_uses(objects: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """Every use of a field: (object id, index pattern title, field, use).

    The use is an aggregation type, or ``time field`` for an index pattern's time field.
    """
    titles = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    uses: list[tuple[str, str, str, str]] = []
    for obj in objects:
        attributes = obj["attributes"]
        if obj["type"] == "index-pattern" and attributes.get("timeFieldName"):
            uses.append((obj["id"], attributes["title"], attributes["timeFieldName"], "time field"))
        if "visState" not in attributes:
            continue
        pattern = next(
            (titles[r["id"]] for r in obj.get("references", []) if r["type"] == "index-pattern"),
            "",
        )
        for agg in json.loads(attributes["visState"]).get("aggs", []):
            field = agg.get("params", {}).get("field")
            if field:
                uses.append((obj["id"], pattern, field, agg["type"]))
    return uses


def problems(objects: list[dict[str, Any]], caps_of: dict[str, FieldCaps]) -> list[str]:
    """What in the saved objects the indexes cannot serve, one line per problem.

    Parameters
    ----------
    objects
        The saved objects.
    caps_of
        Index pattern title -> the field caps of the indexes it matches.
    """
    found: list[str] = []
    for obj_id, pattern, field, use in field_uses(objects):
        where = f"{obj_id}: {use} on {field!r} ({pattern})"
        caps = caps_of.get(pattern, {}).get(field)
        if not caps:
            found.append(f"{where}: no such field in the indexes")
            continue
        if len(caps) > 1:
            found.append(f"{where}: mapped as {sorted(caps)} in different indexes")
            continue
        kind, cap = next(iter(caps.items()))
        if use == "time field":
            if kind not in DATES:
                found.append(f"{where}: a time field must be a date, it is {kind}")
            continue
        if use not in AGGREGATIONS:
            found.append(f"{where}: aggregation {use!r} is unknown to this check; add it")
            continue
        if not cap.get("aggregatable"):
            found.append(f"{where}: {kind} cannot be aggregated")
        accepted = AGGREGATIONS[use]
        if accepted is not None and kind not in accepted:
            found.append(f"{where}: needs {'/'.join(sorted(accepted))}, it is {kind}")
    return found


def pipeline_documents(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Series documents as the pipeline makes them (a CT and an MR, validated): project -> docs.

    The project's copies go to ``dash``, the admin copies to ``admin``.
    """
    files = [*write_ct_series(folder / "ct", [1, 2, 3]), fresh_copy("MR_small.dcm", folder)]
    when = datetime(2025, 3, 1, 12, tzinfo=UTC)
    documents: dict[str, list[dict[str, Any]]] = {"dash": [], ADMIN_PROJECT: []}
    for group in group_series(files).series:
        fields, notes = header_fields(group)
        facts = SeriesFacts(
            series_uid=group.series_instance_uid,
            instance_count=len(group.instances),
            sop_class_uids=tuple(group.sop_class_uids),
            instance_numbers=tuple(
                i.instance_number for i in group.instances if i.instance_number is not None
            ),
            batch_count=1,
            last_batch_id="batch-1",
            archived=True,
            datasets={"dash": ("dash-set",)},
            received_at=when,
            last_received_at=when,
            calling_ae="SCANNER",
            called_ae="DASH",
            sender="127.0.0.1:4000",
        )
        validation = {
            "errors": 2,
            "warnings": 1,
            "instances_checked": len(group.instances),
            "checked_at": when,
            "report_key": f"validation/{group.series_instance_uid}.html",
        }
        for project in ("dash", None):
            documents[project or ADMIN_PROJECT].append(
                series_document(
                    fields,
                    facts,
                    project=project,
                    thumbnail_key=f"thumbnails/{group.series_instance_uid}.png",
                    validation=validation,
                    notes=notes,
                )
            )
    return documents


@pytest.fixture(scope="module")
def caps_of(
    opensearch: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FieldCaps]]:
    """Index pattern title -> field caps, from indexes of the template holding real documents."""
    prefix = f"dfdash{uuid.uuid4().hex[:8]}_"
    client: OpenSearch = connect(opensearch.index.opensearch_endpoint)
    index = OpenSearchSeriesIndex(client, index_prefix=prefix)
    try:
        for project, documents in pipeline_documents(tmp_path_factory.mktemp("dash")).items():
            index.put(project, documents)
        titles = {
            o["attributes"]["title"] for o in read_saved_objects() if o["type"] == "index-pattern"
        }
        caps: dict[str, FieldCaps] = {}
        for title in titles:
            # The shipped patterns name the deployment's indexes; ours carry a test prefix.
            assert title.startswith(INDEX_PREFIX), title
            name = prefix + title[len(INDEX_PREFIX) :]
            caps[title] = client.field_caps(index=name, fields="*")["fields"]
        yield caps
    finally:
        client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
        client.indices.delete_index_template(name=index.template_name, ignore=[404])
        client.close()


def test_saved_objects_use_fields_the_template_maps_with_the_right_type(
    caps_of: dict[str, FieldCaps],
) -> None:
    objects = read_saved_objects()
    uses = field_uses(objects)
    # The check looks at what is there: the visualizations' fields and the time fields.
    assert {field for _, _, field, _ in uses} >= {
        "received_at",
        "00080060 Modality_keyword",
        "project",
        "dataset",
        "validation.errors",
        "instance_count",
        "00100020 PatientID_keyword",
    }
    assert {pattern for _, pattern, _, _ in uses} == {f"{INDEX_PREFIX}{ADMIN_PROJECT}", "project_*"}
    assert problems(objects, caps_of) == []


def test_the_check_names_a_field_that_does_not_fit(caps_of: dict[str, FieldCaps]) -> None:
    objects = copy.deepcopy(read_saved_objects())
    vis = next(o for o in objects if o["id"] == "dicomflow-validation-findings")
    state = json.loads(vis["attributes"]["visState"])
    state["aggs"][0]["params"]["field"] = "00080020 StudyDate_date"  # sum of dates
    state["aggs"][2]["params"]["field"] = "all_text"  # terms on analysed text
    state["aggs"].append(
        {"id": "9", "type": "date_histogram", "schema": "segment", "params": {"field": "nope"}}
    )
    vis["attributes"]["visState"] = json.dumps(state)
    pattern = next(o for o in objects if o["id"] == "dicomflow-project-series")
    pattern["attributes"]["timeFieldName"] = "00080030 StudyTime_time"
    assert problems(objects, caps_of) == [
        "dicomflow-project-series: time field on '00080030 StudyTime_time' (project_*): "
        "a time field must be a date, it is keyword",
        "dicomflow-validation-findings: sum on '00080020 StudyDate_date' (project_admin): "
        "needs byte/double/float/half_float/integer/long/scaled_float/short, it is date",
        "dicomflow-validation-findings: terms on 'all_text' (project_admin): "
        "text cannot be aggregated",
        "dicomflow-validation-findings: date_histogram on 'nope' (project_admin): "
        "no such field in the indexes",
    ]
