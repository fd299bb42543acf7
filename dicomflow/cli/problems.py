"""``dicomflow problems``: the refused instances and files the doors kept, with their reasons."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from dicomflow.cli.options import CliError, database_errors, json_option, settings_of, shell_actor

if TYPE_CHECKING:
    from dicomflow.config import Settings
    from dicomflow.intake.problems import ProblemArea


def _area(settings: Settings) -> ProblemArea:
    from dicomflow.db.projects import ProjectStore
    from dicomflow.db.session import make_engine
    from dicomflow.intake.admission import KNOWN_PROJECTS_FILE, Admission
    from dicomflow.intake.problems import ProblemArea
    from dicomflow.spool.store import Spool

    spool = Spool.from_settings(settings)
    projects = ProjectStore(make_engine(settings.platform_db_url))
    return ProblemArea(spool, Admission(projects, spool.root / KNOWN_PROJECTS_FILE))


def _audit(settings: Settings, action: str, project: str, target: str, detail: str) -> None:
    from dicomflow.access.audit import Audit, AuditAction
    from dicomflow.db.audit import AuditStore
    from dicomflow.db.session import make_engine

    Audit(AuditStore(make_engine(settings.platform_db_url))).record(
        shell_actor(), AuditAction(action), project=project or None, target=target, detail=detail
    )


@click.group("problems", invoke_without_command=True)
@click.pass_context
def problems(ctx: click.Context) -> None:
    """What the doors refused and kept, with the reason: list, show, retry, delete."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_problems)


@problems.command("list")
@click.option("--project", help="Only problems of this project.")
@json_option("One JSON document instead of a table.")
@click.pass_context
def list_problems(ctx: click.Context, project: str | None = None, as_json: bool = False) -> None:
    """List kept problems, oldest first: id, time, project, door, sender, reason."""
    from dicomflow.intake.problems import problem_as_dict

    area = _area(settings_of(ctx))
    records = area.list(project)
    if as_json:
        click.echo(json.dumps([problem_as_dict(r) for r in records], indent=2))
        return
    if not records:
        click.echo(f"no problems in {area.spool.problems_dir}")
        return
    click.echo(f"{'id':40} {'received':24} {'project':16} {'door':8} reason")
    for r in records:
        click.echo(
            f"{r.id:40} {r.received_at:24} {r.project or '-':16} {r.origin.door.value:8} {r.reason}"
        )


@problems.command("show")
@click.argument("problem_id")
@json_option("Print it as JSON.")
@click.pass_context
def show_problem(ctx: click.Context, problem_id: str, as_json: bool) -> None:
    """Show one problem: why, when, from whom, where its file is."""
    from dicomflow.intake.problems import UnknownProblemError, problem_as_dict

    try:
        data = problem_as_dict(_area(settings_of(ctx)).get(problem_id))
    except UnknownProblemError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    origin = data["origin"]
    rows = [
        ("id", data["id"]),
        ("reason", data["reason"]),
        ("received", data["received_at"]),
        ("project", data["project"] or "-"),
        ("door", origin["door"]),
        (
            "sender",
            f"{origin['peer']} (calling {origin['calling_ae'] or '-'}, "
            f"called {origin['called_ae'] or '-'})",
        ),
        ("file", f"{data['file']} ({data['bytes']} bytes)"),
    ]
    rows += [(f"  {k}", str(v)) for k, v in data["details"].items()]
    for name, value in rows:
        click.echo(f"{name:10} {value}")


def _chosen(
    ctx: click.Context, ids: tuple[str, ...], every: bool, project: str | None
) -> list[str]:
    if not ids and not every:
        raise click.UsageError("name the problems, or give --all")
    chosen = list(ids)
    if every:
        chosen += [r.id for r in _area(settings_of(ctx)).list(project)]
    return list(dict.fromkeys(chosen))


@problems.command("retry")
@click.argument("problem_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every kept problem (of --project).")
@click.option("--project", help="Send them to this project (default: where each was sent).")
@click.option("--dataset", help="Into this dataset (default: the one each sender named).")
@click.pass_context
def retry_problems(
    ctx: click.Context,
    problem_ids: tuple[str, ...],
    every: bool,
    project: str | None,
    dataset: str | None,
) -> None:
    """Put kept files through intake again; those accepted leave the problem area.

    Exit status 1 when any is still refused (it stays, with its first reason).
    """
    from dicomflow.intake.problems import UnknownProblemError

    settings = settings_of(ctx)
    area = _area(settings)
    refused = 0
    with database_errors():
        for problem_id in _chosen(ctx, problem_ids, every, None):
            try:
                outcome = area.retry(problem_id, project=project, dataset=dataset)
            except UnknownProblemError as exc:
                click.echo(str(exc), err=True)
                refused += 1
                continue
            click.echo(f"{problem_id}: {outcome.message}", err=not outcome.accepted)
            refused += not outcome.accepted
            if outcome.accepted:
                _audit(settings, "problem-retry", project or "", problem_id, outcome.message)
    if refused:
        ctx.exit(1)


@problems.command("delete")
@click.argument("problem_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every kept problem (of --project).")
@click.option("--project", help="With --all: only this project's problems.")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def delete_problems(
    ctx: click.Context, problem_ids: tuple[str, ...], every: bool, project: str | None, yes: bool
) -> None:
    """Remove kept problems and their files for good."""
    from dicomflow.intake.problems import UnknownProblemError

    settings = settings_of(ctx)
    area = _area(settings)
    chosen = _chosen(ctx, problem_ids, every, project)
    if not chosen:
        click.echo("no problems")
        return
    if not yes:
        click.confirm(f"Delete {len(chosen)} problem(s) and their files?", abort=True)
    missing = 0
    with database_errors():
        for problem_id in chosen:
            try:
                record = area.delete(problem_id)
            except UnknownProblemError as exc:
                click.echo(str(exc), err=True)
                missing += 1
                continue
            _audit(settings, "problem-delete", record.project, problem_id, record.reason)
            click.echo(f"{problem_id}: deleted")
    if missing:
        ctx.exit(1)


COMMANDS = [problems]
