"""Output the command groups share: the main ``dicomflow`` command and the groups it adds.

A module of its own because :mod:`dicomflow.cli` imports the groups (e.g.
:mod:`dicomflow.index.cli`), so they cannot import from it.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import click

__all__ = ["PrintableReport", "echo_report"]


class PrintableReport(Protocol):
    """A report a command prints: an import's, a rebuild's."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (``--json``)."""
        ...

    def lines(self) -> list[str]:
        """Lines for a person to read."""
        ...


def echo_report(report: PrintableReport, as_json: bool) -> None:
    """Print ``report`` on stdout, as indented JSON or as its lines.

    Parameters
    ----------
    report
        What to print.
    as_json
        Whether the command's ``--json`` was given (for scripts).
    """
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
