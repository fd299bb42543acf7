"""The settings each container gets are the ones dicomflow reads.

The rendered manifests are parsed, each container's environment is built from them (values,
Secret references, the ConfigMap laid out where it is mounted) and dicomflow's own
``load_settings`` reads it: the chart's values must arrive in the settings, every credential by
reference to the key the docs name, and no ``DICOMFLOW_*`` variable may be one that Settings
ignores. charts/airflow-values.yaml is held to the same for Airflow's containers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from dicomflow.config import ENV_PREFIX, NOT_SETTINGS, Settings, load_settings
from tests.charts.chart_testutil import (
    AIRFLOW_VALUES,
    PRODUCTION_VALUES,
    REPO,
    container_environment,
    one,
    render,
    secret_value,
)

SECRET = "dicomflow-credentials"
#: Credentials by setting: (Secret key of the production example, settings path).
CREDENTIALS = {
    "postgres": ("postgres-password", ("postgres", "password")),
    "pacs": ("pacs-password", ("pacs", "password")),
    "s3_access": ("s3-access-key", ("s3", "access_key")),
    "s3_secret": ("s3-secret-key", ("s3", "secret_key")),
    "admin": ("admin-password", ("admin_password",)),
    "opensearch": ("opensearch-password", ("index", "opensearch_password")),
    "airflow": ("airflow-password", ("airflow", "password")),
}
#: The credentials each container needs, and only those.
NEEDS = {
    "receiver": {"postgres"},
    "dispatcher": {"postgres", "opensearch", "airflow"},
    "web": set(CREDENTIALS),
}


def read_by_settings(name: str) -> bool:
    """Whether ``load_settings`` reads the variable ``name`` as a key of Settings."""
    if name in NOT_SETTINGS:
        return True
    model: type[msgspec.Struct] = Settings
    parts = name[len(ENV_PREFIX) :].lower().split("__")
    for i, part in enumerate(parts):
        field = {f.name: f for f in msgspec.structs.fields(model)}.get(part)
        if field is None:
            return False
        annotation = field.type
        last = i == len(parts) - 1
        is_section = isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)
        if last:
            return not is_section
        if not is_section:
            return False
        model = annotation
    return False


def setting(settings: Settings, path: tuple[str, ...]) -> Any:
    value: Any = settings
    for part in path:
        value = getattr(value, part)
    return value


def config_maps(manifests: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {m["metadata"]["name"]: m["data"] for m in manifests if m["kind"] == "ConfigMap"}


def containers(manifests: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], list[Any]]]:
    """Container name -> (container, pod volumes) of the chart's workloads."""
    found: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    for kind, name in (("StatefulSet", "dicomflow-receiver"), ("Deployment", "dicomflow-web")):
        workload = one(manifests, kind, name)["spec"]
        spec = workload["template"]["spec"]
        # A StatefulSet's claims are volumes of its pods too.
        claims = [
            {"name": t["metadata"]["name"], "persistentVolumeClaim": {}}
            for t in workload.get("volumeClaimTemplates", [])
        ]
        for container in spec["containers"]:
            found[container["name"]] = (container, spec.get("volumes", []) + claims)
    return found


def load(env: dict[str, str]) -> Settings:
    # The variables that choose the files stay; nothing of this machine's environment leaks in.
    return load_settings(environ=env, create_secrets=False)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(tmp_path_factory.mktemp("helm"), PRODUCTION_VALUES)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_the_production_values_arrive_in_the_settings(
    name: str, production: list[dict[str, Any]], tmp_path: Path
) -> None:
    container, volumes = containers(production)[name]
    env = container_environment(container, volumes, config_maps(production), tmp_path)
    ignored = [v for v in env if v.startswith(ENV_PREFIX) and not read_by_settings(v)]
    assert not ignored, f"{name}: set but not read by Settings: {ignored}"
    assert not [v for v in env if not v.startswith(ENV_PREFIX)], env

    settings = load(env)
    assert str(settings.data_dir) == "/var/lib/dicomflow"
    assert not any(
        getattr(settings, s).managed for s in ("postgres", "pacs", "s3", "airflow", "receiver")
    )
    assert (settings.postgres.host, settings.postgres.port) == (
        "imaging-db.postgres.svc.cluster.local",
        5432,
    )
    assert settings.pacs.base_url == "https://pacs.example.org/dicom-web"
    assert (settings.s3.endpoint, settings.s3.secure, settings.s3.region) == (
        "minio.storage.svc.cluster.local:443",
        True,
        "eu-central-1",
    )
    assert settings.s3.bucket("admin") == "imaging-admin"
    assert settings.index.backend == "opensearch"
    assert settings.index.opensearch_endpoint == "https://opensearch.search.svc.cluster.local:9200"
    assert settings.index.opensearch_username == "dicomflow"
    assert settings.airflow.base_url == "http://airflow-api-server:8080"
    assert settings.airflow.username == "dicomflow-service"
    assert (settings.receiver.host, settings.receiver.port) == ("0.0.0.0", 11112)
    assert settings.receiver.ae_title == "DICOMFLOW"
    # `config:` of the values passes through to keys the chart does not own.
    assert settings.receiver.max_associations == 128
    assert settings.dispatcher.max_runs == 4
    assert settings.validation.sample == 20
    assert settings.auth.secure_cookies == "always"

    # The OpenSearch CA is where the settings say, from the Secret the values name.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    ca_dir = mounts["opensearch-ca"]
    assert settings.index.opensearch_ca_file == f"{ca_dir}/ca.crt"
    assert {"name": "opensearch-ca", "secret": {"secretName": "opensearch-ca"}} in volumes
    # The spool is mounted where the settings put it.
    if "spool" in mounts:
        assert mounts["spool"] == str(settings.spool_dir)

    for credential, (key, path) in CREDENTIALS.items():
        expected = secret_value(SECRET, key) if credential in NEEDS[name] else ""
        assert setting(settings, path) == expected, (name, credential)


def test_ports_of_the_manifests_are_the_settings_ports(
    production: list[dict[str, Any]], tmp_path: Path
) -> None:
    found = containers(production)
    receiver, volumes = found["receiver"]
    settings = load(container_environment(receiver, volumes, config_maps(production), tmp_path))
    assert receiver["ports"][0]["containerPort"] == settings.receiver.port
    assert receiver["readinessProbe"]["exec"]["command"][-1] == str(settings.receiver.port)
    web, _ = found["web"]
    args = web["args"]
    assert args[args.index("--port") + 1] == str(settings.web.port)
    assert web["ports"][0]["containerPort"] == settings.web.port


def test_airflow_values_give_airflow_the_platform_settings(
    production: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Airflow's containers (official chart, charts/airflow-values.yaml) read the same settings."""
    defaults = render(tmp_path / "helm")
    values = yaml.safe_load(AIRFLOW_VALUES.read_text())
    # What the official chart makes of env, secret, volumes and volumeMounts for every container.
    container = {
        "env": values["env"]
        + [
            {
                "name": s["envName"],
                "valueFrom": {"secretKeyRef": {"name": s["secretName"], "key": s["secretKey"]}},
            }
            for s in values["secret"]
        ],
        "volumeMounts": values["volumeMounts"],
    }
    env = container_environment(container, values["volumes"], config_maps(defaults), tmp_path)
    assert all(read_by_settings(v) for v in env), env
    settings = load(env)
    assert (
        settings.airflow.username
        == values["config"]["core"]["simple_auth_manager_users"].split(":")[0]
    )

    # Every credential comes from the same Secret key as the dicomflow chart's containers use.
    web, _ = containers(defaults)["web"]
    chart_refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in web["env"] if "valueFrom" in e}
    for secret in values["secret"]:
        assert chart_refs[secret["envName"]] == {
            "name": secret["secretName"],
            "key": secret["secretKey"],
        }
    login = values["apiServer"]["extraInitContainers"][0]["env"][0]
    assert chart_refs[login["name"]] == login["valueFrom"]["secretKeyRef"]

    # The scheduler runs the tasks: it mounts the receiver's spool claim where settings read it.
    receiver = one(defaults, "StatefulSet", "dicomflow-receiver")
    template = receiver["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    claim = f"{template}-dicomflow-receiver-0"
    scheduler = values["scheduler"]
    assert scheduler["extraVolumes"][0]["persistentVolumeClaim"]["claimName"] == claim
    assert scheduler["extraVolumeMounts"][0]["mountPath"] == str(settings.spool_dir)

    # The DAGs and plugins are where the image puts them.
    containerfile = (REPO / "container" / "Containerfile").read_text()
    for key in ("dags_folder", "plugins_folder"):
        folder = values["config"]["core"][key]
        assert f"AIRFLOW__CORE__{key.upper()}={folder}" in containerfile
        assert (REPO / Path(folder).relative_to("/opt/dicomflow")).is_dir()


def test_a_variable_settings_ignore_is_caught() -> None:
    """What the tests above rely on: a misspelt or unknown variable is not 'read'."""
    assert read_by_settings("DICOMFLOW_POSTGRES__PASSWORD")
    assert read_by_settings("DICOMFLOW_CONFIG")
    assert not read_by_settings("DICOMFLOW_POSTGRES_PASSWORD")
    assert not read_by_settings("DICOMFLOW_AIRFLOW__USER")
    assert not read_by_settings("DICOMFLOW_POSTGRES")
