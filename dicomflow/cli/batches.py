"""``dicomflow batches``: what the doors received, batch by batch, and where each stands."""

from __future__ import annotations

import json

import click

from dicomflow.cli.options import CliError, json_option, settings_of
from dicomflow.spool.records import BatchState


@click.group("batches", invoke_without_command=True)
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
    """List received batches: state, project, dataset, instances; why a failed one failed."""
    if ctx.invoked_subcommand is not None:
        return
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
        if r.state is BatchState.FAILED:
            click.echo(f"{'':28} failed in {r.failed_step}: {r.failure} (retries: {r.retries})")


@batches.command("retry")
@click.argument("batch_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Every failed batch.")
@click.pass_context
def retry(ctx: click.Context, batch_ids: tuple[str, ...], all_failed: bool) -> None:
    """Run failed batches again from the step that failed (their runs keep their ids)."""
    from dicomflow.airflow_api.client import AirflowError
    from dicomflow.pipeline.dispatcher import INCOMING_DAG_ID
    from dicomflow.pipeline.failures import retry_batch
    from dicomflow.platform import Platform
    from dicomflow.spool.store import UnknownBatchError

    if not batch_ids and not all_failed:
        raise click.UsageError("name the batches to retry, or give --all-failed")
    with Platform(settings_of(ctx)) as platform:
        chosen = list(batch_ids)
        if all_failed:
            chosen += [r.id for r in platform.spool.failed()]
        if not chosen:
            click.echo("no failed batches")
            return
        problems = 0
        for batch_id in dict.fromkeys(chosen):
            try:
                steps = retry_batch(platform, batch_id, INCOMING_DAG_ID)
            except (UnknownBatchError, ValueError) as exc:
                click.echo(f"{batch_id}: {exc}", err=True)
                problems += 1
                continue
            except AirflowError as exc:
                raise CliError(f"{batch_id}: not retried: {exc}") from None
            click.echo(f"{batch_id}: running again from {', '.join(steps) or 'its failed step'}")
    if problems:
        ctx.exit(1)


COMMANDS = [batches]
