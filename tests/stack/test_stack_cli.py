"""`dicomflow up / status / down / logs` on a stack of its own, as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dicomflow.stack.isolated import stack_environment
from dicomflow.stack.process import marked_processes, session_components, wait_until

DICOMFLOW = [sys.executable, "-m", "dicomflow.cli"]


def run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DICOMFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def own_stack() -> Iterator[dict[str, str]]:
    # A private folder (0700), as root's home is: a first run as root must work there too.
    home = Path(tempfile.mkdtemp(prefix="dicomflow-home-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    env.update(stack_environment(home / "var"))
    yield env
    pg_data = home / "var" / "postgres"
    if pg_data.is_symlink():  # PostgreSQL's data, where its user can reach it
        shutil.rmtree(pg_data.resolve().parent, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


def test_up_status_down_leave_no_process_behind(own_stack: dict[str, str]) -> None:
    data_dir = Path(own_stack["DICOMFLOW_DATA_DIR"])
    assert stat.S_IMODE(data_dir.parent.stat().st_mode) == 0o700
    try:
        up = run(own_stack, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "first administrator     admin / " in up.stdout
        assert "supervisor             started" in up.stdout

        status = run(own_stack, "status", "--json")
        assert status.returncode == 0, status.stdout
        report = json.loads(status.stdout)
        assert report["supervisor"]["state"] == "running" and report["supervisor"]["pid"]
        components = {c["name"]: c for c in report["components"]}
        assert set(components) >= {
            "postgres",
            "orthanc",
            "s3",
            "airflow-api-server",
            "airflow-scheduler",
            "airflow-dag-processor",
            "airflow-triggerer",
            "receiver",
            "web",
        }
        for comp in components.values():
            assert comp["state"] == "healthy" and comp["pid"] and comp["address"]
            assert comp["uptime_seconds"] is not None and comp["restarts"] == 0
        assert oct((data_dir / "secrets.json").stat().st_mode)[-3:] == "600"
        assert stat.S_IMODE(data_dir.parent.stat().st_mode) == 0o700  # left as it was

        again = run(own_stack, "up")
        assert again.returncode == 0
        assert "already running; nothing changed" in again.stdout
        assert not [line for line in again.stdout.splitlines() if line.endswith("starting")]

        # A component that dies is started again by the supervisor, with no command typed.
        os.kill(components["orthanc"]["pid"], signal.SIGKILL)

        def restarted() -> bool:
            rows = json.loads(run(own_stack, "status", "--json").stdout)["components"]
            orthanc = next(r for r in rows if r["name"] == "orthanc")
            return orthanc["state"] == "healthy" and orthanc["restarts"] == 1

        assert wait_until(restarted, 60, interval=1)
        shown = run(own_stack, "status")
        assert shown.returncode == 0, shown.stdout
        assert "last exit: killed by signal 9 (SIGKILL)" in shown.stdout
        said = run(own_stack, "logs", "supervisor", "-n", "20")
        assert "orthanc died: killed by signal 9 (SIGKILL)" in said.stdout

        logs = run(own_stack, "logs", "postgres", "-n", "5")
        assert logs.returncode == 0 and logs.stdout.strip()
        started = marked_processes(data_dir.resolve())
        # Airflow's API server rewrites its process title (and so hides its environment):
        # it is found through the session it leads.
        assert components["airflow-api-server"]["pid"] in {p.pid for p in started}
        # ... which names the component that led it (the benchmarks' CPU per component).
        api_session = os.getsid(components["airflow-api-server"]["pid"])
        assert session_components(data_dir.resolve())[api_session] == "airflow-api-server"
    finally:
        down = run(own_stack, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.splitlines()[0].split() == ["supervisor", "stopped"]
    assert marked_processes(data_dir.resolve()) == []
    assert [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    final = run(own_stack, "status", "--json")
    assert final.returncode == 1
    report = json.loads(final.stdout)
    assert report["supervisor"]["state"] == "stopped"
    assert {c["state"] for c in report["components"]} == {"stopped"}


def test_port_in_use_names_port_component_and_key(own_stack: dict[str, str]) -> None:
    port = int(own_stack["DICOMFLOW_PACS__HTTP_PORT"])
    with socket.socket() as blocker:
        blocker.bind(("0.0.0.0", port))
        blocker.listen()
        result = run(own_stack, "up")
    assert result.returncode != 0
    assert f"port {port}" in result.stderr
    assert "orthanc" in result.stderr and "pacs.http_port" in result.stderr
    assert "DICOMFLOW_PACS__HTTP_PORT" in result.stderr
    # Nothing was started before the check failed.
    assert marked_processes(Path(own_stack["DICOMFLOW_DATA_DIR"]).resolve()) == []


def test_missing_system_package_names_package_and_command(own_stack: dict[str, str]) -> None:
    # Without /usr/bin on PATH, Orthanc is as absent as on a machine that skipped `make run`.
    env = {**own_stack, "PATH": str(Path(sys.executable).parent)}
    result = run(env, "up")
    assert result.returncode != 0
    assert "Orthanc not found (package orthanc)" in result.stderr
    assert "make run" in result.stderr


def test_invalid_configuration_stops_start_up(own_stack: dict[str, str]) -> None:
    result = run({**own_stack, "DICOMFLOW_RECEIVER__BATCH_IDLE_SECONDS": "-1"}, "up")
    assert result.returncode != 0
    assert "receiver.batch_idle_seconds = -1" in result.stderr
    assert "expected float > 0" in result.stderr


def test_project_create_and_list(postgres: object, stack_env: dict[str, str]) -> None:
    bad = run(stack_env, "project", "create", "Not_Valid!")
    assert bad.returncode != 0 and "lowercase letters, digits and '-'" in bad.stderr
    too_long = run(stack_env, "project", "create", "a" * 17)
    assert too_long.returncode != 0 and "1 to 16 characters" in too_long.stderr
    created = run(stack_env, "project", "create", "lung-ct", "--description", "Lung CT study")
    assert created.returncode == 0 and "project lung-ct created" in created.stdout
    repeated = run(stack_env, "project", "create", "lung-ct")
    assert repeated.returncode == 0 and "already exists" in repeated.stdout
    listed = json.loads(run(stack_env, "project", "list", "--json").stdout)
    by_name = {p["name"]: p for p in listed}
    assert {"admin", "lung-ct"} <= set(by_name)
    assert by_name["lung-ct"]["description"] == "Lung CT study"


def test_help_on_every_command() -> None:
    for args in (["--help"], ["up", "--help"], ["project", "create", "--help"], ["logs", "-h"]):
        result = subprocess.run([*DICOMFLOW, *args], capture_output=True, text=True)
        assert result.returncode == 0 and "Usage:" in result.stdout
