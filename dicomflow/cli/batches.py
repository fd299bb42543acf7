"""``dicomflow batches``: what the doors received, batch by batch, and where each stands."""

from __future__ import annotations

import json

import click

from dicomflow.cli.options import json_option, settings_of
from dicomflow.spool.records import BatchState


@click.command("batches")
@json_option("One JSON document instead of a table.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in BatchState]),
    help="Only batches in this state (repeatable).",
)
@click.pass_context
def batches(ctx: click.Context, as_json: bool, states: tuple[str, ...]) -> None:
    """List received batches: state, project, dataset, instances, bytes."""
    from dicomflow.spool.store import Spool

    spool = Spool.from_settings(settings_of(ctx))
    records = spool.batches([BatchState(s) for s in states] if states else None)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    if not records:
        click.echo(f"no batches in {spool.batches_dir}")
        return
    click.echo(
        f"{'id':28} {'state':9} {'project':16} {'dataset':16} {'inst':>6} {'bytes':>12}  closed"
    )
    for r in records:
        click.echo(
            f"{r.id:28} {r.state.value:9} {r.project:16} {r.dataset:16} {r.instances:6d} "
            f"{r.bytes:12d}  {r.close_reason or '-'}"
        )


COMMANDS = [batches]
