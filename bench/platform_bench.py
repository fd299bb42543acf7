"""What the whole-platform benchmarks share: test files, senders, references, a stack, milestones.

Not a benchmark itself (``bench/run_all.py`` runs ``bench_*.py`` only). Used by
``bench_pipeline.py``, ``bench_scenarios.py`` and ``bench_pacs_store.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import text

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings, load_settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.dicom.headers import Instance, group_series
from dicomflow.index import open_index
from dicomflow.spool.store import Spool
from dicomflow.stack.isolated import free_port, stack_data_dir, stack_environment
from dicomflow.stack.process import COMPONENT_VARIABLE, marked_processes, session_components
from dicomflow.validation.series import representative_instances, sample_evenly

DAG_ID = "service-process-incoming-dcm"
VALIDATION_DAG_ID = "service-validate-instances"
#: The environment dcmtk's tools need to set TCP_NODELAY (Nagle's algorithm caps them at
#: ~20 instances/s on loopback otherwise).
NODELAY = {**os.environ, "TCP_NODELAY": "1"}


def load() -> str:
    """The load averages (1, 5, 15 min) as ``uptime`` shows them."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# -- test files -----------------------------------------------------------------------------


def make_instances(
    folder: Path,
    series: int,
    per_series: int,
    *,
    side: int = 64,
    prefix: str = "",
) -> list[str]:
    """``series`` x ``per_series`` CT instances of ``side`` x ``side`` 16-bit pixels.

    ``side`` 64 gives about 9 KB per file, 128 (pydicom's ``CT_small.dcm`` as it is) about
    39 KB, 500 about 500 KB. Every series has a study of its own, new UIDs each call.

    Returns
    -------
    list of str
        The Series Instance UIDs.
    """
    source = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    pixels = source.pixel_array
    if side != pixels.shape[0]:
        # Tiled (or cut) to size: thumbnails and checks see a plausible image.
        reps = -(-side // pixels.shape[0])
        pixels = np.tile(pixels, (reps, reps))[:side, :side]
    pixels = np.ascontiguousarray(pixels)
    source.Rows, source.Columns = pixels.shape
    source.PixelData = pixels.tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    uids: list[str] = []
    for s in range(series):
        series_uid = generate_uid()
        uids.append(series_uid)
        source.StudyInstanceUID = generate_uid()
        source.SeriesInstanceUID = series_uid
        source.SeriesNumber = s + 1
        for i in range(per_series):
            source.SOPInstanceUID = generate_uid()
            source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
            source.InstanceNumber = i + 1
            source.ImagePositionPatient = [0.0, 0.0, float(i)]
            source.save_as(folder / f"{prefix}s{s:04d}-{i:05d}.dcm", enforce_file_format=True)
    return uids


def files_of(folder: Path) -> list[Path]:
    """The files under a folder (its sub-folders too), in path order."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


# -- senders --------------------------------------------------------------------------------


def dcmsend(port: int, folder: Path, calling: str, called: str) -> float:
    """Seconds for one ``dcmsend`` (one association) to send every file of ``folder``."""
    start = time.monotonic()
    subprocess.run(
        [
            "dcmsend",
            "127.0.0.1",
            str(port),
            "--aetitle",
            calling,
            "--call",
            called,
            "--scan-directories",
            str(folder),
        ],
        env=NODELAY,
        check=True,
        capture_output=True,
    )
    return time.monotonic() - start


def dcmsend_parallel(port: int, folders: Sequence[Path], called: str) -> float:
    """Seconds until every folder was sent, one ``dcmsend`` per folder, all at once."""
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                "dcmsend",
                "127.0.0.1",
                str(port),
                "--aetitle",
                f"SENDER{n:03d}",
                "--call",
                called,
                "--scan-directories",
                str(folder),
            ],
            env=NODELAY,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n, folder in enumerate(folders)
    ]
    failed = []
    for proc in procs:
        _out, err = proc.communicate()
        if proc.returncode:
            failed.append(err.decode(errors="replace")[-300:])
    if failed:
        raise RuntimeError(f"{len(failed)} dcmsend(s) failed; first: {failed[0]}")
    return time.monotonic() - start


def storescu_each(port: int, files: Sequence[Path], called: str) -> float:
    """Seconds to send each file in an association of its own (``storescu`` per file)."""
    start = time.monotonic()
    for path in files:
        subprocess.run(
            ["storescu", "-aet", "MODALITY", "-aec", called, "127.0.0.1", str(port), str(path)],
            env=NODELAY,
            check=True,
            capture_output=True,
        )
    return time.monotonic() - start


def wait_listening(
    port: int, proc: subprocess.Popen[bytes] | None = None, wait: float = 30
) -> None:
    """Wait until something accepts connections on the loopback ``port``."""
    deadline = time.monotonic() + wait
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


# -- references -----------------------------------------------------------------------------


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU time of a process and of its children that it has waited for."""
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Reference:
    """A reference receive: wall seconds and the receiving process's CPU seconds."""

    seconds: float
    cpu: float


def orthanc_alone(
    folder: Path, work: Path, send: Callable[[int, Path], float] | None = None
) -> Reference:
    """Orthanc (DICOM port on, nothing else) receiving every file of ``folder`` from dcmsend.

    ``send(port, folder)`` replaces the single ``dcmsend`` when given.
    """
    http, dicom = free_port(), free_port()
    root = Path(tempfile.mkdtemp(prefix="orthanc-alone-", dir=work))
    config = {
        "StorageDirectory": str(root),
        "IndexDirectory": str(root),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "AuthenticationEnabled": False,
        "Plugins": [],
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    # dcmtk inside Orthanc sets TCP_NODELAY only when the variable is set.
    proc = subprocess.Popen(
        ["Orthanc", str(root / "orthanc.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=NODELAY,
    )
    try:
        wait_listening(dicom, proc)
        ps = psutil.Process(proc.pid)
        before = cpu_seconds(ps)
        took = send(dicom, folder) if send else dcmsend(dicom, folder, "BENCH", "ORTHANC")
        return Reference(took, cpu_seconds(ps) - before)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def storescp_alone(folder: Path, work: Path) -> Reference:
    """dcmtk's ``storescp`` (into an empty directory) receiving ``folder`` from one dcmsend."""
    port = free_port()
    target = Path(tempfile.mkdtemp(prefix="storescp-", dir=work))
    proc = subprocess.Popen(
        ["storescp", "-od", str(target), "-aet", "STORESCP", str(port)],
        env=NODELAY,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)
        ps = psutil.Process(proc.pid)
        before = cpu_seconds(ps)
        took = dcmsend(port, folder, "BENCH", "STORESCP")
        return Reference(took, cpu_seconds(ps) - before)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(target, ignore_errors=True)


def plain_dciodvfy_rate(files: Sequence[Path]) -> float:
    """Files per second of plain ``dciodvfy`` processes, one after another (one core)."""
    start = time.monotonic()
    for path in files:
        subprocess.run(["dciodvfy", str(path)], capture_output=True, check=False)
    return len(files) / (time.monotonic() - start)


# -- the stack ------------------------------------------------------------------------------


def bench_settings(**overrides: str) -> Settings:
    """Settings of a throwaway stack on free ports; ``overrides``: ``SECTION__KEY`` -> value."""
    env = stack_environment(stack_data_dir())
    env.update({f"DICOMFLOW_{k.upper()}": v for k, v in overrides.items()})
    return load_settings(
        environ={**{k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}, **env}
    )


def stack_processes(stack_dir: Path) -> list[tuple[psutil.Process, str]]:
    """Every live process of a stack with its component: the marked ones and their descendants.

    PostgreSQL's backends lead sessions of their own and overwrite their environment with
    their titles: they carry no mark, but descend from the postmaster. Until they were counted
    this way, the stack's CPU left out every query's.
    """
    sessions = session_components(stack_dir)
    parts: dict[int, str] = {}
    found: dict[int, psutil.Process] = {}
    for proc in marked_processes(stack_dir):
        try:
            parts[proc.pid] = (
                proc.environ().get(COMPONENT_VARIABLE)
                or sessions.get(os.getsid(proc.pid))
                or proc.name()
            )
        except (psutil.Error, OSError):
            continue
        found[proc.pid] = proc
    children: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc)
    todo = list(found)
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child.pid not in found:
                found[child.pid] = child
                parts[child.pid] = parts[pid]
                todo.append(child.pid)
    return [(proc, parts[pid]) for pid, proc in found.items()]


class StackCpu:
    """CPU seconds spent by every process of a stack (those it started and their children).

    A process's own time counts while it lives; the time of children it has waited for
    (Airflow's task processes, dciodvfy) is in its ``children_*`` times.
    """

    def __init__(self, settings: Settings) -> None:
        self._dir = settings.data_dir
        self._start: dict[tuple[int, float], float] = {}

    def _sample(self) -> dict[tuple[int, float], float]:
        found = {}
        for proc, _ in stack_processes(self._dir):
            try:
                found[(proc.pid, proc.create_time())] = cpu_seconds(proc)
            except psutil.Error:
                continue
        return found

    def start(self) -> None:
        """Take the starting point."""
        self._start = self._sample()

    def spent(self) -> float:
        """CPU seconds since :meth:`start`."""
        now = self._sample()
        # A process that ended meanwhile was reaped by its parent, in whose children's time
        # all of its CPU now is, also what it had spent before the start.
        ended = sum(cpu for key, cpu in self._start.items() if key not in now)
        return sum(cpu - self._start.get(key, 0.0) for key, cpu in now.items()) - ended

    def settle(self, idle: float = 0.35, window: float = 1.0, wait: float = 60.0) -> None:
        """Wait (at most ``wait`` s) until the stack spends under ``idle`` of a core.

        A stack with nothing to do spends 0.15-0.25 of a core (the scheduler's loop and its
        queries, measured with :class:`ComponentCpu`).

        A task process's CPU counts when its parent reaps it: one that ends just after the
        previous scenario would be counted in the next (the 300-series row once showed
        85 ms per instance instead of ~50, the previous scenario's background lane).
        """
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.start()
            time.sleep(window)
            if self.spent() < idle * window:
                return


def _part_of(proc: psutil.Process, component: str) -> str:
    """Which part of the stack a process's CPU goes to: its component, with two splits.

    ``dciodvfy`` (plain, or the fork server with the children it has reaped) and Airflow's
    task processes (the LocalExecutor's workers, which run the pipeline's steps) are told
    apart from the Airflow component that started them.
    """
    if proc.name().startswith("dciodvfy"):
        return "dciodvfy"
    # The LocalExecutor's workers, and the task processes they fork (which retitle
    # themselves ``airflow worker -- <task instance>``).
    command = " ".join(proc.cmdline())
    if command.startswith("airflow worker") or "LocalExecutor" in command:
        return "airflow tasks (the steps)"
    return component


class ComponentCpu:
    """CPU seconds per part of a stack (:func:`_part_of`), sampled while a scenario runs.

    Each process's own time is read every ``interval`` seconds; new processes are looked for
    every ``discover`` seconds. What a process spends after its last sample, and a process
    that lives and dies between two looks (a short task, a dciodvfy run outside the fork
    server), is not seen: :meth:`spent` names what the samples missed of :class:`StackCpu`'s
    total ``unattributed``. Sampling costs the benchmark's process about 2% of a core; runs
    with and without it agree (bench/JOURNAL.md, 2026-12-06 20:25).
    """

    def __init__(self, settings: Settings, interval: float = 0.2, discover: float = 1.0) -> None:
        self._dir = settings.data_dir
        self._interval, self._discover = interval, discover
        self._procs: dict[tuple[int, float], tuple[psutil.Process, str, float]] = {}
        self._last: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _own(proc: psutil.Process, part: str) -> float:
        # The fork server's runs end within milliseconds; it reaps them, so they are in its
        # children's time. Any other child is a stack process sampled on its own.
        if part == "dciodvfy":
            return cpu_seconds(proc)
        t = proc.cpu_times()
        return t.user + t.system

    def _look(self, first: bool) -> None:
        for proc, component in stack_processes(self._dir):
            try:
                key = (proc.pid, proc.create_time())
                if key in self._procs:
                    continue
                part = _part_of(proc, component)
                parent = proc.parent() if part == "dciodvfy" else None
                if parent is not None and parent.name() == proc.name():
                    continue  # a fork server's run: in the server's children's time
                # Already running at the start: only what it spends from now on counts.
                self._procs[key] = (proc, part, self._own(proc, part) if first else 0.0)
            except psutil.Error:
                continue

    def _sample(self) -> None:
        for key, (proc, part, _) in list(self._procs.items()):
            try:
                self._last[key] = self._own(proc, part)
            except psutil.Error:
                continue  # ended: its last sample stands

    def _run(self) -> None:
        next_look = time.monotonic() + self._discover
        while not self._stop.wait(self._interval):
            if time.monotonic() >= next_look:
                self._look(first=False)
                next_look = time.monotonic() + self._discover
            self._sample()

    def start(self) -> None:
        """Take the starting point and start sampling."""
        self._procs.clear()
        self._last.clear()
        self._look(first=True)
        self._sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="component-cpu", daemon=True)
        self._thread.start()

    def spent(self, total: float) -> dict[str, float]:
        """Stop sampling; CPU seconds per part since :meth:`start`, largest first.

        ``total``: :meth:`StackCpu.spent` over the same time; what the samples did not see
        of it is ``unattributed``.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._look(first=False)
        self._sample()
        parts: dict[str, float] = {}
        for key, (_, part, base) in self._procs.items():
            parts[part] = parts.get(part, 0.0) + max(0.0, self._last.get(key, base) - base)
        parts["unattributed"] = max(0.0, total - sum(parts.values()))
        return dict(sorted(parts.items(), key=lambda kv: -kv[1]))


def warm_up(settings: Settings, work: Path, wait: float) -> None:
    """One small batch through the whole platform, as on a site that is already running.

    The first DAG run after ``dicomflow up`` pays one-off start-up costs (Airflow's first task
    process, first requests to each service) that a running site has paid long before.
    """
    ProjectStore(make_engine(settings.platform_db_url)).create_project("warmup")
    folder = work / "warmup"
    (uid,) = make_instances(folder, 1, 2)
    dcmsend(settings.receiver.port, folder, "warmup", "warmup")
    index = open_index(settings)
    deadline = time.monotonic() + wait
    try:
        # Two instances: the representative set is the whole series.
        while not (processed(doc := index.get("warmup", uid) or {}) and checked(doc) >= 2):
            if time.monotonic() > deadline:
                # Measuring after a warm-up batch that never finished measures a broken stack.
                raise SystemExit(f"the warm-up batch was not complete within {wait:.0f} s")
            time.sleep(0.2)
    finally:
        index.close()


def to_check(folder: Path, sample: int | None) -> dict[str, int]:
    """Instances the two validation lanes check, by series: the representative set, and
    ``validation.sample`` of the series (all when ``None``) in the background lane."""
    counts = {}
    for group in group_series(files_of(folder)).series:
        ordered = sorted(group.instances, key=Instance.sort_key)
        chosen = representative_instances(group) + sample_evenly(ordered, sample)
        counts[group.series_instance_uid] = len({i.sop_instance_uid for i in chosen})
    return counts


def representative_count(folder: Path) -> int:
    """Instances the first validation lane checks in ``folder``."""
    return sum(len(representative_instances(g)) for g in group_series(files_of(folder)).series)


# -- milestones -----------------------------------------------------------------------------


def processed(doc: dict[str, Any]) -> bool:
    """Stored in the PACS, with a thumbnail and the validation of its representative set."""
    return (
        doc.get("pacs_state") == "stored"
        and bool(doc.get("thumbnail_key"))
        and bool(doc.get("validation"))
    )


def checked(doc: dict[str, Any]) -> int:
    """How many of the series' instances were validated so far (both lanes)."""
    return int((doc.get("validation") or {}).get("instances_checked") or 0)


MILESTONES = ("searchable", "stored", "complete", "validated")

# One query per look for all of a project's series: asking per series would cost the stack
# measured here CPU of its own with hundreds of series (the embedded index's table).
_STATE_SQL = text(
    """
    SELECT series_uid,
           (doc ->> 'instance_count')::int,
           doc ->> 'pacs_state',
           doc ->> 'thumbnail_key',
           doc -> 'validation' IS NOT NULL AND doc -> 'validation' <> 'null'::jsonb,
           COALESCE((doc -> 'validation' ->> 'instances_checked')::int, 0)
      FROM series_documents WHERE project = :project
    """
)


@dataclass
class Milestones:
    """When the last series of a send reached each milestone (monotonic clock)."""

    reached: dict[str, float] = field(default_factory=dict)
    short: dict[str, int] = field(default_factory=dict)


def watch(
    settings: Settings,
    project: str,
    expected: dict[str, tuple[int, int]],
    wait: float,
    started: float,
) -> Milestones:
    """Follow a project's series until every one is validated (or ``wait`` runs out).

    ``expected``: Series Instance UID -> (instances, instances both lanes check). A series is
    *searchable* once its document has every instance, *stored* once it says so
    (``pacs_state``), *complete* once stored with a thumbnail and the representative
    validation, *validated* once complete and every instance to check is checked.
    """
    engine = make_engine(settings.platform_db_url)
    waiting = {name: set(expected) for name in MILESTONES}
    result = Milestones()
    try:
        while waiting["validated"] and time.monotonic() - started < wait:
            with engine.connect() as conn:
                rows = conn.execute(_STATE_SQL, {"project": project}).all()
            now = time.monotonic()
            for uid, count, state, thumb, has_validation, nchecked in rows:
                if uid not in expected or count != expected[uid][0]:
                    continue
                complete = state == "stored" and bool(thumb) and bool(has_validation)
                met = {
                    "searchable": True,
                    "stored": state == "stored",
                    "complete": complete,
                    "validated": complete and nchecked >= expected[uid][1],
                }
                for name, done in met.items():
                    if done and uid in waiting[name]:
                        waiting[name].discard(uid)
                        if not waiting[name]:
                            result.reached[name] = now
            time.sleep(0.1)
    finally:
        engine.dispose()
    result.short = {name: len(uids) for name, uids in waiting.items() if uids}
    return result


def expected_of(folder: Path, sample: int | None = None) -> dict[str, tuple[int, int]]:
    """Series Instance UID -> (instances, instances both validation lanes check)."""
    counts: dict[str, int] = {}
    for group in group_series(files_of(folder)).series:
        counts[group.series_instance_uid] = len(group.instances)
    checks = to_check(folder, sample)
    return {uid: (n, checks[uid]) for uid, n in counts.items()}


# -- Airflow's view -------------------------------------------------------------------------


def step_times(settings: Settings, project: str) -> tuple[dict[str, float], dict[str, int], int]:
    """Seconds per task (``DAG: task``) summed over the runs that took ``project``'s batches;
    the runs per DAG; and the batches."""
    batch_ids = {b.id for b in Spool.from_settings(settings).batches() if b.project == project}
    totals: dict[str, float] = {}
    runs: dict[str, int] = {}
    with AirflowClient.from_settings(settings) as client:
        for dag_id in (DAG_ID, VALIDATION_DAG_ID):
            # A run may take several batches (conf batch_ids); count each run once.
            for run in client.list_dag_runs(dag_id, limit=1000):
                if not batch_ids & set((run.get("conf") or {}).get("batch_ids") or []):
                    continue
                runs[dag_id] = runs.get(dag_id, 0) + 1
                # The last task may still be finishing after it wrote what was waited for.
                wait_for_end(client, dag_id, run["dag_run_id"])
                for ti in client.task_instances(dag_id, run["dag_run_id"]):
                    if ti.get("start_date") and ti.get("end_date"):
                        took = (
                            datetime.fromisoformat(ti["end_date"])
                            - datetime.fromisoformat(ti["start_date"])
                        ).total_seconds()
                        key = f"{dag_id}: {ti['task_id']}"
                        totals[key] = totals.get(key, 0.0) + took
    return totals, runs, len(batch_ids)


def wait_for_end(client: AirflowClient, dag_id: str, run_id: str, wait: float = 60.0) -> None:
    """Wait (at most ``wait`` s) for a DAG run to succeed or fail."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        run = client.get_dag_run(dag_id, run_id)
        if run is None or run.get("state") in ("success", "failed"):
            return
        time.sleep(0.5)


@contextmanager
def scratch(prefix: str = "dicomflow-bench-") -> Iterator[Path]:
    """A temporary folder, removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
