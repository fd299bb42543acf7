"""``dicomflow project ...``: the projects senders address by their called AE title."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from dicomflow.cli.options import CliError, database_errors, json_option, settings_of

if TYPE_CHECKING:
    from dicomflow.config import Settings
    from dicomflow.db.projects import ProjectStore


@click.group()
def project() -> None:
    """Create and list projects (a project is the called AE title of a sender)."""


def _projects(settings: Settings) -> ProjectStore:
    from dicomflow.db.projects import ProjectStore
    from dicomflow.db.session import make_engine

    return ProjectStore(make_engine(settings.platform_db_url))


@project.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the project is for.")
@click.pass_context
def project_create(ctx: click.Context, name: str, description: str) -> None:
    """Create project NAME (at most 16 characters: lowercase letters, digits, '-')."""
    from dicomflow.db.projects import InvalidNameError

    with database_errors():
        try:
            created = _projects(settings_of(ctx)).create_project(name, description)
        except InvalidNameError as exc:
            raise CliError(str(exc)) from None
    click.echo(f"project {name} created" if created else f"project {name} already exists")


@project.command("list")
@json_option()
@click.pass_context
def project_list(ctx: click.Context, as_json: bool) -> None:
    """List the projects."""
    with database_errors():
        rows = _projects(settings_of(ctx)).all()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "description": p.description,
                        "created_at": p.created_at.isoformat(),
                        "datasets": p.datasets,
                    }
                    for p in rows
                ],
                indent=2,
            )
        )
        return
    for p in rows:
        click.echo(f"{p.name:<17} {p.datasets:>4} datasets  {p.description}")


COMMANDS = [project]
