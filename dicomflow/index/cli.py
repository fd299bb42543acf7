"""``dicomflow series ...`` searches the index from the shell; ``dicomflow index ...`` maintains it.

The groups expect the platform :class:`~dicomflow.config.Settings` in ``ctx.obj`` (the main
command loads them once and passes them down).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from dicomflow.cli_output import echo_report
from dicomflow.config import Settings
from dicomflow.db.projects import ADMIN_PROJECT
from dicomflow.index import open_index
from dicomflow.index.base import (
    MODALITY,
    PATIENT_ID,
    SERIES_DESCRIPTION,
    SERIES_UID,
    STUDY_DATE,
    QueryError,
    SeriesQuery,
)

# Option name -> query parameter name.
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
    "sop_class": "sop_class",
    "study_uid": "study_uid",
    "q": "q",
    "page": "page",
    "size": "size",
    "sort": "sort",
    "order": "order",
}


def _settings(ctx: click.Context) -> Settings:
    if not isinstance(ctx.obj, Settings):
        raise click.UsageError("no settings loaded (run through the dicomflow command)")
    return ctx.obj


@click.group("series")
def series_group() -> None:
    """Find series in the index."""


@series_group.command("list")
@click.option("--project", default=ADMIN_PROJECT, show_default=True, help="Project to search.")
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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def list_series(ctx: click.Context, project: str, as_json: bool, **options: Any) -> None:
    """List series matching the filters, newest first."""
    params: dict[str, Any] = {}
    for option, value in options.items():
        if value is None or value == ():
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        params[_FILTERS[option]] = list(value) if isinstance(value, tuple) else str(value)
    try:
        query = SeriesQuery.from_params(params)
    except QueryError as exc:
        # Option flags are the parameter names (``--from``, ``--has-errors``), except ``-q``.
        hint = "-q" if exc.parameter == "q" else f"--{exc.parameter.replace('_', '-')}"
        raise click.BadParameter(str(exc), param_hint=hint) from None
    index = open_index(_settings(ctx))
    try:
        result = index.search(project, query)
    finally:
        index.close()
    if as_json:
        click.echo(json.dumps({"project": project, **result.as_dict()}, indent=2, default=str))
        return
    click.echo(f"{result.total} series in {project} (page {result.page}, size {result.size})")
    for doc in result.items:
        click.echo(
            "  ".join(
                [
                    str(doc.get(SERIES_UID, "")),
                    str(doc.get(MODALITY, "")).ljust(4),
                    str(doc.get(STUDY_DATE, "")).ljust(10),
                    str(doc.get(PATIENT_ID, "")),
                    str(doc.get("instance_count", "")),
                    str(doc.get(SERIES_DESCRIPTION, "")),
                ]
            )
        )
    for facet, counts in result.facets.items():
        if counts:
            click.echo(f"{facet}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@series_group.command("show")
@click.argument("series_uid")
@click.option("--project", default=ADMIN_PROJECT, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the whole document as JSON.")
@click.pass_context
def show_series(ctx: click.Context, series_uid: str, project: str, as_json: bool) -> None:
    """Show a series: its document, its instances in the PACS, thumbnail and report locations."""
    from dicomflow.catalog import SeriesNotFoundError, describe_series

    try:
        described = describe_series(_settings(ctx), series_uid, project)
    except SeriesNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
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


def _write_object(ctx: click.Context, fetch: Any, series_uid: str, project: str, out: str) -> None:
    from dicomflow.catalog import SeriesNotFoundError
    from dicomflow.storage.client import ObjectNotFoundError

    try:
        data = fetch(_settings(ctx), series_uid, project)
    except (SeriesNotFoundError, ObjectNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    with click.open_file(out, "wb") as fh:
        fh.write(data)
    if out != "-":
        click.echo(f"wrote {len(data)} bytes to {out}", err=True)


@series_group.command("thumbnail")
@click.argument("series_uid")
@click.option("-o", "--output", "out", required=True, help="PNG file to write ('-': stdout).")
@click.option("--project", default=ADMIN_PROJECT, show_default=True)
@click.pass_context
def thumbnail(ctx: click.Context, series_uid: str, out: str, project: str) -> None:
    """Save the thumbnail of a series."""
    from dicomflow.catalog import thumbnail_png

    _write_object(ctx, thumbnail_png, series_uid, project, out)


@series_group.command("report")
@click.argument("series_uid")
@click.option("-o", "--output", "out", required=True, help="HTML file to write ('-': stdout).")
@click.option("--project", default=ADMIN_PROJECT, show_default=True)
@click.pass_context
def report(ctx: click.Context, series_uid: str, out: str, project: str) -> None:
    """Save the validation report of a series."""
    from dicomflow.catalog import validation_report

    _write_object(ctx, validation_report, series_uid, project, out)


@series_group.command("export")
@click.argument("series_uid")
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False))
@click.option("--project", default=ADMIN_PROJECT, show_default=True)
@click.pass_context
def export(ctx: click.Context, series_uid: str, out: str, project: str) -> None:
    """Save the series' instances as the PACS holds them, one file each."""
    from pathlib import Path

    from dicomflow.catalog import SeriesNotFoundError, export_series
    from dicomflow.storage.client import ObjectNotFoundError

    try:
        files = export_series(_settings(ctx), series_uid, project, Path(out))
    except (SeriesNotFoundError, ObjectNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {len(files)} instance(s) to {out}")


@click.group("index")
def index_group() -> None:
    """Maintain the series index."""


class _RebuildBar:
    """A click progress bar over the series of a rebuild (on stderr, so stdout stays clean)."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int) -> None:
        self._bar = click.progressbar(
            length=max(total, 1), label="rebuilding", file=sys.stderr, show_pos=True
        )
        self._bar.__enter__()

    def advance(self, series_uid: str) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@index_group.command("rebuild")
@click.option(
    "--project",
    default=None,
    help="Only the series of this project (default: every series). Each is rewritten in all "
    "of its projects.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def rebuild(ctx: click.Context, project: str | None, as_json: bool, no_progress: bool) -> None:
    """Rebuild series documents from the PACS and the platform database.

    For a new index backend or a lost index: every series the platform database maps is read
    back from the PACS (headers only) and indexed again with its projects, datasets,
    thumbnail and validation report. Exits 1 when a series could not be rebuilt.
    """
    from dicomflow.db.projects import ProjectStore
    from dicomflow.db.session import make_engine
    from dicomflow.index.rebuild import rebuild_index
    from dicomflow.pacs.client import PacsUnavailableError

    settings = _settings(ctx)
    if project is not None and project != ADMIN_PROJECT:
        engine = make_engine(settings.platform_db_url)
        try:
            known = ProjectStore(engine).exists(project)
        finally:
            engine.dispose()
        if not known:
            raise click.BadParameter(f"project {project!r} does not exist", param_hint="--project")
    bar = None if no_progress or as_json else _RebuildBar()
    try:
        report = rebuild_index(settings, project, progress=bar)
    except PacsUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    echo_report(report, as_json)
    if not report.ok:
        sys.exit(1)
