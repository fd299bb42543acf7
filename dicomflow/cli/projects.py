"""``dicomflow project ...``: projects, their members and the DICOM senders they accept."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from dicomflow.cli.options import CliError, database_errors, json_option, settings_of, shell_actor
from dicomflow.cli.users import access_errors, access_manager

if TYPE_CHECKING:
    from dicomflow.config import Settings
    from dicomflow.db.projects import ProjectStore


@click.group()
def project() -> None:
    """Projects (a project is the called AE title of a sender), members, senders."""


def _projects(settings: Settings) -> ProjectStore:
    from dicomflow.db.projects import ProjectStore
    from dicomflow.db.session import make_engine

    return ProjectStore(make_engine(settings.platform_db_url))


@project.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the project is for.")
@click.option("--owner", help="Make this user the project's owner.")
@click.pass_context
def project_create(ctx: click.Context, name: str, description: str, owner: str | None) -> None:
    """Create project NAME (at most 16 characters: lowercase letters, digits, '-')."""
    with access_errors():
        created = access_manager(settings_of(ctx)).create_project(
            shell_actor(), name, description, owner=owner
        )
    click.echo(f"project {name} created" if created else f"project {name} already exists")
    if owner:
        click.echo(f"{owner} is owner of {name}")


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


@project.command("delete")
@click.argument("name")
@click.option(
    "--force", is_flag=True, help="Also when it holds series (their copy in it goes too)."
)
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def project_delete(ctx: click.Context, name: str, force: bool, yes: bool) -> None:
    """Delete project NAME: members, datasets, its copy of series documents, its bucket.

    The instances stay in the PACS (and in admin, with every other project that holds them).
    """
    settings = settings_of(ctx)
    manager = access_manager(settings)
    with access_errors():
        if not manager.projects.exists(name):
            raise CliError(f"project {name!r} does not exist")
        series = manager.projects.series_of(name)
    if series and not force:
        raise CliError(
            f"project {name} holds {len(series)} series: give --force to delete it with its copy "
            "of them (the instances stay in the PACS)"
        )
    if not yes:
        click.confirm(f"Delete project {name} ({len(series)} series)?", abort=True)
    from dicomflow.catalog import remove_project_data
    from dicomflow.index import open_index
    from dicomflow.storage.client import ObjectStore

    with access_errors():
        index = open_index(settings)
        try:
            removed, objects = remove_project_data(
                index, ObjectStore.from_settings(settings), name, series
            )
        finally:
            index.close()
        manager.delete_project(shell_actor(), name)
    click.echo(f"project {name} deleted ({removed} series documents, {objects} objects)")


# -- members --------------------------------------------------------------------------------


@project.group("member")
def member() -> None:
    """Who may do what in a project: owner, uploader or viewer."""


@member.command("add")
@click.argument("project_name", metavar="PROJECT")
@click.argument("user")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["owner", "uploader", "viewer"]),
    help="viewer: read; uploader: read, upload, import, STOW-RS; owner: also members, deletion.",
)
@click.pass_context
def member_add(ctx: click.Context, project_name: str, user: str, role: str) -> None:
    """Give USER ROLE in PROJECT (changes the role of a member)."""
    from dicomflow.access.policy import Role

    with access_errors():
        added = access_manager(settings_of(ctx)).set_member(
            shell_actor(), project_name, user, Role(role)
        )
    click.echo(f"{user} is {role} of {project_name}" + ("" if added else " (role changed)"))


@member.command("remove")
@click.argument("project_name", metavar="PROJECT")
@click.argument("user")
@click.pass_context
def member_remove(ctx: click.Context, project_name: str, user: str) -> None:
    """End USER's membership of PROJECT."""
    with access_errors():
        removed = access_manager(settings_of(ctx)).remove_member(shell_actor(), project_name, user)
    if not removed:
        raise CliError(f"{user} is no member of {project_name}")
    click.echo(f"{user} is no longer a member of {project_name}")


@member.command("list")
@click.argument("project_name", metavar="PROJECT")
@json_option()
@click.pass_context
def member_list(ctx: click.Context, project_name: str, as_json: bool) -> None:
    """List PROJECT's members and their roles."""
    with access_errors():
        manager = access_manager(settings_of(ctx))
        if not manager.projects.exists(project_name):
            raise CliError(f"project {project_name!r} does not exist")
        members = manager.accounts.members(project_name)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "user": m.user,
                        "role": m.role,
                        "since": m.created_at.isoformat(),
                        "disabled": m.disabled,
                    }
                    for m in members
                ],
                indent=2,
            )
        )
        return
    for m in members:
        click.echo(f"{m.user:<24} {m.role:<9}" + (" (disabled)" if m.disabled else ""))


# -- DICOM senders --------------------------------------------------------------------------


@project.group("sender")
def sender() -> None:
    """The DICOM senders a project accepts (none listed: every sender, as Kaapana does)."""


def _rule(ae: str | None, network: str | None) -> tuple[str, str]:
    if bool(ae) == bool(network):
        raise click.UsageError("give one of --ae or --network")
    if ae:
        from dicomflow.db.projects import MAX_AE_LENGTH

        value = ae.strip()
        if not value or len(value) > MAX_AE_LENGTH or "\\" in value:
            raise click.BadParameter(
                f"{ae!r}: an AE title has 1 to {MAX_AE_LENGTH} characters, no backslash",
                param_hint="--ae",
            )
        return "ae", value
    import ipaddress

    try:
        return "network", str(ipaddress.ip_network(str(network).strip(), strict=False))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--network") from None


@sender.command("add")
@click.argument("project_name", metavar="PROJECT")
@click.option("--ae", help="A calling AE title the project accepts (case does not matter).")
@click.option("--network", help="An address or network the project accepts, e.g. 10.0.0.0/8.")
@click.pass_context
def sender_add(ctx: click.Context, project_name: str, ae: str | None, network: str | None) -> None:
    """Accept associations for PROJECT from this calling AE title or network only.

    Once a project lists a sender, the receiver refuses every association for it whose calling
    AE title and address match none of its senders (and logs the peer).
    """
    from dicomflow.access.audit import AuditAction

    kind, value = _rule(ae, network)
    with access_errors():
        manager = access_manager(settings_of(ctx))
        added = manager.projects.add_sender(project_name, kind, value)
        if added:
            manager.audit.record(
                shell_actor(),
                AuditAction.SENDER_ADD,
                project=project_name,
                target=f"{kind} {value}",
            )
    click.echo(f"{project_name} accepts {kind} {value}" + ("" if added else " (already)"))
    click.echo("the receiver applies it within seconds (it reads the rules every 5 s)")


@sender.command("remove")
@click.argument("project_name", metavar="PROJECT")
@click.option("--ae", help="The calling AE title to remove.")
@click.option("--network", help="The network to remove.")
@click.pass_context
def sender_remove(
    ctx: click.Context, project_name: str, ae: str | None, network: str | None
) -> None:
    """Stop accepting a sender for PROJECT (with none left, every sender is accepted)."""
    from dicomflow.access.audit import AuditAction

    kind, value = _rule(ae, network)
    with access_errors():
        manager = access_manager(settings_of(ctx))
        if not manager.projects.remove_sender(project_name, kind, value):
            raise CliError(f"{project_name} has no sender {kind} {value}")
        manager.audit.record(
            shell_actor(), AuditAction.SENDER_REMOVE, project=project_name, target=f"{kind} {value}"
        )
    click.echo(f"{project_name} no longer lists {kind} {value}")


@sender.command("list")
@click.argument("project_name", metavar="PROJECT", required=False)
@json_option()
@click.pass_context
def sender_list(ctx: click.Context, project_name: str | None, as_json: bool) -> None:
    """List the senders each project accepts (projects without any accept every sender)."""
    with database_errors():
        rules = _projects(settings_of(ctx)).senders()
    if project_name:
        rules = {project_name: rules.get(project_name, [])}
    if as_json:
        click.echo(
            json.dumps(
                {p: [{"kind": k, "value": v} for k, v in r] for p, r in rules.items()}, indent=2
            )
        )
        return
    for name, listed in sorted(rules.items()):
        if not listed:
            click.echo(f"{name:<17} every sender")
        for kind, value in listed:
            click.echo(f"{name:<17} {kind:<8} {value}")


COMMANDS = [project]
