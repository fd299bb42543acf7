"""The configuration: defaults, user file, environment, validation and generated secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from dicomflow.config import (
    DEFAULTS_FILE,
    ConfigError,
    WatchedFolder,
    load_settings,
    settings_json,
    settings_table,
    write_effective_config,
)


def test_environment_overrides_user_file_overrides_defaults(tmp_path: Path) -> None:
    user = tmp_path / "site.yaml"
    user.write_text("receiver:\n  port: 104\n  batch_idle_seconds: 3\n")
    env = {"DICOMFLOW_DATA_DIR": str(tmp_path / "var"), "DICOMFLOW_RECEIVER__PORT": "11113"}
    settings = load_settings(user, env)
    assert settings.receiver.port == 11113  # environment wins over the file
    assert settings.receiver.batch_idle_seconds == 3  # file wins over the defaults
    assert settings.receiver.ae_title == "DICOMFLOW"  # default kept
    assert settings.data_dir == (tmp_path / "var").resolve()


def _config_error(user: Path | None, env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(user, env)
    return str(err.value)


def test_invalid_values_name_key_value_and_rule(tmp_path: Path) -> None:
    env = {
        "DICOMFLOW_DATA_DIR": str(tmp_path),
        "DICOMFLOW_RECEIVER__PORT": "70000",
        "DICOMFLOW_INDEX__BACKEND": "elastic",
        "DICOMFLOW_RECEIVER__PROT": "1",
    }
    message = _config_error(None, env)
    assert "receiver.port = 70000: expected int <= 65535" in message
    assert "index.backend = 'elastic'" in message and "'postgres' or 'opensearch'" in message
    assert "receiver.prot: unknown key" in message
    assert "DICOMFLOW_RECEIVER__PORT" in message


def test_environment_values_are_read_as_yaml_and_converted(tmp_path: Path) -> None:
    user = tmp_path / "site.yaml"
    user.write_text("web:\n  port: '8081'\n")  # a quoted number in a file is a number too
    env = {
        "DICOMFLOW_DATA_DIR": str(tmp_path),
        "DICOMFLOW_RECEIVER__PORT": "104",
        "DICOMFLOW_INDEX__ON_ARRIVAL": "false",
        "DICOMFLOW_AUTH__SESSION_HOURS": "3",  # an int where a float is expected
        "DICOMFLOW_PACS__USERNAME": "orthanc",
        "DICOMFLOW_POSTGRES__BIN_DIR": "/opt/pg/bin",
    }
    settings = load_settings(user, env)
    assert settings.receiver.port == 104
    assert settings.web.port == 8081
    assert settings.index.on_arrival is False
    assert settings.auth.session_hours == 3.0 and isinstance(settings.auth.session_hours, float)
    assert settings.pacs.username == "orthanc"
    assert settings.postgres.bin_dir == Path("/opt/pg/bin")


def test_every_mistake_is_listed_at_once(tmp_path: Path) -> None:
    defaults = yaml.safe_load(DEFAULTS_FILE.read_text())
    del defaults["receiver"]["ae_title"]
    defaults["watch"]["folders"] = [
        {"path": "/in/a", "project": "", "dataset": "scanner"},
        {"path": "/in/b", "project": "p", "dataset": "d", "on_done": "keep"},
    ]
    defaults_file = tmp_path / "defaults.yaml"
    defaults_file.write_text(yaml.safe_dump(defaults))
    env = {
        "DICOMFLOW_DEFAULTS": str(defaults_file),
        "DICOMFLOW_DATA_DIR": str(tmp_path),
        "DICOMFLOW_WEB__PORT": "0",
        "DICOMFLOW_AUTH__BASIC": "sometimes",
        "DICOMFLOW_POSTGRES__BIN_DIR": "5",
    }
    lines = _config_error(None, env).splitlines()[1:]
    expected = [
        "postgres.bin_dir = 5: expected Path, got int",
        "receiver.ae_title: missing (set it in the configuration file or "
        "DICOMFLOW_RECEIVER__AE_TITLE)",
        "web.port = 0: expected int >= 1",
        "auth.basic = 'sometimes': expected bool, got str",
        # A list's items are set in a file only: no environment variable is named.
        "watch.folders.0.project = '': expected str of length >= 1 (set in the configuration file)",
        "watch.folders.1.on_done = 'keep': must be 'move' or 'delete'",
    ]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.strip().startswith(start), line


def test_checks_across_keys_name_the_key_and_hide_the_rest(tmp_path: Path) -> None:
    user = tmp_path / "site.yaml"
    folder = {"path": "/in/a", "project": "p", "dataset": "d"}
    user.write_text(yaml.safe_dump({"watch": {"folders": [folder, folder]}}))
    env = {
        "DICOMFLOW_DATA_DIR": str(tmp_path),
        "DICOMFLOW_INDEX__OPENSEARCH_MANAGED": "true",
        "DICOMFLOW_INDEX__OPENSEARCH_URL": "https://search.example:9200",
        "DICOMFLOW_INDEX__OPENSEARCH_PASSWORD": "secret-word",
    }
    message = _config_error(user, env)
    assert "watch.folders = [{" in message and "a folder is listed twice" in message
    assert "index: opensearch_url is set and opensearch_managed is true" in message
    assert "secret-word" not in message


def test_the_effective_settings_load_back_the_same(tmp_path: Path) -> None:
    user = tmp_path / "site.yaml"
    folder = {"path": str(tmp_path / "in"), "project": "p", "dataset": "d", "on_done": "delete"}
    user.write_text(yaml.safe_dump({"watch": {"folders": [folder]}}))
    settings = load_settings(user, {"DICOMFLOW_DATA_DIR": str(tmp_path / "var")})
    written = write_effective_config(settings)
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    again = load_settings(written, {})
    assert again == settings
    assert again.watch.folders == [
        WatchedFolder(path=tmp_path / "in", project="p", dataset="d", on_done="delete")
    ]
    assert isinstance(again.data_dir, Path) and isinstance(again.postgres.bin_dir, Path)


def test_a_value_no_setting_holds_is_not_written(tmp_path: Path) -> None:
    # replace() does not check: a caller's mistake must not become a file the stack's
    # processes would load as something else.
    settings = load_settings(None, {"DICOMFLOW_DATA_DIR": str(tmp_path)})
    with pytest.raises(NotImplementedError, match="complex is not a setting's type"):
        settings_json(settings.replace(admin_password=1j))


def test_replace_makes_a_changed_copy(tmp_path: Path) -> None:
    settings = load_settings(None, {"DICOMFLOW_DATA_DIR": str(tmp_path)})
    other = settings.replace(receiver=settings.receiver.replace(port=104))
    assert other.receiver.port == 104 and settings.receiver.port != 104
    assert other.postgres is settings.postgres
    with pytest.raises(AttributeError):
        settings.receiver.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.receiver.replace(prot=1)


def test_broken_user_file_is_named(tmp_path: Path) -> None:
    user = tmp_path / "site.yaml"
    user.write_text("receiver: [unclosed\n")
    with pytest.raises(ConfigError, match=str(user)):
        load_settings(user, {"DICOMFLOW_DATA_DIR": str(tmp_path)})


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    env = {"DICOMFLOW_DATA_DIR": str(tmp_path)}
    first = load_settings(None, env)
    second = load_settings(None, env)
    assert len(first.admin_password) >= 16
    assert first.admin_password == second.admin_password
    assert first.postgres.password == second.postgres.password
    assert first.postgres.password not in (first.admin_password, first.pacs.password)
    assert first.s3.access_key.isalnum()
    mode = stat.S_IMODE(first.secrets_file.stat().st_mode)
    assert mode == 0o600


def test_configured_secret_is_not_replaced(tmp_path: Path) -> None:
    env = {"DICOMFLOW_DATA_DIR": str(tmp_path), "DICOMFLOW_PACS__PASSWORD": "from-env"}
    assert load_settings(None, env).pacs.password == "from-env"


def test_every_default_key_is_documented() -> None:
    rows = settings_table()
    keys = {key for key, _, _ in rows}
    assert {"data_dir", "receiver.port", "s3.endpoint", "index.backend"} <= keys
    undocumented = [
        key
        for key, _, meaning in rows
        if not meaning and key.split(".")[-1] not in ("host", "port", "user", "managed")
    ]
    assert undocumented == [], f"keys without a comment in config/defaults.yaml: {undocumented}"
    reference = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    missing = [key for key in keys if f"`{key}`" not in reference]
    assert missing == [], f"keys missing from docs/configuration.md: {missing}"
