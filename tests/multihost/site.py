"""A multi-host site on one machine: network namespaces joined by veth links to a bridge.

Each host is a network namespace of its own (``ip netns``, Debian's iproute2) with a veth link
to a bridge that lives in a namespace of its own too, so nothing of the site is reachable from
the machine's own network, and the site reaches nothing else. Every host runs the platform as
an operator would there (``dicomflow up``, ``dicomflow receiver``, ``dicomflow worker``), with
its own data directory and the shared services' addresses in its settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomflow.pipeline.handover import UPLOADED_FILE
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool
from dicomflow.stack.isolated import stack_data_dir
from tests.faults.drill import Send

REPO = Path(__file__).resolve().parents[2]
DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")
#: The site's network: addresses of its own hosts only.
NETWORK = "10.77.0"
SHARED_IP = f"{NETWORK}.1"
PORTS = {"postgres": 5433, "pacs": 8042, "s3": 8333, "airflow": 8080, "redis": 6379}


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; its output is kept for the failure message."""
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


@dataclass
class Host:
    """One namespace of the site: its name, address, data directory and settings."""

    netns: str
    ip: str
    #: The host's name, in a UTS namespace of its own: Airflow records it per task instance.
    hostname: str
    env: dict[str, str] = field(default_factory=dict)
    data_dir: Path = field(default_factory=stack_data_dir)

    def _inside(self, command: list[str]) -> list[str]:
        return [
            "ip", "netns", "exec", self.netns, "unshare", "--uts",
            "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *command,
        ]  # fmt: skip

    def exec(
        self, command: list[str], env_extra: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the host, with its settings."""
        return run(self._inside(command), env={**self.environ(), **(env_extra or {})}, **kwargs)

    def popen(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``command`` inside the host, its output in ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen(
                self._inside(command),
                env=self.environ(),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def environ(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
        return {**base, "DICOMFLOW_DATA_DIR": str(self.data_dir), **self.env}

    def pids(self) -> list[int]:
        """Every process running inside the host."""
        out = run(["ip", "netns", "pids", self.netns]).stdout.split()
        return [int(p) for p in out]

    def celery_worker_maps(self) -> str:
        """The memory map of the host's Celery worker: the process that forks its pool."""
        pids = set(self.pids())

        def celery(pid: int) -> bool:
            with contextlib.suppress(OSError):
                return b"celery" in Path(f"/proc/{pid}/cmdline").read_bytes()
            return False

        def parent(pid: int) -> int:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])

        (main,) = [p for p in pids if celery(p) and not (parent(p) in pids and celery(parent(p)))]
        return Path(f"/proc/{main}/maps").read_text()

    def kill_everything(self) -> int:
        """``kill -9`` every process of the host (the host goes down); how many there were."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)


class Site:
    """The namespaces, their links and the platform on each.

    Parameters
    ----------
    work
        Folder for logs and the senders' reports.
    workers
        How many worker hosts.
    """

    def __init__(self, work: Path, workers: int = 2) -> None:
        self.work = work
        tag = secrets.token_hex(3)
        self.switch = f"dfm-{tag}-sw"
        self.passwords = {
            "DICOMFLOW_POSTGRES__PASSWORD": secrets.token_urlsafe(12),
            "DICOMFLOW_PACS__PASSWORD": secrets.token_urlsafe(12),
            "DICOMFLOW_AIRFLOW__PASSWORD": secrets.token_urlsafe(12),
            "DICOMFLOW_AIRFLOW__BROKER_PASSWORD": secrets.token_hex(12),
            "DICOMFLOW_S3__ACCESS_KEY": secrets.token_hex(8),
            "DICOMFLOW_S3__SECRET_KEY": secrets.token_urlsafe(20),
            "DICOMFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        }
        self.shared = Host(f"dfm-{tag}-shared", SHARED_IP, "shared")
        self.receivers = [Host(f"dfm-{tag}-r{i}", f"{NETWORK}.{10 + i}", f"r{i}") for i in (1, 2)]
        self.workers = [
            Host(f"dfm-{tag}-w{i}", f"{NETWORK}.{20 + i}", f"w{i}") for i in range(1, workers + 1)
        ]
        self.sender = Host(f"dfm-{tag}-sender", f"{NETWORK}.31", "sender")
        self.hosts = [self.shared, *self.receivers, *self.workers, self.sender]
        self._configure()

    # -- settings -----------------------------------------------------------------------------

    def _configure(self) -> None:
        common = {
            **self.passwords,
            "DICOMFLOW_POSTGRES__HOST": SHARED_IP,
            "DICOMFLOW_POSTGRES__PORT": str(PORTS["postgres"]),
            "DICOMFLOW_S3__ENDPOINT": f"{SHARED_IP}:{PORTS['s3']}",
            "DICOMFLOW_AIRFLOW__EXECUTOR": "celery",
            "DICOMFLOW_AIRFLOW__PORT": str(PORTS["airflow"]),
            "DICOMFLOW_AIRFLOW__BROKER_PORT": str(PORTS["redis"]),
            "DICOMFLOW_PACS__HTTP_PORT": str(PORTS["pacs"]),
            # Small batches and quick hand-overs: a test-sized site.
            "DICOMFLOW_RECEIVER__BATCH_IDLE_SECONDS": "2",
        }
        remote = {
            **common,
            "DICOMFLOW_AIRFLOW__URL": f"http://{SHARED_IP}:{PORTS['airflow']}",
            "DICOMFLOW_AIRFLOW__BROKER_URL": (
                f"redis://:{self.passwords['DICOMFLOW_AIRFLOW__BROKER_PASSWORD']}"
                f"@{SHARED_IP}:{PORTS['redis']}/0"
            ),
            "DICOMFLOW_PACS__DICOMWEB_URL": f"http://{SHARED_IP}:{PORTS['pacs']}/dicom-web",
        }
        self.shared.env = {
            **common,
            "DICOMFLOW_AIRFLOW__HOST": SHARED_IP,
            "DICOMFLOW_PACS__REMOTE_ACCESS": "true",
            "DICOMFLOW_AIRFLOW__WORKER": "false",
            "DICOMFLOW_RECEIVER__MANAGED": "false",
            "DICOMFLOW_WEB__MANAGED": "false",
        }
        for host in self.receivers:
            host.env = {**remote, "DICOMFLOW_RECEIVER__HOST": host.ip}
        for host in self.workers:
            # The Celery node takes the host's name (airflow.worker_name empty).
            host.env = {**remote, "DICOMFLOW_AIRFLOW__WORKER_CONCURRENCY": "2"}
        self.sender.env = dict(remote)

    # -- network ------------------------------------------------------------------------------

    def _ip(self, *args: str) -> None:
        done = run(["ip", *args])
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def build_network(self) -> None:
        """The switch namespace with its bridge, and each host linked to it."""
        self._ip("netns", "add", self.switch)
        self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.switch, "link", "set", "br0", "up")
        for i, host in enumerate(self.hosts):
            self._ip("netns", "add", host.netns)
            self._ip("-n", host.netns, "link", "set", "lo", "up")
            # Made inside the host, its peer straight in the switch: never in this namespace.
            port = f"p{i}"
            self._ip(
                "-n", host.netns, "link", "add", "eth0", "type", "veth",
                "peer", "name", port, "netns", self.switch,
            )  # fmt: skip
            self._ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
            self._ip("-n", host.netns, "link", "set", "eth0", "up")
            self._ip("-n", self.switch, "link", "set", port, "master", "br0")
            self._ip("-n", self.switch, "link", "set", port, "up")

    def tear_down(self) -> None:
        """Stop every process of every host, remove the namespaces and the data."""
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.exec([DICOMFLOW, "down"], timeout=90)
        for _ in range(3):
            for host in self.hosts:
                host.kill_everything()
            time.sleep(0.5)
        for name in [h.netns for h in self.hosts] + [self.switch]:
            run(["ip", "netns", "del", name])
        for host in self.hosts:
            # PostgreSQL's files belong to its user; root removes them all the same.
            shutil.rmtree(host.data_dir, ignore_errors=True)

    # -- the platform -------------------------------------------------------------------------

    def start(self, host: Host, *command: str) -> None:
        """``dicomflow COMMAND`` on a host; raise with its output when it fails."""
        done = host.exec([DICOMFLOW, *command], timeout=900, cwd=REPO)
        (self.work / f"{host.netns}-{command[0]}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(
                f"`dicomflow {' '.join(command)}` on {host.netns} failed:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )

    def start_all(self) -> None:
        """The shared services first (their secrets are the site's), then the other hosts."""
        self.start(self.shared, "up")
        secrets_file = self.shared.data_dir / "secrets.json"
        for host in [*self.receivers, *self.workers, self.sender]:
            host.data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(secrets_file, host.data_dir / "secrets.json")
        for host in self.receivers:
            self.start(host, "receiver")
        for host in self.workers:
            self.start(host, "worker")

    # -- sending and checking ------------------------------------------------------------------

    def send(self, receiver: Host, folder: Path, name: str) -> Send:
        """``dcmsend`` from the sender host to ``receiver`` (logging each response)."""
        log = self.work / f"dcmsend-{name}.log"
        command = [
            "dcmsend", "--debug", receiver.ip, "11112", "--aetitle", "MULTIHOST",
            "--call", "ADMIN", "--scan-directories", "--recurse", str(folder),
        ]  # fmt: skip
        return Send(self.sender.popen(command, log), log)

    def state(self, expected: dict[str, set[str]]) -> tuple[set[str], dict[str, str]]:
        """What the PACS holds of ``expected`` and which series are not complete (and why).

        Asked from the sender host: the site's services are not reachable from here.
        """
        query = self.work / "expected.json"
        query.write_text(json.dumps({uid: sorted(sops) for uid, sops in expected.items()}))
        done = self.sender.exec(
            [sys.executable, "-m", "tests.multihost.check", str(query)], timeout=120, cwd=REPO
        )
        if done.returncode != 0:
            return set(), {uid: f"check failed: {done.stderr[-500:]}" for uid in expected}
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        return set(answer["in_pacs"]), dict(answer["incomplete"])

    def tasks(self, where: str) -> list[tuple[str, str, str, int, str]]:
        """Task instances of the site (run, task, state, try, host) matching an SQL condition,
        read from Airflow's metadata database (from the shared host)."""
        query = (
            "SELECT run_id, task_id, coalesce(state, ''), try_number, coalesce(hostname, '') "
            f"FROM task_instance WHERE {where}"
        )
        done = self.shared.exec(
            ["psql", "-h", SHARED_IP, "-p", str(PORTS["postgres"]), "-U", "dicomflow",
             "-d", "airflow", "-At", "-F", "\t", "-c", query],
            timeout=60,
            env_extra={"PGPASSWORD": self.passwords["DICOMFLOW_POSTGRES__PASSWORD"]},
        )  # fmt: skip
        rows = []
        for line in done.stdout.splitlines():
            run_id, task_id, state, tries, host = line.split("\t")
            rows.append((run_id, task_id, state, int(tries), host))
        return rows

    def wait_settled(self, receiver: Host, timeout: float) -> list[str]:
        """Wait until every batch of a receiver's spool is done, its instance files removed and
        its object-store copy released; the batches that are not (empty: all settled)."""
        spool = Spool(receiver.data_dir / "spool")
        deadline = time.monotonic() + timeout
        while True:
            unsettled = [
                b.id
                for b in spool.batches()
                if b.state is not BatchState.DONE
                or (spool.batch_path(b.id) / UPLOADED_FILE).exists()
                or any(e.path.exists() for e in spool.manifest(b.id))
            ]
            if not unsettled or time.monotonic() > deadline:
                return unsettled
            time.sleep(2)

    def wait_complete(
        self, expected: dict[str, set[str]], timeout: float
    ) -> tuple[set[str], dict[str, str]]:
        """Watch until every expected series is complete, or ``timeout``; the last state."""
        deadline = time.monotonic() + timeout
        while True:
            in_pacs, incomplete = self.state(expected)
            wanted = set().union(*expected.values()) if expected else set()
            if not incomplete and wanted <= in_pacs:
                return in_pacs, incomplete
            if time.monotonic() > deadline:
                return in_pacs, incomplete
            time.sleep(3)
