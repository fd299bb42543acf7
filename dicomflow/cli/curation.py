"""``dicomflow series delete``, ``study delete``, ``dataset delete``: take data out again.

Run on the platform's host, as the shell's administrator (recorded as ``cli:<user>`` in the
audit trail), like ``dicomflow project delete``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from dicomflow.cli.options import (
    CliError,
    database_errors,
    echo_report,
    json_option,
    settings_of,
    shell_actor,
)

__all__ = ["COMMANDS", "delete_command"]


def _run(
    ctx: click.Context, kind: str, project: str, target: str, yes: bool, as_json: bool
) -> None:
    from dicomflow.curation.deletion import (
        NothingToDeleteError,
        SeriesInUseError,
        delete_dataset,
        delete_series,
        delete_study,
    )
    from dicomflow.pacs.client import PacsError
    from dicomflow.platform import Platform
    from dicomflow.storage.client import ObjectStoreError

    deleters: dict[str, Callable[..., Any]] = {
        "series": delete_series,
        "study": delete_study,
        "dataset": delete_dataset,
    }
    if not yes:
        click.confirm(
            f"Delete {kind} {target} from project {project}? What no other project holds is "
            "removed from the PACS too",
            abort=True,
        )
    with database_errors(), Platform(settings_of(ctx)) as platform:
        try:
            report = deleters[kind](platform, project, target, actor=shell_actor())
        except NothingToDeleteError as exc:
            raise CliError(str(exc)) from None
        except SeriesInUseError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(3)
        except (PacsError, ObjectStoreError) as exc:
            raise CliError(f"not (fully) deleted: {exc}") from None
    echo_report(report, as_json)


def delete_command(kind: str, argument: str) -> click.Command:
    """The ``delete`` subcommand of the ``series``, ``study`` or ``dataset`` group."""

    @click.command("delete")
    @click.argument("target", metavar=argument)
    @click.option("--project", required=kind == "dataset", default=None, help="The project.")
    @click.option("--yes", is_flag=True, help="Do not ask.")
    @json_option("Print what was done as JSON.")
    @click.pass_context
    def delete(
        ctx: click.Context, target: str, project: str | None, yes: bool, as_json: bool
    ) -> None:
        _run(ctx, kind, project or "admin", target, yes, as_json)

    delete.help = (
        f"Delete {kind} {argument} from a project (default for series and studies: admin, "
        "i.e. from every project). It is gone from the project's index, mappings, thumbnails, "
        "reports and validation files; when no other project holds it, from the PACS and admin "
        "too. Refused (exit status 3) while a run or import works on it."
    )
    return delete


@click.group("study")
def study() -> None:
    """Studies (every series of a Study Instance UID)."""


@click.group("dataset")
def dataset() -> None:
    """Datasets of a project."""


study.add_command(delete_command("study", "STUDY_UID"))
dataset.add_command(delete_command("dataset", "NAME"))

COMMANDS = [study, dataset]
