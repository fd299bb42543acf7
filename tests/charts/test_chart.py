"""charts/dicomflow: helm lint, helm template with the defaults and the production example, and
every rendered manifest validated against the Kubernetes API schemas (offline).

The validator is kubernetes-validate's Python API with the schemas it ships: a kind it has no
schema for is an error (SchemaNotFoundError), not a warning as on its command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.charts.chart_testutil import (
    CHART,
    PRODUCTION_VALUES,
    helm,
    one,
    pod_specs,
    render,
)

#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest with schemas.
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
VALUE_SETS = {"defaults": (), "production": (PRODUCTION_VALUES,)}


@pytest.fixture(params=sorted(VALUE_SETS))
def manifests(request: pytest.FixtureRequest, tmp_path: Path) -> list[dict[str, Any]]:
    """The chart rendered with the defaults, then with the production example."""
    return render(tmp_path, *VALUE_SETS[request.param])


def validate(manifest: dict[str, Any], version: str) -> None:
    """Raise unless ``manifest`` is valid for Kubernetes ``version`` (unknown fields too)."""
    kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_helm_lint_strict(values: str, tmp_path: Path) -> None:
    args = ["lint", "--strict", str(CHART)]
    for path in VALUE_SETS[values]:
        args += ["-f", str(path)]
    result = helm(*args, home=tmp_path)
    assert "0 chart(s) failed" in result.stdout


def test_every_manifest_is_valid_kubernetes(manifests: list[dict[str, Any]]) -> None:
    kinds = {m["kind"] for m in manifests}
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
    for version in KUBERNETES_VERSIONS:
        for manifest in manifests:
            validate(manifest, version)


def test_the_validator_refuses_unknown_kinds_and_bad_fields() -> None:
    """What the test above relies on: a kind without a schema or a wrong field fails."""
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate({"apiVersion": "v1", "kind": "Servic", "metadata": {"name": "x"}}, "1.27.0")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 11112, "targetPort": "dicom"}], "selectr": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(service, "1.27.0")


def test_receiver_statefulset_spool_service_and_probe(tmp_path: Path) -> None:
    manifests = render(tmp_path)
    receiver = one(manifests, "StatefulSet", "dicomflow-receiver")
    claims = receiver["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["spool"]
    assert claims[0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    service = one(manifests, "Service", "dicomflow-receiver")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(11112, "dicom")]
    container = receiver["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "dicom", "containerPort": 11112, "protocol": "TCP"}]
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[0] == "echoscu" and probe[-2:] == ["127.0.0.1", "11112"]


def test_secrets_only_by_reference(manifests: list[dict[str, Any]]) -> None:
    """No Secret is rendered, and every credential a container gets is a secretKeyRef."""
    assert not [m for m in manifests if m["kind"] == "Secret"]
    credentials = ("PASSWORD", "ACCESS_KEY", "SECRET_KEY")
    for name, spec in pod_specs(manifests):
        for container in spec["containers"]:
            for entry in container.get("env", []):
                if entry["name"].endswith(credentials):
                    assert "secretKeyRef" in entry.get("valueFrom", {}), (name, entry)
    settings_file = yaml.safe_load(
        next(m for m in manifests if m["kind"] == "ConfigMap")["data"]["dicomflow.yaml"]
    )
    for section in settings_file.values():
        if isinstance(section, dict):
            assert not {k for k in section if k.endswith(("password", "_key"))}, section


def test_every_container_requests_resources(manifests: list[dict[str, Any]]) -> None:
    for name, spec in pod_specs(manifests):
        for container in spec["containers"]:
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(requests), (name, container["name"])


def test_network_policies_admit_only_the_service_ports(tmp_path: Path) -> None:
    manifests = render(tmp_path, PRODUCTION_VALUES)
    receiver = one(manifests, "NetworkPolicy", "dicomflow-receiver")
    rule = receiver["spec"]["ingress"]
    assert rule[0]["ports"] == [{"port": 11112, "protocol": "TCP"}]
    assert rule[0]["from"][0] == {"ipBlock": {"cidr": "10.20.0.0/16"}}
    web = one(manifests, "NetworkPolicy", "dicomflow-web")
    assert web["spec"]["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]
    egress = one(manifests, "NetworkPolicy", "dicomflow-egress")["spec"]["egress"]
    assert egress[0]["ports"][0] == {"port": 53, "protocol": "UDP"}


def test_web_ingress_with_tls(tmp_path: Path) -> None:
    ingress = one(render(tmp_path, PRODUCTION_VALUES), "Ingress", "dicomflow-web")
    assert ingress["spec"]["tls"] == [
        {"hosts": ["imaging.example.org"], "secretName": "imaging-example-org-tls"}
    ]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "dicomflow-web", "port": {"name": "http"}}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"receiver.replicas": "2"}, "receiver.replicas is 2: it must be 1"),
        ({"index.backend": "opensearch"}, "index.opensearch.url: index.backend is opensearch"),
        ({"config.postgres.host": "elsewhere"}, "config.postgres.host is set by the chart"),
        ({"config.admin_password": "x"}, "config.admin_password is set by the chart"),
        ({"secrets.existingSecret": ""}, "existingSecret"),
        ({"s3.endpoint": "https://minio"}, "/s3/endpoint"),
        ({"unknownKey": "x"}, "unknownKey"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(
    sets: dict[str, str], message: str, tmp_path: Path
) -> None:
    args = ["template", "dicomflow", str(CHART)]
    for key, value in sets.items():
        args += ["--set" if key == "receiver.replicas" else "--set-string", f"{key}={value}"]
    result = helm(*args, home=tmp_path, check=False)
    assert result.returncode != 0
    assert message in result.stderr
