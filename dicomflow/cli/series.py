"""``dicomflow series ...``: find series in the index and fetch what belongs to them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dicomflow.cli.options import CliError, json_option, project_option, settings_of
from dicomflow.index.base import (
    MODALITY,
    PATIENT_ID,
    SERIES_DESCRIPTION,
    SERIES_UID,
    STUDY_DATE,
)

if TYPE_CHECKING:
    from dicomflow.config import Settings

# Option name -> query parameter name (dicomflow.index.base.QUERY_PARAMETERS).
_FILTERS = {
    "dataset": "dataset",
    "modality": "modality",
    "patient_id": "patient_id",
    "patient_name": "patient_name",
    "body_part": "body_part",
    "date_from": "from",
    "date_to": "to",
    "description": "description",
    "has_errors": "has_errors",
    "has_warnings": "has_warnings",
    "validation": "validation",
    "sop_class": "sop_class",
    "study_uid": "study_uid",
    "q": "q",
    "page": "page",
    "size": "size",
    "sort": "sort",
    "order": "order",
}


@click.group("series")
def series_group() -> None:
    """Find series in the index."""


@series_group.command("list")
@project_option(help_text="Project to search.")
@click.option("--dataset", multiple=True, help="Dataset (repeat for any of several).")
@click.option("--modality", multiple=True, help="Modality, e.g. CT (repeat or CT,MR).")
@click.option("--patient-id", help="Exact patient ID.")
@click.option("--patient-name", help="Words of the patient name (prefixes).")
@click.option("--body-part", multiple=True, help="Body part examined, e.g. CHEST.")
@click.option("--from", "date_from", metavar="YYYY-MM-DD", help="Study date from (included).")
@click.option("--to", "date_to", metavar="YYYY-MM-DD", help="Study date to (included).")
@click.option("--description", help="Words of the study or series description (prefixes).")
@click.option("--has-errors/--no-errors", default=None, help="Validation errors found or not.")
@click.option("--has-warnings/--no-warnings", default=None, help="Validation warnings or not.")
@click.option(
    "--validation",
    multiple=True,
    help="Validation level: none, representative or complete (repeat for any of several).",
)
@click.option("--sop-class", multiple=True, help="SOP Class UID.")
@click.option("--study-uid", help="Study Instance UID.")
@click.option("-q", "q", help="Free text: words of any keyword field (prefixes).")
@click.option("--page", default="1", show_default=True)
@click.option("--size", default="50", show_default=True)
@click.option(
    "--sort",
    default="received_at",
    show_default=True,
    help="received_at, study_date, patient_id, modality or series_uid.",
)
@click.option("--order", default="desc", show_default=True, help="asc or desc.")
@json_option("Print the result as JSON.")
@click.pass_context
def list_series(ctx: click.Context, project: str, as_json: bool, **options: Any) -> None:
    """List series matching the filters, newest first."""
    from dicomflow.cli.webapi import WebApiError, WebServiceAway, get_json

    params: dict[str, Any] = {}
    for option, value in options.items():
        if value is None or value == ():
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        params[_FILTERS[option]] = list(value) if isinstance(value, tuple) else str(value)
    settings = settings_of(ctx)
    try:
        result = get_json(settings, "/api/series", {**params, "project": project})
    except WebServiceAway:
        result = _search_here(settings, project, params)
    except WebApiError as exc:
        if exc.status == 400 and exc.parameter:
            raise click.BadParameter(str(exc), param_hint=_flag(exc.parameter)) from None
        raise CliError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"project": project, **result}, indent=2, default=str))
        return
    _print_page(project, result)


def _flag(parameter: str) -> str:
    # Option flags are the parameter names (``--from``, ``--has-errors``), except ``-q``.
    return "-q" if parameter == "q" else f"--{parameter.replace('_', '-')}"


def _search_here(settings: Settings, project: str, params: dict[str, Any]) -> dict[str, Any]:
    """The search done by this process (the web service does not answer)."""
    from dicomflow.index import open_index
    from dicomflow.index.base import QueryError, SeriesQuery

    try:
        query = SeriesQuery.from_params(params)
    except QueryError as exc:
        raise click.BadParameter(str(exc), param_hint=_flag(exc.parameter)) from None
    index = open_index(settings)
    try:
        return index.search(project, query).as_dict()
    finally:
        index.close()


def _print_page(project: str, result: dict[str, Any]) -> None:
    click.echo(
        f"{result['total']} series in {project} (page {result['page']}, size {result['size']})"
    )
    for doc in result["items"]:
        fields = (SERIES_UID, MODALITY, STUDY_DATE, PATIENT_ID, "instance_count")
        values = [str(doc.get(name, "")) for name in fields]
        values[1], values[2] = values[1].ljust(4), values[2].ljust(10)
        click.echo("  ".join([*values, str(doc.get(SERIES_DESCRIPTION, ""))]))
    for facet, counts in result["facets"].items():
        if counts:
            click.echo(f"{facet}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@series_group.command("show")
@click.argument("series_uid")
@project_option()
@json_option("Print the whole document as JSON.")
@click.pass_context
def show_series(ctx: click.Context, series_uid: str, project: str, as_json: bool) -> None:
    """Show a series: its document, its instances in the PACS, thumbnail and report locations."""
    from dicomflow.cli.webapi import WebApiError, WebServiceAway, get_json

    settings = settings_of(ctx)
    try:
        described = get_json(settings, f"/api/series/{series_uid}/summary", {"project": project})
    except WebServiceAway:
        from dicomflow.catalog import SeriesNotFoundError, describe_series

        try:
            described = describe_series(settings, series_uid, project)
        except SeriesNotFoundError as exc:
            raise CliError(str(exc)) from None
    except WebApiError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    doc = described["document"]
    validation = doc.get("validation") or {}
    rows = [
        ("series", series_uid),
        ("patient", doc.get(PATIENT_ID, "")),
        ("modality", doc.get(MODALITY, "")),
        ("description", doc.get(SERIES_DESCRIPTION, "")),
        ("study date", doc.get(STUDY_DATE, "")),
        ("projects", ", ".join(doc.get("project", []))),
        ("datasets", ", ".join(doc.get("dataset", []))),
        (
            "instances",
            f"{doc.get('instance_count')} indexed, {described['pacs']['instances']} in the PACS",
        ),
        (
            "validation",
            f"{validation.get('errors', '-')} errors, {validation.get('warnings', '-')} warnings",
        ),
        ("thumbnail", described["thumbnail"] or "none"),
        ("report", described["validation_report"] or "none"),
    ]
    for name, value in rows:
        click.echo(f"{name:12} {value}")


def _write_object(
    settings: Settings,
    fetch: Callable[[Settings, str, str], bytes],
    series_uid: str,
    project: str,
    out: str,
) -> None:
    from dicomflow.catalog import SeriesNotFoundError
    from dicomflow.storage.client import ObjectNotFoundError

    try:
        data = fetch(settings, series_uid, project)
    except (SeriesNotFoundError, ObjectNotFoundError) as exc:
        raise CliError(str(exc)) from None
    with click.open_file(out, "wb") as fh:
        fh.write(data)
    if out != "-":
        click.echo(f"wrote {len(data)} bytes to {out}", err=True)


@series_group.command("thumbnail")
@click.argument("series_uid")
@click.option("-o", "--output", "out", required=True, help="PNG file to write ('-': stdout).")
@project_option()
@click.pass_context
def thumbnail(ctx: click.Context, series_uid: str, out: str, project: str) -> None:
    """Save the thumbnail of a series."""
    from dicomflow.catalog import thumbnail_png

    _write_object(settings_of(ctx), thumbnail_png, series_uid, project, out)


@series_group.command("report")
@click.argument("series_uid")
@click.option("-o", "--output", "out", required=True, help="HTML file to write ('-': stdout).")
@project_option()
@click.pass_context
def report(ctx: click.Context, series_uid: str, out: str, project: str) -> None:
    """Save the validation report of a series."""
    from dicomflow.catalog import validation_report

    _write_object(settings_of(ctx), validation_report, series_uid, project, out)


@series_group.command("export")
@click.argument("series_uid")
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False))
@project_option()
@click.pass_context
def export(ctx: click.Context, series_uid: str, out: str, project: str) -> None:
    """Save the series' instances as the PACS holds them, one file each."""
    from dicomflow.catalog import SeriesNotFoundError, export_series
    from dicomflow.storage.client import ObjectNotFoundError

    try:
        files = export_series(settings_of(ctx), series_uid, project, Path(out))
    except (SeriesNotFoundError, ObjectNotFoundError) as exc:
        raise CliError(str(exc)) from None
    click.echo(f"wrote {len(files)} instance(s) to {out}")


def _add_delete() -> None:
    from dicomflow.cli.curation import delete_command

    series_group.add_command(delete_command("series", "SERIES_UID"))


_add_delete()

COMMANDS = [series_group]
