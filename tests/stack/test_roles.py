"""`dicomflow worker` and `dicomflow receiver`: only that part runs here, pointed at the site."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dicomflow.cli import main
from dicomflow.config import Settings, load_settings
from dicomflow.stack.components import StackError, all_components
from dicomflow.stack.roles import role_settings

SITE = {
    "DICOMFLOW_AIRFLOW__EXECUTOR": "celery",
    "DICOMFLOW_AIRFLOW__URL": "http://10.0.0.1:8080",
    "DICOMFLOW_AIRFLOW__BROKER_URL": "redis://:secret@10.0.0.1:6379/0",
    "DICOMFLOW_POSTGRES__HOST": "10.0.0.1",
    "DICOMFLOW_PACS__DICOMWEB_URL": "http://10.0.0.1:8042/dicom-web",
    "DICOMFLOW_S3__ENDPOINT": "10.0.0.1:8333",
}


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(environ={"DICOMFLOW_DATA_DIR": str(tmp_path), **env})


def test_a_worker_host_runs_only_the_celery_worker_and_the_shared_services_elsewhere(
    tmp_path: Path,
) -> None:
    settings = role_settings(_settings(tmp_path, **SITE), "worker")
    assert [c.name for c in all_components(settings)] == ["airflow-worker"]
    assert settings.airflow.broker == SITE["DICOMFLOW_AIRFLOW__BROKER_URL"]


def test_a_receiver_host_runs_the_receiver_and_its_dispatcher(tmp_path: Path) -> None:
    settings = role_settings(_settings(tmp_path, **SITE), "receiver")
    assert [c.name for c in all_components(settings)] == ["receiver", "dispatcher"]


def test_a_celery_stack_on_one_machine_runs_its_broker_and_a_worker(tmp_path: Path) -> None:
    names = [
        c.name for c in all_components(_settings(tmp_path, DICOMFLOW_AIRFLOW__EXECUTOR="celery"))
    ]
    assert {"redis", "airflow-worker", "airflow-scheduler"} <= set(names)
    assert "redis" not in [c.name for c in all_components(_settings(tmp_path))]


def test_a_worker_without_the_site_s_addresses_is_refused_naming_every_key(
    tmp_path: Path,
) -> None:
    with pytest.raises(StackError) as error:
        role_settings(_settings(tmp_path), "worker")
    for key in ("airflow.executor", "airflow.url", "postgres.host", "s3.endpoint",
                "pacs.dicomweb_url", "airflow.broker_url"):  # fmt: skip
        assert key in str(error.value)
    result = CliRunner().invoke(
        main, ["worker"], env={"DICOMFLOW_DATA_DIR": str(tmp_path)}, catch_exceptions=False
    )
    assert result.exit_code != 0
    assert "airflow.url" in result.output
