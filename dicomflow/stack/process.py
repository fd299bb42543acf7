"""Processes the local stack starts: spawning, pid files, and stopping without orphans."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from dicomflow.stack import procinfo
from dicomflow.stack.procinfo import Identity

# Every process the stack starts carries these variables, and so does everything those
# processes start (Airflow runs each task in a process group of its own): the stack's data
# directory, and the name of the component whose life it belongs to. `down` finds every process
# of the stack by the first; a component's restart ends what is left of its previous life by
# both. Processes that rewrite their title (setproctitle) hide their environment, so each
# component also leads a session of its own, and the sessions are kept in
# <data_dir>/run/sessions (leader pid, boot id, start ticks, component): descendants stay in
# their session.
MARKER_VARIABLE = "DICOMFLOW_STACK_DIR"
COMPONENT_VARIABLE = "DICOMFLOW_STACK_COMPONENT"
SESSIONS_FILE = "sessions"
LOCK_FILE = "stack.lock"


@dataclass(frozen=True)
class ProcessRecord:
    """What a pid file holds: enough to tell our process from a reused pid.

    ``boot_id`` and ``start_ticks`` identify the process whatever the wall clock does; pid files
    written before they existed hold only ``create_time`` (wall clock, kept for people to read).
    """

    pid: int
    create_time: float
    command: list[str]
    boot_id: str | None = None
    start_ticks: int | None = None

    @property
    def identity(self) -> Identity | None:
        """The recorded identity (``None`` in a pid file of an older version)."""
        if self.boot_id is None or self.start_ticks is None:
            return None
        return Identity(self.boot_id, self.start_ticks)

    def process(self) -> psutil.Process | None:
        """The live process, or ``None`` if it has exited (or the pid now names another)."""
        try:
            proc = psutil.Process(self.pid)
            recorded = self.identity
            if recorded is not None:
                if procinfo.identity(self.pid) != recorded:
                    return None
            elif abs(proc.create_time() - self.create_time) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def running_seconds(self) -> float | None:
        """How long the process has run (``None`` without a recorded identity)."""
        recorded = self.identity
        return None if recorded is None else procinfo.running_seconds(recorded)


def record_of(pid: int, command: Sequence[str]) -> ProcessRecord:
    """The record of a live process."""
    ident = procinfo.identity(pid)
    if ident is None:
        raise psutil.NoSuchProcess(pid)
    return ProcessRecord(
        pid, psutil.Process(pid).create_time(), list(command), ident.boot_id, ident.start_ticks
    )


def write_record(pid_file: Path, record: ProcessRecord) -> None:
    """Replace the pid file in one step, so no reader ever sees half a record."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, pid_file)


def read_record(pid_file: Path) -> ProcessRecord | None:
    """The record in a pid file, or ``None`` when there is none or it is unreadable.

    A pid file of an older version (wall-clock start time only) is still recognised the old way,
    and rewritten with the process's identity once it matches: from then on a clock step no
    longer hides the process.
    """
    try:
        data = json.loads(pid_file.read_text())
        record = ProcessRecord(
            int(data["pid"]),
            float(data["create_time"]),
            list(data["command"]),
            data.get("boot_id"),
            None if data.get("start_ticks") is None else int(data["start_ticks"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.identity is None and record.process() is not None:
        with contextlib.suppress(OSError, psutil.Error):
            upgraded = record_of(record.pid, record.command)
            write_record(pid_file, upgraded)
            return upgraded
    return record


@dataclass(frozen=True)
class Spawned:
    """A process just started: its record, and the handle that tells how it ends."""

    record: ProcessRecord
    popen: subprocess.Popen[bytes]


def spawn(
    command: Sequence[str],
    *,
    pid_file: Path,
    log_file: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
    user: str | None = None,
    name: str = "",
) -> Spawned:
    """Start a detached process in a session of its own and record it in ``pid_file``.

    ``name`` (the component) is kept with the session, so a restart can end that component's
    leftovers alone.
    """
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
    record = record_of(proc.pid, command)
    write_record(pid_file, record)
    assert record.identity is not None
    _add_session(pid_file.parent, record.pid, record.identity, name)
    return Spawned(record, proc)


@dataclass(frozen=True)
class Session:
    """A session a component's process led: its id (the leader's pid) and who led it."""

    sid: int
    identity: Identity | None  # None: a line written by an older version
    component: str | None


def _add_session(run_dir: Path, sid: int, ident: Identity, name: str) -> None:
    with open(run_dir / SESSIONS_FILE, "a") as sessions:
        sessions.write(f"{sid} {ident.boot_id} {ident.start_ticks} {name or '-'}\n")


def _read_sessions(stack_dir: Path) -> list[Session]:
    path = stack_dir / "run" / SESSIONS_FILE
    try:
        text = path.read_text()
        written = path.stat().st_mtime
    except OSError:
        return []
    # Older versions wrote bare pids, without a boot id: trust them only if the file was
    # written during this boot (after a reboot the numbers name other people's sessions).
    legacy_ok = written >= psutil.boot_time() - 60
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 1 and parts[0].isdigit():
            if legacy_ok:
                found.append(Session(int(parts[0]), None, None))
        elif len(parts) == 4 and parts[0].isdigit() and parts[2].isdigit():
            name = None if parts[3] == "-" else parts[3]
            found.append(Session(int(parts[0]), Identity(parts[1], int(parts[2])), name))
    return found


def _live_sids(sessions: Iterable[Session]) -> set[int]:
    """The recorded session ids that still name our sessions.

    A session id is the pid of its leader. The kernel keeps that number from being reused while
    anything in the session lives, so a dead leader's session is still ours; but once the
    session is empty the pid may be given to someone else, who shows up as a live process with
    that pid and another identity.
    """
    current = procinfo.boot_id()
    sids = set()
    for session in sessions:
        if session.identity is not None:
            if session.identity.boot_id != current:
                continue
            now = procinfo.identity(session.sid)
            if now is not None and now != session.identity:
                continue
        sids.add(session.sid)
    return sids


def session_components(stack_dir: Path) -> dict[int, str]:
    """The stack's live sessions and the component that led each (by session id).

    A process that rewrites its environment with its title (PostgreSQL, Airflow's API server)
    no longer carries its component's name; its session still tells.
    """
    sessions = _read_sessions(stack_dir)
    live = _live_sids(sessions)
    return {s.sid: s.component for s in sessions if s.sid in live and s.component}


def forget_sessions(stack_dir: Path) -> None:
    """Drop the record of sessions once everything in them has stopped."""
    (stack_dir / "run" / SESSIONS_FILE).unlink(missing_ok=True)


def forget_component_sessions(stack_dir: Path, name: str) -> None:
    """Drop a component's recorded sessions that nothing lives in any more."""
    path = stack_dir / "run" / SESSIONS_FILE
    sessions = _read_sessions(stack_dir)
    mine = {s.sid for s in sessions if s.component == name}
    if not mine:
        return
    occupied = set()
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            sid = os.getsid(proc.pid)
            if sid in mine:
                occupied.add(sid)
    kept = [s for s in sessions if s.component != name or s.sid in occupied]
    lines = [
        f"{s.sid}\n"
        if s.identity is None
        else f"{s.sid} {s.identity.boot_id} {s.identity.start_ticks} {s.component or '-'}\n"
        for s in kept
    ]
    tmp = path.with_name(SESSIONS_FILE + ".tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, path)


def _find(wanted: Callable[[psutil.Process, int], bool]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            # A zombie has ended already; only its parent can remove it.
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if wanted(proc, os.getsid(proc.pid)):
                found.append(proc)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return found


def marked_processes(stack_dir: Path) -> list[psutil.Process]:
    """Live processes the stack started, wherever they were reparented.

    A process counts when it carries the stack's marker variable or lives in a session that
    one of the stack's components leads (or led).
    """
    wanted = str(stack_dir)
    sids = _live_sids(_read_sessions(stack_dir))

    def ours(proc: psutil.Process, sid: int) -> bool:
        return sid in sids or proc.environ().get(MARKER_VARIABLE) == wanted

    return _find(ours)


def component_leftovers(stack_dir: Path, name: str) -> list[psutil.Process]:
    """Live processes of one component: everything its earlier lives started.

    They carry the stack's marker and the component's name, or live in a session the component
    led (LocalExecutor workers and task processes of a dead Airflow scheduler, PostgreSQL
    backends of a dead postmaster).
    """
    wanted = str(stack_dir)
    sids = _live_sids(s for s in _read_sessions(stack_dir) if s.component == name)

    def ours(proc: psutil.Process, sid: int) -> bool:
        if sid in sids:
            return True
        env = proc.environ()
        return env.get(MARKER_VARIABLE) == wanted and env.get(COMPONENT_VARIABLE) == name

    return _find(ours)


def terminate(
    processes: Iterable[psutil.Process], grace: float, *, children: bool = True
) -> list[psutil.Process]:
    """SIGTERM the processes and their process groups, SIGKILL what is left after ``grace``.

    ``children``: their descendants too (not for the supervisor, whose children are the
    components that ``down`` stops in order after it).

    Returns
    -------
    list of psutil.Process
        The processes that had to be killed.
    """
    procs = [p for p in processes if p.is_running()]
    if children:
        for proc in list(procs):
            with contextlib.suppress(psutil.Error):
                procs.extend(proc.children(recursive=True))
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    alive = _wait_gone(procs, grace)
    for proc in alive:
        _signal(proc, signal.SIGKILL)
    _wait_gone(alive, 5.0)
    return alive


def _gone(proc: psutil.Process) -> bool:
    try:
        proc.wait(timeout=0)  # reaps it, if it is our child
        return True
    except psutil.TimeoutExpired:
        pass
    except psutil.Error:
        return True
    try:
        # Someone else's zombie has ended all the same (psutil would wait on it).
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:  # it ended between the two questions
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes have ended; those still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = procs
    while True:
        alive = [p for p in alive if not _gone(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


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


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the stack's lock: one starter or stopper of components at a time.

    The supervisor holds it while it restarts a component, ``up`` and ``down`` while they work.
    The kernel releases it when its holder dies, so a killed holder never blocks the others.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
