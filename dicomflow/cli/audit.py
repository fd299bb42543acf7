"""``dicomflow audit``: who did what, when, from where (the platform database's trail)."""

from __future__ import annotations

import json

import click

from dicomflow.cli.options import database_errors, json_option, settings_of


@click.command("audit")
@click.option("--user", help="Only what this user did (or tried).")
@click.option("--project", help="Only events about this project.")
@click.option("--since", help="ISO date/time (UTC unless given) or a duration: 30m, 12h, 7d.")
@click.option("--action", help="Only this action, e.g. sign-in, upload, member-set.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100000))
@json_option()
@click.pass_context
def audit(
    ctx: click.Context,
    user: str | None,
    project: str | None,
    since: str | None,
    action: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the audit trail, newest first."""
    from dicomflow.access.audit import parse_since
    from dicomflow.db.audit import AuditStore
    from dicomflow.db.session import create_schema, make_engine

    try:
        when = parse_since(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    settings = settings_of(ctx)
    with database_errors():
        engine = make_engine(settings.platform_db_url)
        create_schema(engine)
        events = AuditStore(engine).query(
            actor=user, project=project, since=when, action=action, limit=limit
        )
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in events], indent=2))
        return
    if not events:
        click.echo("no events match", err=True)
    for e in events:
        where = f" [{e.project}]" if e.project else ""
        click.echo(
            f"{e.at.isoformat(timespec='seconds')}  {e.actor:<20} {e.action:<14} {e.outcome:<7}"
            f"{where} {e.target} {e.detail} {('from ' + e.address) if e.address else ''}".rstrip()
        )


COMMANDS = [audit]
