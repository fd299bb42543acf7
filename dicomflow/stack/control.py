"""Talking to the supervisor process: start it, ask it to start components, read it, stop it.

The supervisor (``dicomflow.stack.daemon``) is the parent of every component it starts, which
is how it learns each one's exit code or signal. It keeps ``<data_dir>/run/supervisor.pid``
(recognised like a component's pid file) and publishes what it knows in
``<data_dir>/run/supervisor.json``: per component its state, restarts and last exit, and the
progress of the latest start request. ``dicomflow up`` starts it (or signals it with SIGUSR1)
and prints that progress; ``dicomflow down`` stops it first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dicomflow.config import REPO_ROOT, Settings
from dicomflow.stack.components import StackError, stack_env
from dicomflow.stack.process import ProcessRecord, locked, read_record, terminate

if TYPE_CHECKING:
    from dicomflow.stack.policy import RestartPolicy
    from dicomflow.stack.supervisor import Report, Stack

NAME = "supervisor"
#: Seconds ``down`` gives the supervisor to finish what it is doing before SIGKILL.
STOP_GRACE = 30.0


def pid_file(settings: Settings) -> Path:
    """The supervisor's pid file."""
    return settings.run_dir / f"{NAME}.pid"


def state_file(settings: Settings) -> Path:
    """Where the supervisor publishes what it knows."""
    return settings.run_dir / f"{NAME}.json"


def log_file(settings: Settings) -> Path:
    """The supervisor's log: every death, its cause, every restart."""
    return settings.log_dir / f"{NAME}.log"


@dataclass
class Watch:
    """What the supervisor knows of one component."""

    #: running, starting, restarting (dead, to be started again), gave-up, stopped
    state: str = "stopped"
    restarts: int = 0
    last_exit: str | None = None
    message: str = ""


@dataclass
class SupervisorView:
    """The contents of ``supervisor.json``."""

    components: dict[str, Watch] = field(default_factory=dict)
    #: Number of the latest start request (1: the one the supervisor was started with).
    request: int = 0
    #: Progress lines of that request, as ``up`` prints them.
    lines: list[str] = field(default_factory=list)
    done: bool = False
    started: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> str:
        """The file's text."""
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> SupervisorView:
        """Parse the file's text."""
        data = json.loads(text)
        comps = {name: Watch(**watch) for name, watch in data.pop("components", {}).items()}
        return cls(components=comps, **data)


def write_view(settings: Settings, view: SupervisorView) -> None:
    """Replace ``supervisor.json`` in one step."""
    path = state_file(settings)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(view.to_json())
    os.replace(tmp, path)


def _read_view(settings: Settings) -> SupervisorView | None:
    try:
        return SupervisorView.from_json(state_file(settings).read_text())
    except (OSError, ValueError, TypeError):
        return None


def supervisor_record(settings: Settings) -> ProcessRecord | None:
    """The supervisor's pid-file record, if it is alive."""
    record = read_record(pid_file(settings))
    return record if record is not None and record.process() is not None else None


def supervisor_view(settings: Settings) -> SupervisorView | None:
    """What the running supervisor publishes (``None`` when no supervisor runs)."""
    if supervisor_record(settings) is None:
        return None
    return _read_view(settings)


def launch(stack: Stack, policy: RestartPolicy) -> subprocess.Popen[bytes]:
    """Start the supervisor process for ``stack``'s components, detached in its own session.

    It writes its own pid file once it holds the supervisor lock, so of two started at once
    only one stays.
    """
    settings = stack.settings
    env = stack_env(settings, NAME)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    log = log_file(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "dicomflow.stack.daemon",
        *policy.as_args(),
        *(c.name for c in stack.components),
    ]
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )


def supervised_up(stack: Stack, report: Report, policy: RestartPolicy) -> list[str]:
    """``up`` through the supervisor: start it (or wake it) and print what it does.

    Returns
    -------
    list of str
        The components the supervisor started for this request.

    Raises
    ------
    StackError
        A port is taken (checked before a new supervisor starts, so nothing starts then), a
        component did not start, or the supervisor itself exited.
    """
    settings = stack.settings
    record = supervisor_record(settings)
    if record is None:
        with locked(settings.run_dir):
            for comp in stack.components:
                if stack.running(comp) is None:
                    stack.clear_leftovers(comp, report)
                    stack.check_ports(comp)
        state_file(settings).unlink(missing_ok=True)
        proc = launch(stack, policy)
        report(f"  {NAME:<22} started (pid {proc.pid}): it restarts what dies")
        return _follow(settings, 0, lambda: proc.poll() is None, report)
    view = _read_view(settings)
    before = view.request if view else 0
    os.kill(record.pid, signal.SIGUSR1)
    report(f"  {NAME:<22} running (pid {record.pid})")
    return _follow(settings, before, lambda: record.process() is not None, report)


def _follow(
    settings: Settings, before: int, alive: Callable[[], bool], report: Report
) -> list[str]:
    """Print the progress of the first request after number ``before`` until it is done."""
    number, printed = 0, 0
    while True:
        view = _read_view(settings)
        if view is not None and view.request > before:
            if view.request != number:
                number, printed = view.request, 0
            for line in view.lines[printed:]:
                report(line)
            printed = len(view.lines)
            if view.done:
                if view.error:
                    raise StackError(
                        f"{view.error}\n(the supervisor keeps trying with backoff; "
                        "see `dicomflow status` and `dicomflow logs supervisor`)"
                    )
                return view.started
        if not alive():
            from dicomflow.stack.supervisor import log_tail

            raise StackError(
                f"the supervisor exited. Last lines of {log_file(settings)}:\n"
                + log_tail(log_file(settings))
            )
        time.sleep(0.2)


def stop_supervisor(settings: Settings) -> bool:
    """Stop the supervisor (SIGTERM; SIGKILL after a grace) and forget its files.

    Returns
    -------
    bool
        Whether one was running.
    """
    record = supervisor_record(settings)
    proc = record.process() if record else None
    if proc is not None:
        terminate([proc], STOP_GRACE, children=False)
    pid_file(settings).unlink(missing_ok=True)
    state_file(settings).unlink(missing_ok=True)
    return proc is not None
