"""The ``dicomflow`` command: one module per command group.

Modules here import only :mod:`click` (and this package) at module level; everything a command
needs is imported inside it, so ``dicomflow --help`` and the light commands start fast
(``python -X importtime -m dicomflow.cli --help``).
"""

from __future__ import annotations

from pathlib import Path

import click

from dicomflow.cli import (
    audit,
    batches,
    config,
    imports,
    index,
    projects,
    series,
    stack,
    tokens,
    users,
)
from dicomflow.cli.options import load_context_settings

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


for _module in (stack, users, projects, tokens, audit, batches, series, index, imports, config):
    for _command in _module.COMMANDS:
        main.add_command(_command)
