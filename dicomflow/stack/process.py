"""Processes the local stack starts: spawning, pid files, and stopping without orphans."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

# Every process the stack starts carries this variable, and so does everything those processes
# start (Airflow runs each task in a process group of its own). `down` finds them all by it, so it
# stops exactly what `up` started and nothing else. Processes that rewrite their title
# (setproctitle) hide their environment, so each component also leads a session of its own, and
# the sessions' ids are kept in <data_dir>/run/sessions: descendants stay in their session.
MARKER_VARIABLE = "DICOMFLOW_STACK_DIR"
SESSIONS_FILE = "sessions"


@dataclass(frozen=True)
class ProcessRecord:
    """What a pid file holds: enough to tell our process from a reused pid."""

    pid: int
    create_time: float
    command: list[str]

    def process(self) -> psutil.Process | None:
        """The live process, or ``None`` if it has exited (or the pid now names another)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None


def read_record(pid_file: Path) -> ProcessRecord | None:
    """The record in a pid file, or ``None`` when there is none or it is unreadable."""
    try:
        data = json.loads(pid_file.read_text())
        return ProcessRecord(int(data["pid"]), float(data["create_time"]), list(data["command"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def spawn(
    command: Sequence[str],
    *,
    pid_file: Path,
    log_file: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
    user: str | None = None,
) -> ProcessRecord:
    """Start a detached process in a session of its own and record it in ``pid_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            user=user,
        )
    record = ProcessRecord(proc.pid, psutil.Process(proc.pid).create_time(), list(command))
    pid_file.write_text(json.dumps(record.__dict__))
    with open(pid_file.parent / SESSIONS_FILE, "a") as sessions:
        sessions.write(f"{proc.pid}\n")
    return record


def _sessions(stack_dir: Path) -> set[int]:
    try:
        text = (stack_dir / "run" / SESSIONS_FILE).read_text()
    except OSError:
        return set()
    return {int(line) for line in text.split() if line.isdigit()}


def forget_sessions(stack_dir: Path) -> None:
    """Drop the record of sessions once everything in them has stopped."""
    (stack_dir / "run" / SESSIONS_FILE).unlink(missing_ok=True)


def marked_processes(stack_dir: Path) -> list[psutil.Process]:
    """Live processes the stack started, wherever they were reparented.

    A process counts when it carries the stack's marker variable or lives in a session that
    one of the stack's components leads.
    """
    wanted = str(stack_dir)
    sessions = _sessions(stack_dir)
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            if os.getsid(proc.pid) in sessions or proc.environ().get(MARKER_VARIABLE) == wanted:
                found.append(proc)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return found


def terminate(processes: Iterable[psutil.Process], grace: float) -> list[psutil.Process]:
    """SIGTERM the processes and their process groups, SIGKILL what is left after ``grace``.

    Returns
    -------
    list of psutil.Process
        The processes that had to be killed.
    """
    procs = [p for p in processes if p.is_running()]
    for proc in list(procs):
        with contextlib.suppress(psutil.Error):
            procs.extend(proc.children(recursive=True))
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        _signal(proc, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)
    return alive


def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
    try:
        pgid = os.getpgid(proc.pid)
        # A process that leads its own group takes its group down with it (Airflow's task
        # runners, PostgreSQL's backends); others get the signal alone.
        if pgid == proc.pid:
            os.killpg(pgid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError, psutil.Error):
        pass


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
