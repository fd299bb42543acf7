"""Start, check and stop the local stack as a whole."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from dicomflow.config import Settings
from dicomflow.stack.components import (
    Component,
    StackError,
    all_components,
    port_holder,
    port_is_free,
)
from dicomflow.stack.process import (
    component_leftovers,
    forget_component_sessions,
    forget_sessions,
    locked,
    marked_processes,
    read_record,
    spawn,
    terminate,
    wait_until,
)

if TYPE_CHECKING:
    from dicomflow.stack.control import SupervisorView
    from dicomflow.stack.policy import RestartPolicy

Report = Callable[[str], None]


class State(StrEnum):
    """What ``status`` says of a component."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"  # its process runs but it does not answer
    RESTARTING = "restarting"  # it died; the supervisor is starting it again
    GAVE_UP = "gave-up"  # it kept crashing; the supervisor left it stopped
    STOPPED = "stopped"


@dataclass(frozen=True)
class ComponentStatus:
    """One row of ``dicomflow status``."""

    name: str
    state: State
    pid: int | None
    address: str
    uptime: float | None = None
    restarts: int = 0
    last_exit: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "state": self.state.value,
            "pid": self.pid,
            "address": self.address,
            "uptime_seconds": None if self.uptime is None else round(self.uptime, 1),
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "note": self.note,
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
        #: The processes this object started, by component: their handles tell how they end.
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        #: Asked while waiting for a component; true aborts the start (the supervisor stopping).
        self.cancelled: Callable[[], bool] = lambda: False

    def component(self, name: str) -> Component:
        """A component by name."""
        for comp in self.components:
            if comp.name == name:
                return comp
        names = ", ".join(c.name for c in self.components)
        raise StackError(f"no component {name!r}; the stack has: {names}")

    def status(self) -> list[ComponentStatus]:
        """The state of every component, with the supervisor's count of restarts."""
        from dicomflow.stack.control import supervisor_view

        view = supervisor_view(self.settings)
        # Each probe mostly waits on a socket: asked together, the slowest sets the time.
        with ThreadPoolExecutor(max_workers=max(1, len(self.components))) as pool:
            return list(pool.map(lambda comp: self._status(comp, view), self.components))

    def _status(self, comp: Component, view: SupervisorView | None = None) -> ComponentStatus:
        record = read_record(comp.pid_file)
        proc = record.process() if record else None
        watch = view.components.get(comp.name) if view else None
        restarts = watch.restarts if watch else 0
        last_exit = watch.last_exit if watch else None
        note = watch.message if watch else ""
        if proc is None or record is None:
            state = State.STOPPED
            if watch is not None and watch.state == "gave-up":
                state = State.GAVE_UP
            elif watch is not None and watch.state == "restarting" and comp.pid_file.exists():
                state = State.RESTARTING
            return ComponentStatus(
                comp.name, state, None, comp.address(), None, restarts, last_exit, note
            )
        state = State.HEALTHY if comp.healthy() else State.UNHEALTHY
        return ComponentStatus(
            comp.name,
            state,
            proc.pid,
            comp.address(),
            record.running_seconds(),
            restarts,
            last_exit,
            note,
        )

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

    def up(
        self,
        report: Report = print,
        *,
        supervise: bool = False,
        policy: RestartPolicy | None = None,
    ) -> list[str]:
        """Start every component that is not running and wait until all answer.

        Parameters
        ----------
        report
            Called with a line of progress per component.
        supervise
            Leave a supervisor process running that starts the components (it is their parent)
            and restarts any that dies (``dicomflow up`` does); without it, the components are
            started from this process and nothing restarts them.
        policy
            The supervisor's restart policy (default :class:`RestartPolicy`).

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
        if supervise:
            from dicomflow.stack.control import supervised_up
            from dicomflow.stack.policy import RestartPolicy

            return supervised_up(self, report, policy or RestartPolicy())
        with locked(self.settings.run_dir):
            return self.start(self.components, report)

    def start(self, chosen: list[Component], report: Report, *, restart: bool = False) -> list[str]:
        """Start those of ``chosen`` that are not running, in order, each after a clean sweep.

        The caller holds the stack's lock. Whatever is left of a component's previous run (its
        session, every process carrying its marker) is ended before it starts again.
        ``restart``: the supervisor starts components that died (:meth:`Component.prepare_restart`
        instead of :meth:`Component.prepare`).
        """
        pending: list[Component] = []
        for comp in chosen:
            status = self._status(comp)
            if status.state is State.HEALTHY:
                report(f"  {comp.name:<22} already running (pid {status.pid})")
                continue
            if status.state is State.UNHEALTHY:
                report(f"  {comp.name:<22} running but not answering: restarting it")
                self._stop(comp)
            self.clear_leftovers(comp, report)
            pending.append(comp)
        # Every port is checked before anything starts, so a busy one changes nothing.
        for comp in pending:
            self.check_ports(comp)
        started: list[str] = []
        for wave in self._waves(pending):
            for comp in wave:
                report(f"  {comp.name:<22} starting")
                if restart:
                    comp.prepare_restart()
                else:
                    comp.prepare()
                spawned = spawn(
                    comp.command(),
                    pid_file=comp.pid_file,
                    log_file=comp.log_file,
                    env=comp.env(),
                    user=comp.user(),
                    name=comp.name,
                )
                self.children[comp.name] = spawned.popen
            for comp in wave:
                self._await(comp)
                comp.after_start()
                report(f"  {comp.name:<22} healthy   {comp.address()}")
                started.append(comp.name)
        return started

    def clear_leftovers(self, comp: Component, report: Report) -> int:
        """End what is left of a component's previous run: SIGTERM, then SIGKILL after a grace.

        Returns
        -------
        int
            How many processes were left.
        """
        leftovers = component_leftovers(self.settings.data_dir, comp.name)
        if leftovers:
            pids = ", ".join(str(p.pid) for p in leftovers[:12])
            report(
                f"  {comp.name:<22} ending {len(leftovers)} process(es) left from its previous "
                f"run (pid {pids})"
            )
            terminate(leftovers, comp.sweep_grace)
        forget_component_sessions(self.settings.data_dir, comp.name)
        return len(leftovers)

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

    def check_ports(self, comp: Component) -> None:
        """Raise :class:`StackError` naming a port of ``comp`` that is taken, and its key."""
        for claim in comp.ports():
            if not port_is_free(claim.host, claim.port):
                env = "DICOMFLOW_" + claim.key.upper().replace(".", "__")
                holder = port_holder(claim.port)
                held = f" (by {holder})" if holder else ""
                raise StackError(
                    f"{comp.name}: port {claim.port} on {claim.host} is already in use{held}. "
                    f"Free it, or change `{claim.key}` in the configuration file (or {env})."
                )

    def _await(self, comp: Component) -> None:
        start = time.monotonic()

        def ready() -> bool:
            record = read_record(comp.pid_file)
            if self.cancelled():
                raise StackError(f"{comp.name}: start abandoned, the supervisor is stopping")
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

    def running(self, comp: Component) -> psutil.Process | None:
        """The component's live process, or ``None``."""
        record = read_record(comp.pid_file)
        return record.process() if record else None

    def _stop(self, comp: Component) -> bool:
        proc = self.running(comp)
        comp.pid_file.unlink(missing_ok=True)
        if proc is None:
            return False
        terminate([proc], comp.stop_grace)
        return True

    def down(self, report: Report = print, *, sweep: bool | None = None) -> list[str]:
        """Stop what ``up`` started, in reverse start order, and any process they left behind.

        The supervisor stops first, so it restarts nothing that is being stopped (a subset's
        ``down`` leaves it running: it leaves alone a component whose pid file is gone).
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
        if sweep or self._whole:
            from dicomflow.stack.control import stop_supervisor

            if stop_supervisor(self.settings):
                report(f"  {'supervisor':<22} stopped")
        with locked(self.settings.run_dir):
            return self._down(report, sweep=bool(sweep or self._whole))

    def _down(self, report: Report, *, sweep: bool) -> list[str]:
        stopped: list[str] = []
        for wave in reversed(self._waves(self.components)):
            running = {c.name: p for c in wave if (p := self.running(c)) is not None}
            for comp in wave:
                comp.pid_file.unlink(missing_ok=True)
            if not running:
                continue
            grace = max(c.stop_grace for c in wave if c.name in running)
            terminate(running.values(), grace)
            for name in running:
                report(f"  {name:<22} stopped")
            stopped += running
        if sweep:
            leftovers = marked_processes(self.settings.data_dir)
            if leftovers:
                report(f"  stopping {len(leftovers)} leftover process(es) started by the stack")
                terminate(leftovers, 10.0)
            forget_sessions(self.settings.data_dir)
        return stopped
