"""The receiver's readiness probe, exactly as the chart renders it, against a real receiver.

The probe is dcmtk's echoscu doing a C-ECHO with the called AE title of a project (admin by
default): it passes once the receiver would accept data for a project, and fails when nothing
listens or the receiver refuses the association.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from dicomflow.db.projects import ADMIN_PROJECT, ProjectStore
from dicomflow.spool.store import Spool
from tests.charts.chart_testutil import one, render
from tests.receiver.receiver_helpers import running_receiver


def probe_command(home: Path, port: int) -> list[str]:
    """The StatefulSet's readiness probe, aimed at ``port`` instead of the pod's own."""
    receiver = one(render(home), "StatefulSet", "dicomflow-receiver")
    command: list[str] = receiver["spec"]["template"]["spec"]["containers"][0]["readinessProbe"][
        "exec"
    ]["command"]
    assert command[-2:] == ["127.0.0.1", "11112"]
    return [*command[:-1], str(port)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_probe_passes_on_a_receiver_that_accepts_the_project(
    platform_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    projects = ProjectStore(platform_engine)
    projects.create_project(ADMIN_PROJECT, "every series")
    with running_receiver(Spool(tmp_path / "spool"), projects, monkeypatch) as receiver:
        command = probe_command(tmp_path / "helm", receiver.port)
        passed = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert passed.returncode == 0, passed.stderr
        # A project that does not exist is refused: the probe tests admission, not just TCP.
        unknown = [*command]
        unknown[unknown.index("-aec") + 1] = "NO-SUCH-PROJECT"
        refused = subprocess.run(unknown, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0


def test_probe_fails_when_nothing_listens(tmp_path: Path) -> None:
    command = probe_command(tmp_path / "helm", free_port())
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
