"""The supervisor process: starts the components, restarts any that dies, gives up on a loop.

Run by ``dicomflow up`` as ``python -m dicomflow.stack.daemon [policy options] NAME...``, with
the stack's effective configuration in ``DICOMFLOW_CONFIG``. It starts the components itself,
so it is their parent and reads each exit code or signal. Every half second it looks at each
component that has a pid file (``down`` of a component removes it, so a component stopped on
purpose is left alone); a dead one is started again after its leftovers are ended, at once the
first time, then with growing delays, until the policy gives up on it. SIGUSR1 (sent by
``up``) asks it to start whatever is stopped, given-up components included; SIGTERM (sent by
``down``) makes it exit and leave the components running for ``down`` to stop.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
from types import FrameType

from dicomflow.config import ConfigError, load_settings
from dicomflow.stack import control, procinfo
from dicomflow.stack.components import Component, StackError, all_components
from dicomflow.stack.policy import CrashHistory, RestartPolicy
from dicomflow.stack.process import (
    ProcessRecord,
    locked,
    read_record,
    record_of,
    terminate,
    write_record,
)
from dicomflow.stack.supervisor import Stack

log = logging.getLogger("dicomflow.supervisor")

#: Seconds between two looks at the components.
TICK = 0.5
LOCK_FILE = "supervisor.lock"


def exit_cause(returncode: int) -> str:
    """How a process ended, as the log and ``status`` say it."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Supervisor:
    """The loop of the supervisor process.

    Parameters
    ----------
    stack
        The components to supervise (the stack's start order and checks).
    policy
        When to restart and when to give up.
    """

    def __init__(self, stack: Stack, policy: RestartPolicy) -> None:
        self.stack = stack
        self.policy = policy
        self.view = control.SupervisorView(
            components={c.name: control.Watch() for c in stack.components}
        )
        self.history = {c.name: CrashHistory(policy) for c in stack.components}
        #: Monotonic time at which a dead component is due to start again.
        self.due: dict[str, float] = {}
        #: The last record seen alive per component, to tell how long it ran.
        self.seen: dict[str, ProcessRecord] = {}
        self.stopping = False
        self.requested = True  # the request the supervisor was started with
        self._written = ""
        stack.cancelled = lambda: self.stopping

    # -- signals ---------------------------------------------------------------------------
    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _on_request(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until SIGTERM; the exit status of the process."""
        settings = self.stack.settings
        lock = os.open(settings.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.error("another supervisor runs for %s; this one exits", settings.data_dir)
            return 3
        write_record(control.pid_file(settings), record_of(os.getpid(), sys.argv))
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_request)
        names = ", ".join(c.name for c in self.stack.components)
        log.info("supervising %s (pid %d; %s)", names, os.getpid(), self.policy)
        while not self.stopping:
            try:
                if self.requested:
                    self.requested = False
                    self._serve_request()
                self._look()
                self._restart_due()
            except Exception:  # a bug here must not end the supervision of everything else
                log.exception("supervisor step failed; going on")
            self._publish()
            time.sleep(TICK)
        log.info("stopping (components keep running; `down` stops them)")
        with contextlib.suppress(OSError):
            record = read_record(control.pid_file(settings))
            if record is not None and record.pid == os.getpid():
                control.pid_file(settings).unlink()
        return 0

    def _publish(self) -> None:
        text = self.view.to_json()
        if text != self._written:
            control.write_view(self.stack.settings, self.view)
            self._written = text

    def _serve_request(self) -> None:
        """Start every supervised component that is not running (``dicomflow up``)."""
        view = self.view
        view.request += 1
        view.lines, view.done, view.started, view.error = [], False, [], None
        self._publish()
        log.info("start request %d", view.request)

        def report(line: str) -> None:
            view.lines.append(line)
            log.info("%s", line.strip())
            self._publish()

        for comp in self.stack.components:
            # A user asked: components given up on get a fresh set of restarts.
            self.history[comp.name].forget()
            self.due.pop(comp.name, None)
            view.components[comp.name].state = "starting"
        with locked(self.stack.settings.run_dir):
            try:
                view.started = self.stack.start(self.stack.components, report)
            except Exception as exc:  # any failure ends the request, or `up` would wait on
                view.error = str(exc) if isinstance(exc, StackError) else repr(exc)
                log.error("start request %d failed: %s", view.request, view.error)
                # What started but does not answer is ended; with its pid file left in place it
                # counts as a crash, and the policy decides whether to try again.
                for comp in self.stack.components:
                    proc = self.stack.running(comp)
                    if proc is not None and not comp.healthy():
                        terminate([proc], comp.stop_grace)
        for comp in self.stack.components:
            watch = view.components[comp.name]
            running = self.stack.running(comp) is not None
            watch.state = "running" if running else "stopped"
            if running:
                watch.message = ""
        view.done = True

    def _look(self) -> None:
        """Notice components that died since the last look."""
        for comp in self.stack.components:
            name = comp.name
            watch = self.view.components[name]
            if name in self.due or watch.state == "gave-up":
                continue
            record = read_record(comp.pid_file)
            if record is None:
                # Stopped on purpose (`down` of this component) or never started.
                watch.state = "stopped"
                self._reap(name)
                continue
            cause = self._ended(comp, record)
            if cause is None:
                watch.state = "running"
                self.seen[name] = record
                continue
            self._crashed(comp, record, cause)

    def _ended(self, comp: Component, record: ProcessRecord) -> str | None:
        """How the component's process ended, or ``None`` while it runs."""
        child = self.stack.children.get(comp.name)
        if child is not None and child.pid == record.pid:
            code = child.poll()
            return None if code is None else exit_cause(code)
        if record.process() is not None:
            return None
        return "exit cause unknown (it was not started by this supervisor)"

    def _reap(self, name: str) -> None:
        child = self.stack.children.pop(name, None)
        if child is not None:
            child.poll()

    def _crashed(self, comp: Component, record: ProcessRecord, cause: str) -> None:
        name = comp.name
        watch = self.view.components[name]
        seen = self.seen.get(name)
        ran = None
        if seen is not None and seen.pid == record.pid and seen.start_ticks is not None:
            ran = procinfo.seconds_since_boot() - seen.start_ticks / procinfo.CLOCK_TICKS
        self._reap(name)
        watch.last_exit = cause
        delay = self.history[name].crashed(time.monotonic())
        if delay is None:
            watch.state = "gave-up"
            watch.message = (
                f"gave up after {self.history[name].recent} crashes within "
                f"{self.policy.window:.0f} s (last: {cause}); see `dicomflow logs {name}`, "
                "fix the cause, then run `dicomflow up`"
            )
            log.error("%s died: %s, after %s; %s", name, cause, _duration(ran), watch.message)
            return
        watch.state = "restarting"
        self.due[name] = time.monotonic() + delay
        log.warning(
            "%s died: %s, after %s; restart %d in %.0f s",
            name,
            cause,
            _duration(ran),
            watch.restarts + 1,
            delay,
        )

    def _restart_due(self) -> None:
        """Start again, in start order, each component whose delay has passed."""
        now = time.monotonic()
        due = [c for c in self.stack.components if self.due.get(c.name, now + 1) <= now]
        for comp in due:
            if self.stopping:
                return
            self._restart(comp)

    def _restart(self, comp: Component) -> None:
        name = comp.name
        watch = self.view.components[name]
        self.due.pop(name, None)
        began = time.monotonic()
        with locked(self.stack.settings.run_dir):
            if not comp.pid_file.exists():  # `down` stopped it meanwhile
                watch.state = "stopped"
                return
            watch.restarts += 1
            watch.state = "starting"
            self._publish()
            try:
                self.stack.start([comp], lambda line: log.info("%s", line.strip()), restart=True)
            except Exception as exc:  # whatever failed (a hook, the database), the start did
                # A failed start counts as one more crash; what it left is ended now, so the
                # next try (or `down`) finds nothing half-started.
                proc = self.stack.running(comp)
                if proc is not None:
                    terminate([proc], comp.stop_grace)
                self._reap(name)
                first = (str(exc) if isinstance(exc, StackError) else repr(exc)).splitlines()[0]
                watch.state = "restarting"
                record = read_record(comp.pid_file)
                if record is not None:
                    self._crashed(comp, record, f"failed to start: {first}")
                return
        watch.state, watch.message = "running", ""
        log.info("%s restarted and healthy in %.1f s", name, time.monotonic() - began)


def _components(names: list[str], stack_components: list[Component]) -> list[Component]:
    known = {c.name: c for c in stack_components}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StackError(
            f"unknown component(s) {', '.join(unknown)}; this configuration runs: "
            + ", ".join(known)
        )
    return [known[n] for n in known if n in names]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dicomflow.stack.daemon``."""
    parser = argparse.ArgumentParser(prog="python -m dicomflow.stack.daemon")
    defaults = RestartPolicy()
    parser.add_argument("--max-restarts", type=int, default=defaults.max_restarts)
    parser.add_argument("--window", type=float, default=defaults.window)
    parser.add_argument("--max-delay", type=float, default=defaults.max_delay)
    parser.add_argument("names", nargs="+", help="components to supervise")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    # Health checks poll over HTTP twice a second: their requests are no news.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings()
        components = _components(args.names, all_components(settings))
        policy = RestartPolicy(args.max_restarts, args.window, args.max_delay)
    except (ConfigError, StackError, ValueError) as exc:
        log.error("cannot supervise: %s", exc)
        return 2
    return Supervisor(Stack(settings, components), policy).run()


if __name__ == "__main__":
    sys.exit(main())
