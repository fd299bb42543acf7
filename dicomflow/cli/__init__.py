"""The ``dicomflow`` command: one module per command group.

Modules here import only :mod:`click` (and this package) at module level; everything a command
needs is imported inside it, so ``dicomflow --help`` and the light commands start fast
(``python -X importtime -m dicomflow.cli --help``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from dicomflow.cli.options import load_context_settings

__all__ = ["main"]

#: Each command and the module of this package that defines it (in its ``COMMANDS``), in the
#: order ``--help`` lists them. A command's module is imported when the command runs: scripts
#: call ``status`` and ``series show`` in loops, and importing every group cost some 60 ms.
COMMAND_MODULES: dict[str, str] = {
    "up": "stack",
    "down": "stack",
    "status": "stack",
    "logs": "stack",
    "worker": "stack",
    "receiver": "stack",
    "user": "users",
    "project": "projects",
    "token": "tokens",
    "audit": "audit",
    "batches": "batches",
    "activity": "activity",
    "problems": "problems",
    "series": "series",
    "study": "curation",
    "dataset": "curation",
    "index": "index",
    "dashboards": "index",
    "import": "imports",
    "import-nifti": "imports",
    "config": "config",
}


class LazyGroup(click.Group):
    """A group whose commands are imported from :data:`COMMAND_MODULES` when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"dicomflow.cli.{module_name}")
        for command in module.COMMANDS:
            if command.name == cmd_name:
                return command
        raise LookupError(f"dicomflow.cli.{module_name} defines no command {cmd_name!r}")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration file (default: $DICOMFLOW_CONFIG, else ./dicomflow.yaml if present).",
)
@click.pass_context
def main(ctx: click.Context, config_file: Path | None) -> None:
    """dicomflow: receive DICOM, archive it in a PACS, index it and prepare it for research."""
    ctx.meta["config_file"] = config_file
    # `config docs` needs no settings; every other command loads them once, here, and reads
    # them from ctx.obj.
    if ctx.invoked_subcommand not in ("config",):
        load_context_settings(ctx)
