"""Fault drills: send data, break a component for real, type nothing, then check what survived.

A drill runs against a supervised stack of its own (``dicomflow up`` as a user runs it: the
supervisor restarts what dies). Each fault is the real thing: ``kill -9`` of a component's
process, of a running task's processes, PostgreSQL kept down while a sender sends, the spool's
file system filling up. After the fault nobody acts; the drill only watches until every series
that holds an acknowledged instance is complete, and reports:

- instances acknowledged (dcmsend's own report: the sender's view of "stored");
- of those, how many the PACS holds;
- series complete (in the PACS, indexed, thumbnail, representative validation) of those sent;
- seconds from the fault until the last series was complete.

The tests in this folder assert the first three; ``bench/faults.py`` runs every drill at full
size and prints the table with the seconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from dicomflow.airflow_api.client import AirflowClient, AirflowError
from dicomflow.config import Settings, load_settings
from dicomflow.index import open_index
from dicomflow.pacs.client import DicomWebClient, PacsError, study_uid_of
from dicomflow.spool.store import Spool
from dicomflow.stack import control
from dicomflow.stack.components import StackError
from dicomflow.stack.isolated import stack_data_dir, stack_environment
from dicomflow.stack.process import read_record, wait_until
from dicomflow.stack.supervisor import Stack, State
from tests.dicomfiles import write_ct_series

DAG_ID = "service-process-incoming-dcm"
#: dcmsend's debug log: a response's SOP Instance UID, then its status.
_RESPONSE = re.compile(
    r"Received C-STORE Response.*?Affected SOP Instance UID\s*:\s*(?P<uid>\S+)"
    r".*?DIMSE Status\s*:\s*0x(?P<status>[0-9A-Fa-f]{4})",
    re.DOTALL,
)


def quiet(_line: str) -> None:
    """A report that prints nothing."""


@dataclass(frozen=True)
class Cargo:
    """What one drill sends: CT instances (39 KB) in series of their own."""

    folder: Path
    #: SOP Instance UIDs by Series Instance UID.
    series: dict[str, set[str]]

    @property
    def instances(self) -> int:
        return sum(len(sops) for sops in self.series.values())

    def split(self, parts: int) -> list[Path]:
        """The cargo's files in ``parts`` folders of whole series (one per concurrent sender)."""
        folders = [self.folder / f"sender-{i:02d}" for i in range(parts)]
        for i, series_dir in enumerate(sorted(p for p in self.folder.iterdir() if p.is_dir())):
            if series_dir.name.startswith("sender-"):
                continue
            target = folders[i % parts]
            target.mkdir(exist_ok=True)
            series_dir.rename(target / series_dir.name)
        return [f for f in folders if f.exists()]


def make_cargo(folder: Path, series: int, per_series: int) -> Cargo:
    """``series`` new series of ``per_series`` CT instances each, one folder per series."""
    found: dict[str, set[str]] = {}
    for s in range(series):
        uid = f"2.25.{int.from_bytes(os.urandom(12), 'big')}"
        paths = write_ct_series(
            folder / f"series-{s:03d}", range(1, per_series + 1), series_uid=uid
        )
        found[uid] = {p.stem.split("-", 1)[1] for p in paths}
    return Cargo(folder, found)


@dataclass
class Send:
    """A running ``dcmsend`` and, once it ended, what it was told."""

    process: subprocess.Popen[bytes]
    log_file: Path
    started: float = field(default_factory=time.monotonic)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """``dcmsend`` stopped (SIGSTOP) for the block: what happens in it is mid-association.

        Raises
        ------
        RuntimeError
            When ``dcmsend`` had already ended.
        """
        self.process.send_signal(signal.SIGSTOP)
        if self.process.poll() is not None:
            raise RuntimeError("dcmsend had ended before it could be stopped")
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def wait(self, timeout: float = 900) -> set[str]:
        """SOP Instance UIDs the receiver answered with success (or a warning): stored.

        Read from the responses in dcmsend's debug log: its report file is not written when
        the association is aborted, which is when it matters.
        """
        self.process.wait(timeout=timeout)
        text = self.log_file.read_text(errors="replace")
        return {
            m["uid"]
            for m in _RESPONSE.finditer(text)
            if m["status"] == "0000" or m["status"].upper().startswith("B")
        }


def dcmsend(port: int, folder: Path, calling: str, called: str, log_file: Path) -> Send:
    """Start ``dcmsend`` of ``folder`` as the README tells senders to (logging each response)."""
    command = [
        "dcmsend",
        "--debug",
        "127.0.0.1",
        str(port),
        "--aetitle",
        calling,
        "--call",
        called,
        "--scan-directories",
        "--recurse",
        str(folder),
    ]
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    return Send(process, log_file)


@dataclass
class Outcome:
    """One drill's result row."""

    name: str
    sent: int
    acknowledged: int
    in_pacs: int
    series_expected: int
    series_complete: int
    #: Seconds from the fault until every series was complete (``None``: not within the wait).
    seconds: float | None
    #: Acknowledged instances the PACS does not hold (UIDs), for the failure message.
    missing: list[str] = field(default_factory=list)
    #: Series not complete, with what they lack.
    incomplete: dict[str, str] = field(default_factory=dict)

    def row(self) -> str:
        seconds = "not complete" if self.seconds is None else f"{self.seconds:.1f}"
        return (
            f"{self.name:58} | {self.sent:6d} | {self.acknowledged:6d} | {self.in_pacs:6d} | "
            f"{self.series_complete:3d}/{self.series_expected:<3d} | {seconds:>12}"
        )


HEADER = (
    f"{'fault':58} | {'sent':>6} | {'acked':>6} | {'PACS':>6} | {'series':>7} | "
    f"{'s to complete':>12}"
)


def completion(
    settings: Settings, expected: dict[str, set[str]]
) -> tuple[set[str], dict[str, str]]:
    """The ``expected`` instances the PACS holds, and the series not complete (and why).

    Complete: in the PACS, indexed as stored, with a thumbnail and validation. Used by the
    drills and, inside a host of the multi-host site, by ``tests.multihost.check``.
    """
    in_pacs: set[str] = set()
    incomplete: dict[str, str] = {}
    try:
        index = open_index(settings)
    except Exception as exc:  # the platform database may be coming back
        return in_pacs, {uid: f"index unreadable: {exc}" for uid in expected}
    try:
        with DicomWebClient.from_settings(settings) as pacs:
            for uid, sops in expected.items():
                held = _pacs_instances(pacs, uid)
                in_pacs |= held & sops
                lack = _lacks(_document(index, uid), sops, held)
                if lack:
                    incomplete[uid] = lack
    finally:
        with contextlib.suppress(Exception):
            index.close()
    return in_pacs, incomplete


class Drill:
    """A supervised stack of its own and the means to break it and watch it heal.

    Parameters
    ----------
    work
        A folder for the cargo and dcmsend's reports.
    spool_bytes
        When given (and running as root), the spool is a tmpfs of this size, so that a drill
        can fill it up.
    """

    def __init__(self, work: Path, *, spool_bytes: int | None = None) -> None:
        self.work = work
        self.data_dir = stack_data_dir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
        env.update(stack_environment(self.data_dir))
        self.settings: Settings = load_settings(environ=env)
        self.stack = Stack(self.settings)
        self.spool_mounted = False
        if spool_bytes is not None and os.geteuid() == 0:
            spool = self.settings.spool_dir
            spool.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={spool_bytes}", "tmpfs", str(spool)],
                capture_output=True,
                text=True,
            )
            self.spool_mounted = done.returncode == 0
        self._sends = 0

    # -- the stack ---------------------------------------------------------------------------

    def up(self) -> None:
        """Start every component under the supervisor, as ``dicomflow up`` does.

        ``up`` reports a component that died while starting (on a loaded machine Airflow's API
        server can); the supervisor starts it again, and the drills need only that in the end
        every component answers.
        """
        try:
            self.stack.up(report=quiet, supervise=True)
        except StackError:
            if not self.all_healthy(timeout=600):
                raise

    def down(self) -> None:
        """Stop the stack and remove everything it kept."""
        try:
            self.stack.down(report=quiet, sweep=True)
        finally:
            if self.spool_mounted:
                subprocess.run(["umount", "-l", str(self.settings.spool_dir)], check=False)
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def all_healthy(self, timeout: float = 300) -> bool:
        """Wait until every component runs and answers."""
        return wait_until(
            lambda: all(r.state is State.HEALTHY for r in self.stack.status()), timeout, 0.5
        )

    def kill(self, name: str) -> float:
        """``kill -9`` a component's main process; the moment it was done."""
        record = read_record(self.stack.component(name).pid_file)
        if record is None or record.process() is None:
            raise RuntimeError(f"{name} is not running")
        os.kill(record.pid, signal.SIGKILL)
        return time.monotonic()

    def kill_a_running_task(self, timeout: float = 300) -> float:
        """``kill -9`` the processes of one running task of the processing DAG (runner, worker)."""
        with AirflowClient.from_settings(self.settings) as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with contextlib.suppress(AirflowError):
                    for run in client.list_dag_runs(DAG_ID, states=("running",)):
                        for ti in client.task_instances(DAG_ID, run["dag_run_id"]):
                            if ti["state"] != "running":
                                continue
                            procs = _processes_naming(str(ti["id"]))
                            if procs:
                                for proc in procs:
                                    with contextlib.suppress(psutil.NoSuchProcess):
                                        proc.send_signal(signal.SIGKILL)
                                return time.monotonic()
                time.sleep(0.1)
        raise RuntimeError(f"no task of {DAG_ID} was running within {timeout:.0f} s")

    @contextlib.contextmanager
    def supervisor_held(self) -> Iterator[None]:
        """The supervisor stopped (SIGSTOP), so that what dies stays dead until the end."""
        record = control.supervisor_record(self.settings)
        if record is None:
            raise RuntimeError("no supervisor runs")
        os.kill(record.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(record.pid, signal.SIGCONT)

    def runs_in_flight(self, timeout: float = 300) -> bool:
        """Wait until a run of the processing DAG is running."""

        def running() -> bool:
            with AirflowClient.from_settings(self.settings) as client:
                return bool(client.list_dag_runs(DAG_ID, states=("running",), limit=1))

        return wait_until(_tolerant(running), timeout, 0.1)

    def received(self) -> int:
        """Instances the spool holds records of (every batch, open or closed)."""
        spool = Spool.from_settings(self.settings)
        total = 0
        for record in spool.batches():
            with contextlib.suppress(OSError, ValueError):
                total += len(spool.manifest(record.id))
        return total

    # -- sending -----------------------------------------------------------------------------

    def cargo(self, series: int, per_series: int) -> Cargo:
        self._sends += 1
        return make_cargo(self.work / f"cargo-{self._sends:03d}", series, per_series)

    def send(self, folder: Path, dataset: str = "drill", project: str = "admin") -> Send:
        self._sends += 1
        log = self.work / f"dcmsend-{self._sends:03d}.log"
        return dcmsend(self.settings.receiver.port, folder, dataset, project, log)

    # -- checking ----------------------------------------------------------------------------

    def outcome(
        self, name: str, cargo: Cargo, acked: set[str], fault_at: float, wait: float
    ) -> Outcome:
        """Watch until every series with an acknowledged instance is complete (or ``wait``)."""
        expected = {uid: sops & acked for uid, sops in cargo.series.items() if sops & acked}
        seconds: float | None = None
        state: tuple[set[str], dict[str, str]] = (set(), {})
        deadline = time.monotonic() + wait
        while True:
            state = self._state(expected)
            in_pacs, incomplete = state
            if not incomplete and acked <= in_pacs:
                seconds = time.monotonic() - fault_at
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1.0)
        in_pacs, incomplete = state
        return Outcome(
            name=name,
            sent=cargo.instances,
            acknowledged=len(acked),
            in_pacs=len(acked & in_pacs),
            series_expected=len(expected),
            series_complete=len(expected) - len(incomplete),
            seconds=seconds,
            missing=sorted(acked - in_pacs)[:10],
            incomplete=incomplete,
        )

    def _state(self, expected: dict[str, set[str]]) -> tuple[set[str], dict[str, str]]:
        """The acknowledged instances the PACS holds, and the series not complete (and why)."""
        return completion(self.settings, expected)


def _document(index: Any, uid: str) -> dict[str, Any] | None:
    try:
        doc = index.get("admin", uid)
    except Exception:
        return None
    return doc if isinstance(doc, dict) else None


def _pacs_instances(pacs: DicomWebClient, series_uid: str) -> set[str]:
    try:
        found = pacs.find_series(series_uid)
        if not found:
            return set()
        study = study_uid_of(found[0])
        return set(pacs.series_instances(study, series_uid)) if study else set()
    except (PacsError, OSError):
        return set()


def _lacks(doc: dict[str, Any] | None, sops: set[str], held: set[str]) -> str:
    """What keeps a series from being complete ('' when it is)."""
    if not sops <= held:
        return f"{len(sops - held)} acknowledged instance(s) not in the PACS"
    if doc is None:
        return "not indexed"
    if doc.get("pacs_state") != "stored":
        return f"pacs_state {doc.get('pacs_state')!r}"
    if not doc.get("thumbnail_key"):
        return "no thumbnail"
    if not (doc.get("validation") or {}).get("level"):
        return "not validated"
    return ""


def _processes_naming(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if text in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
    return found


def _tolerant(predicate: Callable[[], bool]) -> Callable[[], bool]:
    """``predicate`` with a component that is away read as "not yet"."""

    def ask() -> bool:
        try:
            return predicate()
        except (AirflowError, OSError):
            return False

    return ask


def fill(path: Path, leave: int) -> Path:
    """Fill the file system of ``path`` until ``leave`` bytes are free; the filler file."""
    filler = path / "filler.bin"
    free = shutil.disk_usage(path).free - leave
    with filler.open("wb") as fh:
        block = b"\0" * (1 << 20)
        while free > 0:
            chunk = block[: min(len(block), free)]
            try:
                fh.write(chunk)
            except OSError:
                break
            free -= len(chunk)
    return filler


# -- the drills ------------------------------------------------------------------------------
# Each returns its row; ``series`` and ``per_series`` size the cargo (tests send little,
# the benchmark 2,000 instances in 20 series).

#: Components killed while the DAG runs are in flight (the receiver is killed mid-association).
DURING_RUNS = (
    "airflow-scheduler",
    "airflow-api-server",
    "airflow-dag-processor",
    "orthanc",
    "s3",
    "postgres",
    "web",
    "dispatcher",
)


def during_runs(
    drill: Drill, name: str, fault: Callable[[], float], series: int, per_series: int, wait: float
) -> Outcome:
    """Send one cargo; once its DAG runs are in flight, cause ``fault``; watch it heal."""
    cargo = drill.cargo(series, per_series)
    acked = drill.send(cargo.folder).wait()
    if not drill.runs_in_flight():
        raise RuntimeError("no DAG run started")
    fault_at = fault()
    return drill.outcome(name, cargo, acked, fault_at, wait)


def kill_component(
    drill: Drill, component: str, series: int, per_series: int, wait: float
) -> Outcome:
    """kill -9 of ``component`` during the runs."""
    return during_runs(
        drill, f"kill -9 {component}", lambda: drill.kill(component), series, per_series, wait
    )


def kill_task(drill: Drill, series: int, per_series: int, wait: float) -> Outcome:
    """kill -9 of one running task's processes during the runs."""
    return during_runs(
        drill, "kill -9 one running task", drill.kill_a_running_task, series, per_series, wait
    )


def kill_receiver(drill: Drill, series: int, per_series: int, wait: float) -> Outcome:
    """kill -9 of the receiver once a third of the association is acknowledged."""
    cargo = drill.cargo(series, per_series)
    before = drill.received()
    send = drill.send(cargo.folder)
    third = _tolerant(lambda: drill.received() - before >= cargo.instances // 3)
    if not wait_until(third, 300, interval=0.02):
        raise RuntimeError("the receiver did not take a third of the association")
    # The sender is held while the receiver dies: a fast receiver could otherwise take the
    # rest of the association between the poll and the kill.
    with send.frozen():
        fault_at = drill.kill("receiver")
    acked = send.wait()
    return drill.outcome("kill -9 receiver mid-association", cargo, acked, fault_at, wait)


def send_while_postgres_is_down(drill: Drill, series: int, per_series: int, wait: float) -> Outcome:
    """PostgreSQL killed and kept down (the supervisor held) for a whole dcmsend."""
    cargo = drill.cargo(series, per_series)
    postgres = drill.stack.component("postgres")
    with drill.supervisor_held():
        fault_at = drill.kill("postgres")
        if not wait_until(lambda: not postgres.healthy(), 30):
            raise RuntimeError("PostgreSQL still answers after kill -9")
        acked = drill.send(cargo.folder).wait()
    return drill.outcome("dcmsend while PostgreSQL is down", cargo, acked, fault_at, wait)


def senders_while_scheduler_dies(
    drill: Drill, senders: int, per_series: int, wait: float
) -> Outcome:
    """``senders`` concurrent dcmsend (a series each); the scheduler killed once, mid-runs."""
    cargo = drill.cargo(senders, per_series)
    sends = [drill.send(folder) for folder in cargo.split(senders)]
    if not drill.runs_in_flight():
        raise RuntimeError("no DAG run started")
    fault_at = drill.kill("airflow-scheduler")
    acked: set[str] = set().union(*(s.wait() for s in sends))
    return drill.outcome(
        f"{senders} senders, kill -9 airflow-scheduler", cargo, acked, fault_at, wait
    )


def spool_fills_up(drill: Drill, series: int, per_series: int, wait: float) -> Outcome:
    """The spool's file system full a third into an association; space freed after it."""
    cargo = drill.cargo(series, per_series)
    size = sum(p.stat().st_size for p in cargo.folder.rglob("*.dcm"))
    filler = fill(drill.settings.spool_dir, leave=size // 3)
    try:
        fault_at = time.monotonic()
        acked = drill.send(cargo.folder).wait()
    finally:
        filler.unlink()
    return drill.outcome("spool full mid-association, then freed", cargo, acked, fault_at, wait)
