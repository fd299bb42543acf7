"""``dicomflow batches``: list the spool's batches (the lead registers this command)."""

from __future__ import annotations

import json

import click

from dicomflow.config import Settings
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool


@click.command("batches")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in BatchState]),
    help="Only batches in this state (repeatable).",
)
@click.pass_obj
def batches(settings: Settings, as_json: bool, states: tuple[str, ...]) -> None:
    """List received batches: state, project, dataset, instances, bytes."""
    spool = Spool.from_settings(settings)
    records = spool.batches([BatchState(s) for s in states] if states else None)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    if not records:
        click.echo(f"no batches in {spool.batches_dir}")
        return
    header = (
        f"{'id':28} {'state':9} {'project':16} {'dataset':16} {'inst':>6} {'bytes':>12}  closed"
    )
    click.echo(header)
    for r in records:
        click.echo(
            f"{r.id:28} {r.state.value:9} {r.project:16} {r.dataset:16} {r.instances:6d} "
            f"{r.bytes:12d}  {r.close_reason or '-'}"
        )
