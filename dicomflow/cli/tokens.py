"""``dicomflow token ...``: personal API tokens (shown once, stored as a hash)."""

from __future__ import annotations

import json
from typing import Any

import click

from dicomflow.cli.options import CliError, json_option, settings_of, shell_actor
from dicomflow.cli.users import access_errors, access_manager


@click.group("token")
def token_group() -> None:
    """Personal API tokens for scripts and STOW-RS clients (Authorization: Bearer TOKEN)."""


@token_group.command("create")
@click.argument("user")
@click.option("--name", required=True, help="What the token is for (shown in lists).")
@click.option("--expires-days", type=float, help="Lifetime in days (default: until revoked).")
@click.pass_context
def token_create(ctx: click.Context, user: str, name: str, expires_days: float | None) -> None:
    """Create a token acting as USER; it is printed once and never shown again."""
    with access_errors():
        token = access_manager(settings_of(ctx)).create_token(
            shell_actor(), user, name, expires_days=expires_days
        )
    click.echo(
        f"token {token.info.id} of {user} ({name}); copy it now, it is not shown again:", err=True
    )
    click.echo(token.secret)


@token_group.command("list")
@click.option("--user", help="Only this user's tokens.")
@json_option()
@click.pass_context
def token_list(ctx: click.Context, user: str | None, as_json: bool) -> None:
    """List tokens (their first characters, never the tokens)."""
    with access_errors():
        tokens = access_manager(settings_of(ctx)).credentials.tokens(user)
    rows: list[dict[str, Any]] = [
        {
            "id": t.id,
            "user": t.user,
            "name": t.name,
            "prefix": t.prefix,
            "created_at": t.created_at.isoformat(),
            "expires_at": t.expires_at.isoformat() if t.expires_at else None,
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "state": "active" if t.active else ("revoked" if t.revoked_at else "expired"),
        }
        for t in tokens
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        used = (r["last_used_at"] or "never used")[:16]
        click.echo(
            f"{r['id']:>5}  {r['user']:<20} {r['prefix']}...  {r['state']:<8} {used:<16}  "
            f"{r['name']}"
        )


@token_group.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke token TOKEN_ID (from `dicomflow token list`): it stops working at once."""
    with access_errors():
        revoked = access_manager(settings_of(ctx)).revoke_token(shell_actor(), token_id)
    if not revoked:
        raise CliError(f"token {token_id} was revoked before")
    click.echo(f"token {token_id} revoked")


COMMANDS = [token_group]
