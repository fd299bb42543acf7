"""Start, check and stop the local stack as a whole."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psutil

from dicomflow.config import Settings
from dicomflow.stack.components import Component, StackError, all_components, port_is_free
from dicomflow.stack.process import (
    forget_sessions,
    marked_processes,
    read_record,
    spawn,
    terminate,
    wait_until,
)

Report = Callable[[str], None]


class State(StrEnum):
    """What ``status`` says of a component."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"  # its process runs but it does not answer
    STOPPED = "stopped"


@dataclass(frozen=True)
class ComponentStatus:
    """One row of ``dicomflow status``."""

    name: str
    state: State
    pid: int | None
    address: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "state": self.state.value,
            "pid": self.pid,
            "address": self.address,
        }


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file (empty if there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Stack:
    """The local stack the settings describe.

    Parameters
    ----------
    settings
        The platform settings.
    components
        Override the components (tests start a subset).
    """

    def __init__(self, settings: Settings, components: list[Component] | None = None) -> None:
        self.settings = settings
        self.components = components if components is not None else all_components(settings)
        # Only a stack of every component may sweep up processes carrying the stack's marker:
        # a subset must leave the others' children alone.
        self._whole = components is None

    def component(self, name: str) -> Component:
        """A component by name."""
        for comp in self.components:
            if comp.name == name:
                return comp
        names = ", ".join(c.name for c in self.components)
        raise StackError(f"no component {name!r}; the stack has: {names}")

    def status(self) -> list[ComponentStatus]:
        """The state of every component."""
        return [self._status(comp) for comp in self.components]

    def _status(self, comp: Component) -> ComponentStatus:
        record = read_record(comp.pid_file)
        proc = record.process() if record else None
        if proc is None:
            return ComponentStatus(comp.name, State.STOPPED, None, comp.address())
        state = State.HEALTHY if comp.healthy() else State.UNHEALTHY
        return ComponentStatus(comp.name, state, proc.pid, comp.address())

    def check_requirements(self) -> None:
        """Raise :class:`StackError` naming a missing system package and the command to get it."""
        for comp in self.components:
            for path, package in comp.requirements():
                found = Path(path).exists() if "/" in str(path) else shutil.which(str(path))
                if not found:
                    raise StackError(
                        f"{comp.name}: {path} not found (package {package}). "
                        "Run `make run` (or `make install`) to install what the platform needs."
                    )

    def up(self, report: Report = print) -> list[str]:
        """Start every component that is not running and wait until all answer.

        Returns
        -------
        list of str
            The names of the components that were started (empty: all were running).

        Raises
        ------
        StackError
            Naming the component that failed, with the tail of its log.
        """
        self.check_requirements()
        for directory in (self.settings.log_dir, self.settings.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        started: list[str] = []
        pending: list[Component] = []
        for comp in self.components:
            status = self._status(comp)
            if status.state is State.HEALTHY:
                report(f"  {comp.name:<22} already running (pid {status.pid})")
                continue
            if status.state is State.UNHEALTHY:
                report(f"  {comp.name:<22} running but not answering: restarting it")
                self._stop(comp)
            self._check_ports(comp)
            pending.append(comp)
        for wave in self._waves(pending):
            for comp in wave:
                report(f"  {comp.name:<22} starting")
                comp.prepare()
                spawn(
                    comp.command(),
                    pid_file=comp.pid_file,
                    log_file=comp.log_file,
                    env=comp.env(),
                    user=comp.user(),
                )
            for comp in wave:
                self._await(comp)
                comp.after_start()
                report(f"  {comp.name:<22} healthy   {comp.address()}")
                started.append(comp.name)
        return started

    def _waves(self, chosen: list[Component]) -> list[list[Component]]:
        """``chosen`` in start order: each wave needs only components of earlier waves."""
        # A prerequisite this machine does not run (an external PostgreSQL, say) counts as up.
        done = {c.name for c in self.components} - {c.name for c in chosen}
        pending = list(chosen)
        known = {c.name for c in self.components}
        waves: list[list[Component]] = []
        while pending:
            wave = [c for c in pending if all(a in done or a not in known for a in c.after)]
            if not wave:
                names = ", ".join(c.name for c in pending)
                raise StackError(f"components wait on each other: {names}")
            waves.append(wave)
            done |= {c.name for c in wave}
            pending = [c for c in pending if c not in wave]
        return waves

    def _check_ports(self, comp: Component) -> None:
        for claim in comp.ports():
            if not port_is_free(claim.host, claim.port):
                env = "DICOMFLOW_" + claim.key.upper().replace(".", "__")
                raise StackError(
                    f"{comp.name}: port {claim.port} on {claim.host} is already in use. "
                    f"Free it, or change `{claim.key}` in the configuration file (or {env})."
                )

    def _await(self, comp: Component) -> None:
        start = time.monotonic()

        def ready() -> bool:
            record = read_record(comp.pid_file)
            if record is None or record.process() is None:
                raise StackError(
                    f"{comp.name} exited during start-up. Last lines of {comp.log_file}:\n"
                    + log_tail(comp.log_file)
                )
            return comp.healthy()

        if not wait_until(ready, comp.start_timeout, interval=0.25):
            waited = time.monotonic() - start
            raise StackError(
                f"{comp.name} did not answer within {waited:.0f} s. Last lines of "
                f"{comp.log_file}:\n" + log_tail(comp.log_file)
            )

    def _running(self, comp: Component) -> psutil.Process | None:
        record = read_record(comp.pid_file)
        return record.process() if record else None

    def _stop(self, comp: Component) -> bool:
        proc = self._running(comp)
        comp.pid_file.unlink(missing_ok=True)
        if proc is None:
            return False
        terminate([proc], comp.stop_grace)
        return True

    def down(self, report: Report = print, *, sweep: bool | None = None) -> list[str]:
        """Stop what ``up`` started, in reverse start order, and any process they left behind.

        Components of one start wave stop together, so the slowest one sets the pace.

        Parameters
        ----------
        report
            Called with a line of progress per component.
        sweep
            Also stop every other process carrying the stack's marker (default: when this
            stack holds every component).

        Returns
        -------
        list of str
            The names of the components that were running.
        """
        stopped: list[str] = []
        for wave in reversed(self._waves(self.components)):
            running = {c.name: p for c in wave if (p := self._running(c)) is not None}
            for comp in wave:
                comp.pid_file.unlink(missing_ok=True)
            if not running:
                continue
            grace = max(c.stop_grace for c in wave if c.name in running)
            terminate(running.values(), grace)
            for name in running:
                report(f"  {name:<22} stopped")
            stopped += running
        if sweep or self._whole:
            leftovers = marked_processes(self.settings.data_dir)
            if leftovers:
                report(f"  stopping {len(leftovers)} leftover process(es) started by the stack")
                terminate(leftovers, 10.0)
            forget_sessions(self.settings.data_dir)
        return stopped
