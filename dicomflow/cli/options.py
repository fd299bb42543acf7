"""What the command groups share: settings loading, errors, common options, report output."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

if TYPE_CHECKING:
    from dicomflow.config import Settings

__all__ = [
    "CliError",
    "PrintableReport",
    "ProgressBar",
    "database_errors",
    "echo_report",
    "json_option",
    "load_context_settings",
    "no_progress_option",
    "password_options",
    "project_option",
    "read_password",
    "settings_of",
    "shell_actor",
]

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure the user can act on; printed without a traceback."""


def load_context_settings(ctx: click.Context) -> Settings:
    """The platform settings of this invocation, loaded once into ``ctx.obj``.

    Raises
    ------
    CliError
        When the configuration is invalid (the message names the key).
    """
    root = ctx.find_root()
    if root.obj is None:
        from dicomflow.config import ConfigError, load_settings

        try:
            root.obj = load_settings(root.meta.get("config_file"))
        except ConfigError as exc:
            raise CliError(str(exc)) from None
    settings: Settings = root.obj
    return settings


def settings_of(ctx: click.Context) -> Settings:
    """The settings the main command loaded (see :func:`load_context_settings`)."""
    return load_context_settings(ctx)


def json_option(help_text: str = "Print JSON.") -> Callable[[F], F]:
    """``--json``, passed as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def no_progress_option() -> Callable[[F], F]:
    """``--no-progress``, passed as ``no_progress``."""
    return click.option("--no-progress", is_flag=True, help="No progress bar.")


def project_option(default: str | None = "admin", help_text: str = "Project.") -> Callable[[F], F]:
    """``--project`` (the admin project sees every series)."""
    return click.option(
        "--project", default=default, show_default=default is not None, help=help_text
    )


def shell_actor() -> str:
    """Who a change made from the shell is recorded as in the audit trail."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def password_options() -> Callable[[F], F]:
    """``--password-stdin`` and ``--generate``, passed as ``password_stdin`` and ``generate``."""

    def decorate(func: F) -> F:
        func = click.option(
            "--generate", is_flag=True, help="Generate a password and print it once."
        )(func)
        return click.option(
            "--password-stdin",
            is_flag=True,
            help="Read the password from the first line of stdin (scripts); default: ask.",
        )(func)

    return decorate


def read_password(password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """The password the options ask for: ``(password, generated)``.

    Raises
    ------
    CliError
        When both options are given or stdin holds no line.
    """
    if password_stdin and generate:
        raise CliError("give --password-stdin or --generate, not both")
    if generate:
        import secrets

        return secrets.token_urlsafe(15), True
    if password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError("--password-stdin: stdin holds no password line")
        return line, False
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value, False


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Turn an unreachable platform database into a one-line :class:`CliError`."""
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except OperationalError as exc:
        raise CliError(
            f"the platform database is not reachable (is `dicomflow up` done?): {exc.orig}"
        ) from None


class PrintableReport(Protocol):
    """A report a command prints: an import's, a rebuild's."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (``--json``)."""
        ...

    def lines(self) -> list[str]:
        """Lines for a person to read."""
        ...


def echo_report(report: PrintableReport, as_json: bool) -> None:
    """Print ``report`` on stdout, as indented JSON (for scripts) or as its lines."""
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)


class ProgressBar:
    """A click progress bar on stderr (stdout stays clean for ``--json`` and pipes).

    It follows bytes of input (imports: :meth:`advance` with a byte count) or items
    (a rebuild: :meth:`advance` with a series UID counts one).

    Parameters
    ----------
    label
        Shown before the bar.
    show_pos
        Show ``done/total`` (items) instead of a percentage (bytes).
    """

    def __init__(self, label: str, *, show_pos: bool = False) -> None:
        self._label = label
        self._show_pos = show_pos
        self._stack: contextlib.ExitStack | None = None
        self._update: Callable[[int], None] | None = None

    def start(self, total: int) -> None:
        """The total (bytes or items), before the first step."""
        stack = contextlib.ExitStack()
        bar = stack.enter_context(
            click.progressbar(
                length=max(total, 1),
                label=self._label,
                file=sys.stderr,
                show_pos=self._show_pos,
                show_percent=not self._show_pos,
                show_eta=True,
            )
        )
        self._stack, self._update = stack, bar.update

    def advance(self, amount: int | str, name: str = "") -> None:
        """``amount`` more bytes were handled, or one item (given by its name) was."""
        if self._update is not None:
            self._update(amount if isinstance(amount, int) else 1)

    def close(self) -> None:
        """End the bar's line."""
        if self._stack is not None:
            self._stack.close()
            self._stack = None
