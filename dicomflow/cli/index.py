"""``dicomflow index ...`` and ``dicomflow dashboards ...``: maintain the series index."""

from __future__ import annotations

import sys

import click

from dicomflow.cli.options import (
    CliError,
    ProgressBar,
    echo_report,
    json_option,
    no_progress_option,
    settings_of,
)


@click.group("index")
def index_group() -> None:
    """Maintain the series index."""


@index_group.command("rebuild")
@click.option(
    "--project",
    default=None,
    help="Only the series of this project (default: every series). Each is rewritten in all "
    "of its projects.",
)
@json_option("Print the report as JSON.")
@no_progress_option()
@click.pass_context
def rebuild(ctx: click.Context, project: str | None, as_json: bool, no_progress: bool) -> None:
    """Rebuild series documents from the PACS and the platform database.

    For a new index backend or a lost index: every series the platform database maps is read
    back from the PACS (headers only) and indexed again with its projects, datasets,
    thumbnail and validation report. Exits 1 when a series could not be rebuilt.
    """
    from dicomflow.db.projects import ADMIN_PROJECT, ProjectStore
    from dicomflow.db.session import make_engine
    from dicomflow.pacs.client import PacsUnavailableError
    from dicomflow.pipeline.rebuild import rebuild_index

    settings = settings_of(ctx)
    if project is not None and project != ADMIN_PROJECT:
        engine = make_engine(settings.platform_db_url)
        try:
            known = ProjectStore(engine).exists(project)
        finally:
            engine.dispose()
        if not known:
            raise click.BadParameter(f"project {project!r} does not exist", param_hint="--project")
    bar = None if no_progress or as_json else ProgressBar("rebuilding", show_pos=True)
    try:
        report = rebuild_index(settings, project, progress=bar)
    except PacsUnavailableError as exc:
        raise CliError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    echo_report(report, as_json)
    if not report.ok:
        sys.exit(1)


@click.group()
def dashboards() -> None:
    """OpenSearch Dashboards: the saved objects that chart the index."""


@dashboards.command("import")
@click.option("--url", default=None, help="Dashboards URL (default: index.dashboards_url).")
@click.pass_context
def dashboards_import(ctx: click.Context, url: str | None) -> None:
    """Load the index pattern, visualizations and dashboard in config/opensearch/."""
    from dicomflow.index.dashboards import DashboardsError, import_dashboards

    settings = settings_of(ctx)
    target = url or settings.index.dashboards_url
    if not target:
        raise CliError(
            "no Dashboards URL: pass --url or set index.dashboards_url "
            "(DICOMFLOW_INDEX__DASHBOARDS_URL)"
        )
    idx = settings.index
    try:
        count = import_dashboards(
            target,
            idx.opensearch_username,
            idx.opensearch_password,
            verify=idx.opensearch_verify_certs,
        )
    except DashboardsError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"imported {count} saved objects into {target}")


COMMANDS = [index_group, dashboards]
