"""``dicomflow activity``: every batch, import and watched-folder pass, newest first."""

from __future__ import annotations

import json

import click

from dicomflow.cli.options import database_errors, json_option, settings_of

STATES = ("receiving", "queued", "processing", "done", "failed")


@click.command("activity")
@click.option("--project", help="Only this project's activity.")
@click.option("--state", type=click.Choice(STATES), help="Only items in this state.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@json_option("One JSON document: the items and the running/failed counts.")
@click.pass_context
def activity_command(
    ctx: click.Context, project: str | None, state: str | None, limit: int, as_json: bool
) -> None:
    """What came in and what became of it: state (a failure with its step and message),
    counts, duration, rate, series, Airflow run."""
    from dicomflow.curation.activity import activity, badge
    from dicomflow.db.audit import AuditStore
    from dicomflow.db.session import make_engine
    from dicomflow.spool.store import Spool
    from dicomflow.storage.client import ObjectStore

    settings = settings_of(ctx)
    with database_errors():
        items = activity(
            settings,
            Spool.from_settings(settings),
            AuditStore(make_engine(settings.platform_db_url)),
            ObjectStore.from_settings(settings),
            [project] if project else None,
            limit=1000,
        )
    counts = badge(items)
    chosen = [i for i in items if state is None or i.state == state][:limit]
    if as_json:
        click.echo(json.dumps({"items": [i.as_dict() for i in chosen], "counts": counts}, indent=2))
        return
    click.echo(f"{counts['running']} running, {counts['failed']} failed")
    for i in chosen:
        rate = (
            f"{i.instances_per_second}/s {i.mb_per_second} MB/s" if i.instances_per_second else "-"
        )
        click.echo(
            f"{i.started_at[:19]} {i.state:10} {i.kind:13} {i.project}/{i.dataset} "
            f"found {i.found} imported {i.imported} ignored {i.ignored} failed {i.failed} "
            f"{i.seconds if i.seconds is not None else '-'} s {rate}  {i.who}  {i.id}"
        )
        if i.state == "failed" and i.message:
            click.echo(f"{'':20}failed in {i.step}: {i.message}")
        if i.run_url:
            click.echo(f"{'':20}run: {i.run_url}")


COMMANDS = [activity_command]
