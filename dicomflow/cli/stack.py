"""``dicomflow up | down | status | logs``: the local stack."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import TYPE_CHECKING

import click

from dicomflow.cli.options import CliError, json_option, settings_of

if TYPE_CHECKING:
    from dicomflow.config import Settings
    from dicomflow.stack.supervisor import Stack


def _stack(settings: Settings) -> Stack:
    from dicomflow.stack.supervisor import Stack

    return Stack(settings)


@click.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Start every component of the local stack and wait until all answer.

    A supervisor stays running: it restarts any component that dies (see docs/operations.md).
    """
    from dicomflow.stack.components import StackError

    settings = settings_of(ctx)
    click.echo(f"dicomflow: starting the local stack in {settings.data_dir}")
    try:
        started = _stack(settings).up(report=click.echo, supervise=True)
    except StackError as exc:
        raise CliError(str(exc)) from None
    if not started:
        click.echo("dicomflow is already running; nothing changed.")
    first_admin = _ensure_accounts(settings)
    _print_addresses(settings, first_admin)


def _ensure_accounts(settings: Settings) -> bool:
    """Create the first administrator (and the CLI's account) if missing.

    Returns whether the first administrator's generated password still opens it (then it is
    printed).

    The web service does the same at its start; doing it here too covers a stack whose web
    service runs elsewhere (the Airflow UI needs an administrator to sign in).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from dicomflow.access.bootstrap import ensure_accounts
    from dicomflow.access.passwords import PasswordHashing
    from dicomflow.db.accounts import AccountStore
    from dicomflow.db.session import create_schema, make_engine

    engine = make_engine(settings.platform_db_url)
    try:
        create_schema(engine)
        ensure_accounts(engine, settings)
        account = AccountStore(engine).get(settings.admin_user)
        return account is not None and PasswordHashing(settings.auth).verify(
            account.password_hash, settings.admin_password
        )
    except SQLAlchemyError as exc:
        click.echo(f"warning: accounts not checked, the platform database did not answer: {exc}")
        return False
    finally:
        engine.dispose()


def _print_addresses(settings: Settings, first_admin: bool = True) -> None:
    click.echo("")
    click.echo(f"  web pages and REST API  {settings.web.base_url}")
    click.echo(f"  Airflow                 {settings.airflow.base_url}")
    rc = settings.receiver
    click.echo(f"  DICOM receiver          {rc.host}:{rc.port}  (called AE = project, e.g. admin)")
    click.echo(f"  PACS (DICOMweb)         {settings.pacs.base_url}")
    admin = f"{settings.admin_user} / {settings.admin_password}"
    if first_admin:
        click.echo(f"  first administrator     {admin}")
        click.echo(f"  (kept in {settings.secrets_file}, readable by you only; change it with")
        click.echo(f"   `dicomflow user set-password {settings.admin_user}`)")
    else:
        click.echo("  sign in                 with your account (`dicomflow user list`)")


@click.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop what `up` started, and only that."""
    stopped = _stack(settings_of(ctx)).down(report=click.echo)
    click.echo("dicomflow stopped." if stopped else "dicomflow was not running.")


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m"


@click.command()
@json_option("Print JSON: the supervisor, and state, pid, uptime, restarts per component.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the supervisor and each component; exit 0 only if all run and answer."""
    from dicomflow.stack.control import supervisor_record

    settings = settings_of(ctx)
    rows = _stack(settings).status()
    record = supervisor_record(settings)
    supervisor = {
        "state": "running" if record else "stopped",
        "pid": record.pid if record else None,
        "uptime_seconds": None
        if record is None or (up_s := record.running_seconds()) is None
        else round(up_s, 1),
    }
    if as_json:
        click.echo(
            json.dumps(
                {"supervisor": supervisor, "components": [r.as_dict() for r in rows]}, indent=2
            )
        )
    else:
        click.echo(f"{'NAME':<22} {'STATE':<10} {'PID':>8} {'UPTIME':>7} {'RESTARTS':>8}  ADDRESS")
        pid = str(supervisor["pid"] or "-")
        uptime = _uptime(record.running_seconds() if record else None)
        click.echo(f"{'supervisor':<22} {supervisor['state']:<10} {pid:>8} {uptime:>7} {'-':>8}")
        for row in rows:
            pid = str(row.pid) if row.pid else "-"
            click.echo(
                f"{row.name:<22} {row.state.value:<10} {pid:>8} {_uptime(row.uptime):>7} "
                f"{row.restarts:>8}  {row.address}"
            )
            if row.last_exit and row.restarts:
                click.echo(f"{'':<22} last exit: {row.last_exit}")
            if row.note:
                click.echo(f"{'':<22} {row.note}")
    if record is None or any(r.state.value != "healthy" for r in rows):
        sys.exit(1)


@click.command()
@click.argument("component")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many last lines to show.")
@click.pass_context
def logs(ctx: click.Context, component: str, follow: bool, lines: int) -> None:
    """Print the log of COMPONENT (see `dicomflow status` for the names; also: supervisor)."""
    from dicomflow.stack import control
    from dicomflow.stack.components import StackError

    settings = settings_of(ctx)
    if component == control.NAME:
        log_file = control.log_file(settings)
    else:
        try:
            log_file = _stack(settings).component(component).log_file
        except StackError as exc:
            raise CliError(f"{exc}, supervisor") from None
    if not log_file.exists():
        raise CliError(f"{component} has no log yet ({log_file})")
    cmd = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(log_file)]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(cmd, check=False)


COMMANDS = [up, down, status, logs]
