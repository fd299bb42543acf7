"""Helpers of the chart tests: the real helm, rendered manifests, the environment of a container.

helm is the static binary ``scripts/install.sh --test`` unpacks into ``.cache/helm`` (no
Kubernetes cluster is needed: ``helm template`` and ``helm lint`` work offline).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "dicomflow"
PRODUCTION_VALUES = CHART / "values-production.example.yaml"
AIRFLOW_VALUES = REPO / "charts" / "airflow-values.yaml"
HELM = REPO / ".cache" / "helm" / "helm"
#: The release name the docs and charts/airflow-values.yaml assume.
RELEASE = "dicomflow"


def helm(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with its cache, configuration and data under ``home`` (nothing of the user's)."""
    if not HELM.is_file():
        raise AssertionError(f"{HELM} is missing: run `bash scripts/install.sh --test`")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run(
        [str(HELM), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def render(
    home: Path, *values: Path, chart: Path = CHART, sets: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The manifests ``helm template`` renders for the chart with ``values`` (in order)."""
    args = ["template", RELEASE, str(chart), "--namespace", "imaging"]
    for path in values:
        args += ["-f", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set-string", f"{key}={value}"]
    out = helm(*args, home=home).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The manifest of ``kind`` named ``name``."""
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every Deployment and StatefulSet."""
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "StatefulSet"):
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]


def secret_value(secret: str, key: str) -> str:
    """What a test Secret holds under ``key``: a value that names where it came from."""
    return f"from-{secret}-{key}"


def container_environment(
    container: Mapping[str, Any],
    volumes: list[Mapping[str, Any]],
    config_maps: Mapping[str, Mapping[str, str]],
    root: Path,
) -> dict[str, str]:
    """The environment a container starts with, its files laid out under ``root``.

    ``value`` entries are taken as they are; ``secretKeyRef`` entries get
    :func:`secret_value`; ConfigMap volumes are written where the container mounts them (under
    ``root``), and a variable holding a path inside such a mount is pointed there. Anything
    else (a ConfigMap key reference, a missing ConfigMap) fails: the chart does not use it.
    """
    mounts: dict[str, Path] = {}
    by_name = {v["name"]: v for v in volumes}
    for mount in container.get("volumeMounts", []):
        assert mount["name"] in by_name, f"{mount['name']} is mounted but no volume of the pod"
        volume = by_name[mount["name"]]
        if "configMap" in volume:
            name = volume["configMap"]["name"]
            assert name in config_maps, f"ConfigMap {name} mounted but not rendered"
            target = root / mount["mountPath"].lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            for key, text in config_maps[name].items():
                (target / key).write_text(text)
            mounts[mount["mountPath"]] = target
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        name = entry["name"]
        assert name not in env, f"{name} is set twice"
        if "value" in entry:
            value = str(entry["value"])
            for mount_path, target in mounts.items():
                if value.startswith(mount_path + "/"):
                    value = str(target / value[len(mount_path) + 1 :])
            env[name] = value
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[name] = secret_value(ref["name"], ref["key"])
    return env
