"""The platform's settings: one validated object, loaded once and passed down.

Values come, in increasing precedence, from ``config/defaults.yaml``, a user file
(``DICOMFLOW_CONFIG`` or ``./dicomflow.yaml``) and ``DICOMFLOW_<SECTION>__<KEY>`` environment
variables. Secrets left empty are generated at first start and kept in
``<data_dir>/secrets.json`` (mode 0600). No other module reads the environment.

The sections are msgspec Structs, not pydantic models: every command reads the settings, and
pydantic's import and schema building were most of a command's start (issue 23).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin

import msgspec
import yaml
from msgspec import Meta

ENV_PREFIX = "DICOMFLOW_"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS_FILE = REPO_ROOT / "config" / "defaults.yaml"

Port = Annotated[int, Meta(ge=1, le=65535)]
# DICOMFLOW_* variables that choose files or test targets rather than set a key.
NOT_SETTINGS = frozenset(
    {
        "DICOMFLOW_CONFIG",
        "DICOMFLOW_DEFAULTS",
        "DICOMFLOW_OPENSEARCH_URL",
        "DICOMFLOW_DASHBOARDS_URL",
        "DICOMFLOW_STACK_DIR",
        "DICOMFLOW_STACK_COMPONENT",
    }
)


class ConfigError(Exception):
    """An invalid configuration value; the message names the key, the value and what is allowed."""


class _Invalid(ValueError):
    """A rule across a section's keys is broken; ``key``, when given, is the one it is about."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# Subclasses repeat frozen=True for mypy (msgspec/msgspec#657); the rest they inherit.
class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    def replace(self, **changes: Any) -> Self:
        """A copy with some keys changed (not checked: the values must be valid)."""
        return msgspec.structs.replace(self, **changes)


class PostgresSettings(_Section, frozen=True):
    managed: bool
    host: str
    port: Port
    user: Annotated[str, Meta(pattern=r"^[a-z_][a-z0-9_]*$")]
    password: str
    airflow_database: Annotated[str, Meta(pattern=r"^[a-z_][a-z0-9_]*$")]
    platform_database: Annotated[str, Meta(pattern=r"^[a-z_][a-z0-9_]*$")]
    bin_dir: Path

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL of one database on this server."""
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


class PacsSettings(_Section, frozen=True):
    managed: bool
    dicomweb_url: str
    username: str
    password: str
    http_port: Port
    remote_access: bool
    dicom_port: Annotated[int, Meta(ge=0, le=65535)]
    stow_batch_size: Annotated[int, Meta(ge=1, le=10000)]
    stow_concurrency: Annotated[int, Meta(ge=1, le=64)]
    protocol: Literal["dicomweb", "dimse"]
    dimse_host: Annotated[str, Meta(min_length=1)]
    ae_title: Annotated[str, Meta(min_length=1, max_length=16, pattern=r"^[ -\[\]-~]+$")]
    calling_ae_title: Annotated[str, Meta(min_length=1, max_length=16, pattern=r"^[ -\[\]-~]+$")]
    dimse_associations: Annotated[int, Meta(ge=1, le=32)]

    def __post_init__(self) -> None:
        # Reported against protocol: the error then shows this value alone, not the whole
        # section with its password.
        if self.protocol == "dimse" and not self.dicom_port:
            raise _Invalid(
                "C-STORE needs pacs.dicom_port, which is 0: set it to the PACS's DICOM port "
                "(with managed: true, the port the local Orthanc opens), or use dicomweb",
                key="protocol",
            )

    @property
    def base_url(self) -> str:
        """DICOMweb root, the local Orthanc's unless configured."""
        return self.dicomweb_url or f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def orthanc_url(self) -> str:
        """Orthanc's REST root (local stack only)."""
        return f"http://127.0.0.1:{self.http_port}"


class S3Settings(_Section, frozen=True):
    managed: bool
    endpoint: Annotated[str, Meta(pattern=r"^[^/:]+:\d+$")]
    access_key: str
    secret_key: str
    secure: bool
    region: str
    bucket_prefix: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9.-]*$")]
    internal_port_base: Annotated[int, Meta(ge=1024, le=55000)]

    def bucket(self, project: str) -> str:
        """The bucket of a project."""
        return f"{self.bucket_prefix}{project}"

    @property
    def port(self) -> int:
        """Port of the endpoint."""
        return int(self.endpoint.rsplit(":", 1)[1])


class IndexSettings(_Section, frozen=True):
    backend: Literal["postgres", "opensearch"]
    opensearch_url: str
    opensearch_username: str
    opensearch_password: str
    opensearch_verify_certs: bool
    opensearch_ca_file: str
    opensearch_managed: bool
    opensearch_heap: Annotated[str, Meta(pattern=r"^[1-9][0-9]*[mMgG]$")]
    opensearch_http_port: Port
    opensearch_transport_port: Port
    dashboards_url: str
    on_arrival: bool

    def __post_init__(self) -> None:
        if self.opensearch_managed and self.opensearch_url:
            raise _Invalid(
                "opensearch_url is set and opensearch_managed is true: empty the URL to use "
                "the local node, or set opensearch_managed to false to use the cluster at "
                f"{self.opensearch_url}"
            )

    @property
    def opensearch_endpoint(self) -> str:
        """URL of the OpenSearch cluster: the configured one, else the local managed node's."""
        if self.opensearch_url or not self.opensearch_managed:
            return self.opensearch_url
        return f"http://127.0.0.1:{self.opensearch_http_port}"

    @property
    def runs_local_opensearch(self) -> bool:
        """Whether the local stack starts an OpenSearch node (backend opensearch, managed)."""
        return self.backend == "opensearch" and self.opensearch_managed


class AirflowSettings(_Section, frozen=True):
    managed: bool
    host: str
    port: Port
    parallelism: Annotated[int, Meta(ge=1, le=512)]
    task_niceness: Annotated[int, Meta(ge=0, le=19)]
    scheduler_idle_sleep: Annotated[float, Meta(ge=0.0, le=60.0)]
    url: str
    username: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    password: str
    executor: Literal["local", "celery"]
    broker_url: Annotated[str, Meta(pattern=r"^(|redis://.+|rediss://.+)$")]
    broker_port: Port
    broker_password: str
    worker: bool
    worker_concurrency: Annotated[int, Meta(ge=1, le=256)]
    worker_name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.@-]{0,64}$")]

    @property
    def base_url(self) -> str:
        """Root URL of Airflow's API server."""
        return self.url or f"http://{self.host}:{self.port}"

    @property
    def celery(self) -> bool:
        """Whether tasks run on Celery workers (any host) rather than beside the scheduler."""
        return self.executor == "celery"

    @property
    def runs_local_broker(self) -> bool:
        """Whether this stack starts its own Redis (celery, Airflow managed, no broker URL)."""
        return self.celery and self.managed and not self.broker_url

    @property
    def broker(self) -> str:
        """The Celery broker's URL: the configured one, else the stack's own Redis."""
        if self.broker_url:
            return self.broker_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"redis://:{self.broker_password}@{host}:{self.broker_port}/0"


class ReceiverSettings(_Section, frozen=True):
    managed: bool
    host: str
    port: Port
    ae_title: Annotated[str, Meta(min_length=1, max_length=16)]
    batch_idle_seconds: Annotated[float, Meta(gt=0, le=86400)]
    batch_max_instances: Annotated[int, Meta(ge=1)]
    batch_max_bytes: Annotated[int, Meta(ge=1)]
    route_unknown_projects_to_admin: bool
    max_associations: Annotated[int, Meta(ge=1, le=1000)]
    stream_join_seconds: Annotated[float, Meta(ge=0.0, le=60.0)]
    stream_batch_seconds: Annotated[float, Meta(gt=0.0, le=3600.0)]


class DispatcherSettings(_Section, frozen=True):
    max_runs: Annotated[int, Meta(ge=1, le=64)]
    gather_seconds: Annotated[float, Meta(ge=0.0, le=600.0)]
    max_run_instances: Annotated[int, Meta(ge=1)]


class UploadSettings(_Section, frozen=True):
    max_file_bytes: Annotated[int, Meta(ge=1)]
    max_upload_bytes: Annotated[int, Meta(ge=1)]
    max_files: Annotated[int, Meta(ge=1)]
    max_unpacked_bytes: Annotated[int, Meta(ge=1)]
    max_archive_entries: Annotated[int, Meta(ge=1)]
    nested_zip_depth: Annotated[int, Meta(ge=0, le=10)]
    resume_days: Annotated[int, Meta(ge=1, le=365)]


class ValidationSettings(_Section, frozen=True):
    background: bool
    sample: Annotated[int, Meta(ge=0)]
    workers: Annotated[int, Meta(ge=1, le=64)]
    niceness: Annotated[int, Meta(ge=0, le=19)]
    fork_server: bool
    allocator: str


class WebSettings(_Section, frozen=True):
    managed: bool
    host: str
    port: Port

    @property
    def base_url(self) -> str:
        """Root URL of the platform's web pages and REST API."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


class AuthSettings(_Section, frozen=True):
    session_hours: Annotated[float, Meta(gt=0, le=24 * 90)]
    idle_minutes: Annotated[float, Meta(gt=0, le=60 * 24 * 90)]
    secure_cookies: Literal["auto", "always", "never"]
    basic: bool
    account_failures: Annotated[int, Meta(ge=1, le=1000)]
    address_failures: Annotated[int, Meta(ge=1, le=100000)]
    failure_window_seconds: Annotated[float, Meta(gt=0, le=7 * 86400)]
    lockout_seconds: Annotated[float, Meta(gt=0, le=86400)]
    max_lockout_seconds: Annotated[float, Meta(gt=0, le=30 * 86400)]
    argon2_time_cost: Annotated[int, Meta(ge=1, le=100)]
    argon2_memory_kib: Annotated[int, Meta(ge=8192, le=4 * 1024 * 1024)]
    argon2_parallelism: Annotated[int, Meta(ge=1, le=64)]


class WatchedFolder(_Section, frozen=True):
    """A folder whose files are imported unattended (``watch.folders``)."""

    path: Path
    project: Annotated[str, Meta(min_length=1, max_length=16)]
    dataset: Annotated[str, Meta(min_length=1, max_length=16)]
    extension: str = ".dcm"
    on_done: Literal["move", "delete"] = "move"


class WatchSettings(_Section, frozen=True):
    folders: list[WatchedFolder]
    interval_seconds: Annotated[float, Meta(gt=0, le=3600)]
    done_dir: str

    def __post_init__(self) -> None:
        paths = [str(f.path) for f in self.folders]
        if len(set(paths)) != len(paths):
            raise _Invalid("a folder is listed twice (each path once)", key="folders")


class Settings(_Section, frozen=True):
    """Everything the platform needs to know, validated."""

    data_dir: Path
    postgres: PostgresSettings
    pacs: PacsSettings
    s3: S3Settings
    index: IndexSettings
    airflow: AirflowSettings
    receiver: ReceiverSettings
    dispatcher: DispatcherSettings
    uploads: UploadSettings
    validation: ValidationSettings
    web: WebSettings
    auth: AuthSettings
    watch: WatchSettings
    admin_user: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    admin_password: str

    @property
    def log_dir(self) -> Path:
        """Per-component log files."""
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        """Pid files and sockets."""
        return self.data_dir / "run"

    @property
    def uploads_staging_dir(self) -> Path:
        """Partial browser uploads (tus) waiting to be completed and moved to the object store."""
        return self.data_dir / "uploads"

    @property
    def imports_dir(self) -> Path:
        """Scratch space of imports (downloaded uploads, unpacked archives), beside the spool."""
        return self.data_dir / "imports"

    @property
    def watch_dir(self) -> Path:
        """The watched folders' pass records (and, by default, the files they imported)."""
        return self.data_dir / "watch"

    @property
    def watch_done_dir(self) -> Path:
        """Where a watched folder with ``on_done: move`` puts the files it imported."""
        return Path(self.watch.done_dir) if self.watch.done_dir else self.watch_dir / "done"

    @property
    def spool_dir(self) -> Path:
        """Received instances waiting for processing."""
        return self.data_dir / "spool"

    @property
    def secrets_file(self) -> Path:
        """Generated credentials, readable by the owner only."""
        return self.data_dir / "secrets.json"

    @property
    def platform_db_url(self) -> str:
        """SQLAlchemy URL of the platform's own database."""
        return self.postgres.url(self.postgres.platform_database)

    @property
    def airflow_db_url(self) -> str:
        """SQLAlchemy URL of Airflow's metadata database."""
        return self.postgres.url(self.postgres.airflow_database)


# Where a generated secret goes: (section or None for top level, key).
_SECRETS: tuple[tuple[str | None, str, int], ...] = (
    (None, "admin_password", 18),
    ("postgres", "password", 24),
    ("pacs", "password", 24),
    ("airflow", "password", 24),
    ("airflow", "broker_password", 24),
    ("s3", "access_key", 12),
    ("s3", "secret_key", 30),
)


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# libyaml's loader reads the defaults in a tenth of the pure-Python one's time, and every
# command reads them (``status`` and ``series show`` are called in scripts' loops).
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_SafeLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``DICOMFLOW_RECEIVER__PORT=104`` -> ``{"receiver": {"port": 104}}``."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        # YAML parsing gives "104" -> 104 and "false" -> False, as a config file would.
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            node[path[-1]] = raw
    return tree


_Loc = tuple[str | int, ...]


def _key(loc: _Loc) -> str:
    return ".".join(str(p) for p in loc)


def _problem(loc: _Loc, value: Any, rule: str) -> str:
    """One line of a ConfigError: the dotted key, its value, the rule and where it is set."""
    return f"{_key(loc)} = {value!r}: {rule} (set in {_where(loc)})"


def _where(loc: _Loc) -> str:
    # A list's items are set in a file only: DICOMFLOW_WATCH__FOLDERS__0__PATH makes a mapping.
    if any(isinstance(p, int) for p in loc):
        return "the configuration file"
    return "the configuration file or " + ENV_PREFIX + "__".join(str(p).upper() for p in loc)


def _decode(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")


def _convert(kind: Any, value: Any, loc: _Loc, problems: list[str]) -> Any:
    """``value`` as a ``kind``, or a line per bad key under ``loc`` appended to ``problems``.

    msgspec stops at the first error; this converts a Struct's keys one by one (recursing into
    Structs and lists of them) so that one ConfigError names every mistake. What it returns is
    meaningless when ``problems`` grew.
    """
    if isinstance(kind, type) and issubclass(kind, _Section):
        return _convert_struct(kind, value, loc, problems)
    if get_origin(kind) is list and isinstance(value, list):
        (item,) = get_args(kind)
        return [_convert(item, v, (*loc, i), problems) for i, v in enumerate(value)]
    try:
        # Not strict: "104" is an int and 1 a bool, as they were to pydantic.
        return msgspec.convert(value, kind, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        if get_origin(kind) is Literal:
            *others, last = (repr(a) for a in get_args(kind))
            rule = f"must be {', '.join(others)} or {last}" if others else f"must be {last}"
        else:
            rule = str(exc).replace("`", "")  # "Expected `int` <= 65535"
            rule = rule[:1].lower() + rule[1:]
        problems.append(_problem(loc, value, rule))
        return None


def _convert_struct(kind: type[_Section], value: Any, loc: _Loc, problems: list[str]) -> Any:
    if not isinstance(value, Mapping):
        problems.append(_problem(loc, value, "expected a mapping of keys to values"))
        return None
    before = len(problems)
    fields = msgspec.structs.fields(kind)
    names = {f.name for f in fields}
    for key, item in value.items():
        if key not in names:
            problems.append(
                f"{_key((*loc, key))}: unknown key (value {item!r}); "
                "check the spelling against docs/configuration.md"
            )
    values = {}
    for field in fields:
        at = (*loc, field.name)
        if field.name in value:
            values[field.name] = _convert(field.type, value[field.name], at, problems)
        elif field.required:
            problems.append(f"{_key(at)}: missing (set it in {_where(at)})")
    if len(problems) > before:
        return None
    try:
        return kind(**values)  # runs the section's __post_init__ checks
    except _Invalid as exc:
        if exc.key is None:
            problems.append(f"{_key(loc)}: {exc}")
        else:
            problems.append(_problem((*loc, exc.key), value[exc.key], str(exc)))
        return None


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    create_secrets: bool = True,
) -> Settings:
    """Load, merge and validate the configuration.

    Parameters
    ----------
    config_file
        A user file; default ``DICOMFLOW_CONFIG``, else ``./dicomflow.yaml`` when it exists.
    environ
        The environment to read ``DICOMFLOW_*`` overrides from; default ``os.environ``.
    create_secrets
        Generate missing credentials into ``<data_dir>/secrets.json``. When false, credentials
        already generated are still read.

    Raises
    ------
    ConfigError
        When a value is invalid; the message names every bad key, its value and what is allowed.
    """
    env = os.environ if environ is None else environ
    defaults = Path(env.get("DICOMFLOW_DEFAULTS", DEFAULTS_FILE))
    data = _read_yaml(defaults)
    if config_file is None and env.get("DICOMFLOW_CONFIG"):
        config_file = Path(env["DICOMFLOW_CONFIG"])
    if config_file is None and Path("dicomflow.yaml").is_file():
        config_file = Path("dicomflow.yaml")
    if config_file is not None:
        data = _deep_merge(data, _read_yaml(config_file))
    data = _deep_merge(data, _env_overrides(env))
    problems: list[str] = []
    settings: Settings = _convert(Settings, data, (), problems)
    if problems:
        lines = "\n  ".join(problems)
        raise ConfigError(f"invalid configuration:\n  {lines}")
    settings = settings.replace(data_dir=settings.data_dir.resolve())
    return _with_secrets(settings, create=create_secrets)


def _with_secrets(settings: Settings, *, create: bool) -> Settings:
    path = settings.secrets_file
    stored: dict[str, str] = {}
    if path.is_file():
        stored = json.loads(path.read_text())
    changed = False
    updates: dict[str, dict[str, str]] = {}
    top: dict[str, str] = {}
    for section, key, nbytes in _SECRETS:
        current = getattr(settings if section is None else getattr(settings, section), key)
        if current:
            continue
        name = key if section is None else f"{section}.{key}"
        if name not in stored:
            if not create:
                continue
            # S3 access keys must be plain alphanumerics for some servers.
            # S3 access keys stay alphanumeric: some servers reject other characters there.
            stored[name] = (
                secrets.token_hex(nbytes) if key == "access_key" else secrets.token_urlsafe(nbytes)
            )
            changed = True
        if section is None:
            top[key] = stored[name]
        else:
            updates.setdefault(section, {})[key] = stored[name]
    if changed:
        _write_secrets(path, stored)
    sections = {name: getattr(settings, name).replace(**values) for name, values in updates.items()}
    return settings.replace(**sections, **top)


def stored_secret(settings: Settings, name: str, nbytes: int = 32) -> str:
    """A generated secret that is not a setting (e.g. Airflow's JWT key), created on first use."""
    path = settings.secrets_file
    stored: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    if name not in stored:
        stored[name] = secrets.token_urlsafe(nbytes)
        _write_secrets(path, stored)
    return stored[name]


def _write_secrets(path: Path, stored: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(stored, fh, indent=2)
    os.replace(tmp, path)


def _encode(value: Any) -> Any:
    # msgspec's enc_hook contract: a value it cannot encode comes here; NotImplementedError
    # says "not this one either", and the encoding fails instead of writing a file that
    # load_settings would read differently (tests/test_config.py).
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(f"{type(value).__name__} is not a setting's type")


def settings_json(settings: Settings) -> bytes:
    """The settings as JSON (credentials included), which ``load_settings`` reads back."""
    return msgspec.json.encode(settings, enc_hook=_encode)


def write_effective_config(settings: Settings) -> Path:
    """Write the settings as loaded, for the processes the stack starts to load the same.

    Returns
    -------
    Path
        ``<data_dir>/run/settings.json`` (mode 0600: it holds the credentials).
    """
    path = settings.run_dir / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.format(settings_json(settings), indent=2))
    os.replace(tmp, path)
    return path


def settings_table() -> list[tuple[str, str, str]]:
    """Rows (key, default, description) of ``config/defaults.yaml`` (docs/configuration.md)."""
    rows: list[tuple[str, str, str]] = []
    section: str | None = None
    comment: list[str] = []
    for line in DEFAULTS_FILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# "))
            continue
        if not stripped:
            comment = []
            continue
        key, _, value = stripped.partition(":")
        if not line.startswith(" "):
            if not value.strip():
                section = key
                comment = []
                continue
            section = None
        full = key if section is None or not line.startswith(" ") else f"{section}.{key}"
        rows.append((full, value.strip(), " ".join(comment)))
        comment = []
    return rows
