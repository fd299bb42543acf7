"""The DIMSE door: a project may list the senders it accepts (calling AE titles, networks).

With no list (the default) every sender is accepted, as Kaapana does; with one, an
association whose calling AE title and address match no entry is rejected and logged with
the peer.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from dicomflow.db.projects import ProjectStore
from dicomflow.spool.store import Spool
from tests.receiver.receiver_helpers import running_receiver


def _echo(port: int, called: str, calling: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["echoscu", "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_project_with_senders_accepts_only_those(
    platform_engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    projects = ProjectStore(platform_engine)
    open_project, closed = f"open-{uuid.uuid4().hex[:6]}", f"closed-{uuid.uuid4().hex[:6]}"
    projects.create_project(open_project)
    projects.create_project(closed)
    projects.add_sender(closed, "ae", "CT-SCANNER")
    spool = Spool(tmp_path / "spool")
    with (
        running_receiver(spool, projects, monkeypatch) as service,
        caplog.at_level(logging.WARNING),
    ):
        assert _echo(service.port, open_project, "ANYONE").returncode == 0
        assert _echo(service.port, closed, "ct-scanner").returncode == 0  # case does not matter
        refused = _echo(service.port, closed, "LAPTOP")
        assert refused.returncode != 0
        assert "Calling AE Title Not Recognized" in refused.stderr
        assert "Rejected Permanent" in refused.stderr
        assert any(
            "rejecting association from 127.0.0.1:" in r.getMessage()
            and "does not accept sender 'LAPTOP'" in r.getMessage()
            for r in caplog.records
        )
    # A network entry admits every calling AE title from it.
    projects.add_sender(closed, "network", "127.0.0.0/8")
    with running_receiver(spool, projects, monkeypatch) as service:
        assert _echo(service.port, closed, "LAPTOP").returncode == 0
    projects.remove_sender(closed, "network", "127.0.0.0/8")
    projects.add_sender(closed, "network", "10.0.0.0/8")
    with running_receiver(spool, projects, monkeypatch) as service:
        assert _echo(service.port, closed, "LAPTOP").returncode != 0
    # The list is kept in the spool with the projects, for while the database is away.
    kept = (spool.root / "known-projects.json").read_text()
    assert "CT-SCANNER" in kept and "10.0.0.0/8" in kept
