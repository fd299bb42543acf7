"""``dicomflow user ...``: accounts of the platform (an administrator's shell on its host)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from dicomflow.cli.options import (
    CliError,
    database_errors,
    json_option,
    password_options,
    read_password,
    settings_of,
    shell_actor,
)

if TYPE_CHECKING:
    from dicomflow.access.manage import AccessManager
    from dicomflow.config import Settings


def access_manager(settings: Settings) -> AccessManager:
    """The account manager on the platform database."""
    from dicomflow.access.manage import AccessManager
    from dicomflow.db.session import create_schema, make_engine

    engine = make_engine(settings.platform_db_url)
    create_schema(engine)  # the tables of a platform set up by an older version
    return AccessManager(engine, settings.auth)


@contextmanager
def access_errors() -> Iterator[None]:
    """Turn refused changes and an unreachable database into one-line errors."""
    from dicomflow.access.manage import AccessRuleError
    from dicomflow.access.passwords import WeakPasswordError
    from dicomflow.db.accounts import InvalidUserNameError, UnknownUserError
    from dicomflow.db.credentials import UnknownTokenError
    from dicomflow.db.projects import InvalidNameError, UnknownProjectError

    with database_errors():
        try:
            yield
        except (
            AccessRuleError,
            WeakPasswordError,
            InvalidUserNameError,
            UnknownUserError,
            UnknownTokenError,
            InvalidNameError,
            UnknownProjectError,
        ) as exc:
            raise CliError(str(exc)) from None


@click.group("user")
def user_group() -> None:
    """Accounts: who signs in to the pages, the REST API, STOW-RS and (administrators) Airflow."""


@user_group.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="A platform administrator (users, every project).")
@password_options()
@click.pass_context
def user_create(
    ctx: click.Context, name: str, admin: bool, password_stdin: bool, generate: bool
) -> None:
    """Create account NAME (give it roles with `dicomflow project member add`)."""
    password, generated = read_password(password_stdin, generate)
    with access_errors():
        created = access_manager(settings_of(ctx)).create_user(
            shell_actor(), name, password, admin=admin
        )
    if not created:
        raise CliError(f"user {name!r} exists already (`dicomflow user set-password {name}`)")
    click.echo(f"user {name} created" + (" (administrator)" if admin else ""))
    if generated:
        click.echo(f"password: {password}")


@user_group.command("list")
@json_option()
@click.pass_context
def user_list(ctx: click.Context, as_json: bool) -> None:
    """List the accounts with their roles."""
    with access_errors():
        accounts = access_manager(settings_of(ctx)).accounts.all()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": a.name,
                        "admin": a.is_admin,
                        "disabled": a.disabled,
                        "password": a.password_hash is not None,
                        "created_at": a.created_at.isoformat(),
                        "roles": dict(a.roles),
                    }
                    for a in accounts
                ],
                indent=2,
            )
        )
        return
    for a in accounts:
        state = "disabled" if a.disabled else ("tokens only" if not a.password_hash else "active")
        roles = ", ".join(f"{p}:{r}" for p, r in sorted(a.roles.items()))
        admin = "administrator" if a.is_admin else "-"
        click.echo(f"{a.name:<24} {admin:<14} {state:<12} {roles}")


@user_group.command("set-password")
@click.argument("name")
@password_options()
@click.pass_context
def user_set_password(ctx: click.Context, name: str, password_stdin: bool, generate: bool) -> None:
    """Give NAME a new password (its browser sessions end)."""
    password, generated = read_password(password_stdin, generate)
    with access_errors():
        access_manager(settings_of(ctx)).set_password(shell_actor(), name, password)
    click.echo(f"new password for {name}; their sessions ended")
    if generated:
        click.echo(f"password: {password}")


@user_group.command("disable")
@click.argument("name")
@click.pass_context
def user_disable(ctx: click.Context, name: str) -> None:
    """Disable NAME: no sign-in, its sessions end and its tokens stop (history kept)."""
    with access_errors():
        access_manager(settings_of(ctx)).set_disabled(shell_actor(), name, True)
    click.echo(f"user {name} disabled")


@user_group.command("enable")
@click.argument("name")
@click.pass_context
def user_enable(ctx: click.Context, name: str) -> None:
    """Enable NAME again."""
    with access_errors():
        access_manager(settings_of(ctx)).set_disabled(shell_actor(), name, False)
    click.echo(f"user {name} enabled")


@user_group.command("admin")
@click.argument("name")
@click.option("--remove", is_flag=True, help="Take the administrator role away.")
@click.pass_context
def user_admin(ctx: click.Context, name: str, remove: bool) -> None:
    """Make NAME a platform administrator (or, with --remove, no longer one)."""
    with access_errors():
        access_manager(settings_of(ctx)).set_admin(shell_actor(), name, not remove)
    click.echo(f"user {name} is {'no longer' if remove else 'now'} an administrator")


@user_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def user_delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete NAME with its memberships, sessions and tokens (the audit trail keeps its name)."""
    if not yes:
        click.confirm(f"Delete user {name}?", abort=True)
    with access_errors():
        access_manager(settings_of(ctx)).delete_user(shell_actor(), name)
    click.echo(f"user {name} deleted")


COMMANDS = [user_group]
