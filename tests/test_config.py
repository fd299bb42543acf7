"""The configuration: defaults, user file, environment, validation and generated secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dicomflow.config import ConfigError, load_settings, settings_table


def test_environment_overrides_user_file_overrides_defaults(tmp_path: Path) -> None:
    user = tmp_path / "site.yaml"
    user.write_text("receiver:\n  port: 104\n  batch_idle_seconds: 3\n")
    env = {"DICOMFLOW_DATA_DIR": str(tmp_path / "var"), "DICOMFLOW_RECEIVER__PORT": "11113"}
    settings = load_settings(user, env)
    assert settings.receiver.port == 11113  # environment wins over the file
    assert settings.receiver.batch_idle_seconds == 3  # file wins over the defaults
    assert settings.receiver.ae_title == "DICOMFLOW"  # default kept
    assert settings.data_dir == (tmp_path / "var").resolve()


def test_invalid_values_name_key_value_and_rule(tmp_path: Path) -> None:
    env = {
        "DICOMFLOW_DATA_DIR": str(tmp_path),
        "DICOMFLOW_RECEIVER__PORT": "70000",
        "DICOMFLOW_INDEX__BACKEND": "elastic",
        "DICOMFLOW_RECEIVER__PROT": "1",
    }
    with pytest.raises(ConfigError) as err:
        load_settings(None, env)
    message = str(err.value)
    assert "receiver.port = 70000: expected int <= 65535" in message
    assert "index.backend = 'elastic'" in message and "'postgres' or 'opensearch'" in message
    assert "receiver.prot: unknown key" in message
    assert "DICOMFLOW_RECEIVER__PORT" in message


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
