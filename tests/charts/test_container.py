"""The container image: what container/Containerfile installs, checked without building it, and
(opt-in, ``pytest -m container``) the real build with buildah and its smoke test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.charts.chart_testutil import PRODUCTION_VALUES, REPO, one, render, secret_value

CONTAINERFILE = REPO / "container" / "Containerfile"
LOCK = REPO / "container" / "requirements.lock"


def locked() -> dict[str, str]:
    """Name -> version of container/requirements.lock."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{LOCK.name}: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _applies(marker: Marker | None, extras: set[str]) -> bool:
    return marker is None or any(marker.evaluate({"extra": e}) for e in extras | {""})


def runtime_closure() -> dict[str, str]:
    """Every distribution dicomflow needs at run time (no test extras), as installed in .venv."""
    seen: dict[str, set[str]] = {}
    todo: list[tuple[str, set[str]]] = [("dicomflow", set())]
    while todo:
        name, extras = todo.pop()
        for text in distribution(name).requires or []:
            req = Requirement(text)
            if not _applies(req.marker, extras):
                continue
            key = canonicalize_name(req.name)
            wanted = set(req.extras)
            if key in seen and wanted <= seen[key]:
                continue
            seen.setdefault(key, set()).update(wanted)
            todo.append((req.name, seen[key]))
    return {name: distribution(name).version for name in seen}


def test_the_lock_is_exactly_what_the_project_runs_on() -> None:
    """The image installs the lock with --no-deps for the project: a dependency of
    pyproject.toml missing from it, or at another version than tested, is a broken image."""
    pins, needed = locked(), runtime_closure()
    assert sorted(set(needed) - set(pins)) == [], "missing from the lock: run container/lock.sh"
    assert sorted(set(pins) - set(needed)) == [], "locked but not needed: run container/lock.sh"
    differ = {n: (pins[n], v) for n, v in needed.items() if pins[n] != v}
    assert differ == {}, "lock vs .venv (lock, tested): run container/lock.sh"


def test_every_copied_path_is_in_the_build_context() -> None:
    """build.sh's context is what git tracks; a COPY of anything else fails the build."""
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    sources = []
    for line in CONTAINERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    assert "dicomflow" in sources and "container/requirements.lock" in sources
    for source in sources:
        assert any(p == source or p.startswith(source + "/") for p in tracked), source
    # The package's own files the settings and Airflow read at run time.
    for needed in ("config", "dags", "plugins", "receiver", "operators"):
        assert needed in sources, f"the image lacks {needed}/"


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="not a Debian machine")
def test_debian_pins_are_installable_from_debian_12() -> None:
    """Debian's mirror keeps only the newest point release: a superseded pin cannot install."""
    text = CONTAINERFILE.read_text()
    for package, arg in (
        ("dcmtk", "DCMTK_VERSION"),
        ("dicom3tools", "DICOM3TOOLS_VERSION"),
        ("libjemalloc2", "JEMALLOC_VERSION"),
    ):
        match = re.search(rf"^ARG {arg}=(\S+)$", text, re.MULTILINE)
        assert match, f"{arg} is not pinned in the Containerfile"
        madison = subprocess.run(
            ["apt-cache", "madison", package], capture_output=True, text=True, check=True
        ).stdout
        available = {line.split("|")[1].strip() for line in madison.splitlines() if "|" in line}
        assert match.group(1) in available, f"{package}={match.group(1)}; Debian has {available}"


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> Iterator[tuple[list[str], str]]:
    """container/build.sh run once (base, image, smoke test); a working container of the image.

    Yields the ``buildah run`` command prefix and the name of that container. Many minutes of
    work (the build alone took 783 s on a busy 2-core machine with pip's cache warm; buildah's
    vfs driver copies the whole file system per container): it runs only when asked for,
    ``pytest -m container``.
    """
    if "container" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the image build runs with -m container")
    result = subprocess.run(
        ["bash", "container/build.sh"], cwd=REPO, capture_output=True, text=True, timeout=3600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "==> smoke test passed" in result.stdout
    tag = re.findall(r"^==> done in \d+ s: (\S+)$", result.stdout, re.MULTILINE)[-1]
    storage = REPO / ".cache" / "container"
    buildah = [
        "buildah",
        "--root",
        str(storage / "storage"),
        "--runroot",
        str(storage / "run"),
        "--storage-driver",
        "vfs",
    ]
    name = subprocess.run(
        [*buildah, "from", "--pull=never", tag], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield [*buildah, "run", "--isolation", "chroot"], name
    finally:
        subprocess.run([*buildah, "rm", name], capture_output=True, check=False)


def run_in(
    image: tuple[list[str], str], env: dict[str, str], mounts: dict[Path, str], *command: str
) -> list[str]:
    """The ``buildah run`` command of ``command`` in the image's container."""
    prefix, name = image
    args = [*prefix]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    for host, target in mounts.items():
        args += ["--volume", f"{host}:{target}"]
    return [*args, name, "--", *command]


# The build counts towards the first test's time (pytest-timeout's default is 600 s).
@pytest.mark.container
@pytest.mark.timeout(3600)
def test_the_image_builds_and_passes_its_smoke_test(image: tuple[list[str], str]) -> None:
    imports = "import dicomflow, receiver, operators, airflow, dicomflow_auth"
    env = {"PYTHONPATH": "/opt/dicomflow/plugins"}
    out = subprocess.run(run_in(image, env, {}, "python", "-c", imports), capture_output=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.container
@pytest.mark.timeout(600)
def test_the_image_reads_the_settings_the_chart_gives_it(
    image: tuple[list[str], str], tmp_path: Path
) -> None:
    """The web container's environment and ConfigMap, from the production example, in the image."""
    manifests = render(tmp_path / "helm", PRODUCTION_VALUES)
    web = one(manifests, "Deployment", "dicomflow-web")["spec"]["template"]["spec"]
    config = tmp_path / "config"
    config.mkdir()
    settings_text = next(m for m in manifests if m["kind"] == "ConfigMap")["data"]
    (config / "dicomflow.yaml").write_text(settings_text["dicomflow.yaml"])
    config.chmod(0o755)
    env: dict[str, str] = {}
    for entry in web["containers"][0]["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secret_value(ref["name"], ref["key"])
    command = run_in(image, env, {config: "/etc/dicomflow:ro"}, "dicomflow", "config", "show")
    out = subprocess.run(command, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)
    assert shown["postgres"]["host"] == "imaging-db.postgres.svc.cluster.local"
    assert shown["index"]["opensearch_url"] == "https://opensearch.search.svc.cluster.local:9200"
    assert shown["receiver"]["max_associations"] == 128
    assert shown["data_dir"] == "/var/lib/dicomflow"
    # The packaged defaults were read too (a key the chart does not set).
    assert shown["validation"]["niceness"] == 10
