"""The supervisor restarts what dies, says why it died, gives up on a crash loop, stops first."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import psutil

from dicomflow.stack import control
from dicomflow.stack.components import COMPONENT_VARIABLE, MARKER_VARIABLE, Orthanc, SeaweedS3
from dicomflow.stack.policy import RestartPolicy
from dicomflow.stack.process import read_record, wait_until
from dicomflow.stack.supervisor import ComponentStatus, Stack, State
from tests.stack.stack_testutil import ended, own_stack, quiet


def _row(stack: Stack, name: str) -> ComponentStatus:
    return next(r for r in stack.status() if r.name == name)


def _restarted(stack: Stack, name: str, old_pid: int, timeout: float = 60) -> ComponentStatus:
    """Wait until ``name`` runs again under a new pid and answers; its status row."""

    def back() -> bool:
        row = _row(stack, name)
        return row.state is State.HEALTHY and row.pid not in (None, old_pid)

    assert wait_until(back, timeout), f"{name} was not restarted: {_row(stack, name)}"
    return _row(stack, name)


def _bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("0.0.0.0", port))
    except OSError:
        return False
    return True


def test_a_killed_component_is_restarted_after_its_leftovers_and_status_shows_why() -> None:
    with own_stack(Orthanc, SeaweedS3) as stack:
        lines: list[str] = []
        assert stack.up(report=lines.append, supervise=True) == ["orthanc", "s3"]
        assert lines[0].split()[:2] == ["supervisor", "started"]
        orthanc = stack.component("orthanc")
        old = read_record(orthanc.pid_file)
        assert old is not None
        # A process of orthanc's earlier life that outlived it: it carries orthanc's marker.
        env = {
            **os.environ,
            MARKER_VARIABLE: str(stack.settings.data_dir),
            COMPONENT_VARIABLE: "orthanc",
        }
        leftover = subprocess.Popen(["sleep", "600"], env=env, start_new_session=True)
        try:
            os.kill(old.pid, signal.SIGKILL)
            row = _restarted(stack, "orthanc", old.pid)
            leftover.wait(timeout=30)  # ended before orthanc started again
        finally:
            leftover.kill()
        assert leftover.returncode == -signal.SIGTERM
        assert (row.restarts, row.last_exit) == (1, "killed by signal 9 (SIGKILL)")
        assert row.uptime is not None and row.uptime < old.running_seconds()  # type: ignore[operator]

        s3_pid = _row(stack, "s3").pid
        assert s3_pid is not None
        os.kill(s3_pid, signal.SIGKILL)
        assert _restarted(stack, "s3", s3_pid).restarts == 1
        assert _row(stack, "orthanc").restarts == 1

        log = control.log_file(stack.settings).read_text()
        assert "orthanc died: killed by signal 9 (SIGKILL)" in log
        assert "s3 died: killed by signal 9 (SIGKILL)" in log
        assert f"ending 1 process(es) left from its previous run (pid {leftover.pid})" in log


def test_a_component_that_keeps_crashing_is_given_up_until_up_asks_again() -> None:
    with own_stack(Orthanc) as stack:
        stack.up(report=quiet, supervise=True, policy=RestartPolicy(max_restarts=2, max_delay=1))
        supervisor = psutil.Process(read_record(control.pid_file(stack.settings)).pid)  # type: ignore[union-attr]
        orthanc_pid = _row(stack, "orthanc").pid
        assert orthanc_pid is not None
        port = stack.settings.pacs.http_port
        with socket.socket() as squatter:
            # Held still while another program takes orthanc's port, the supervisor finds it
            # taken at every restart.
            supervisor.suspend()
            try:
                os.kill(orthanc_pid, signal.SIGKILL)
                squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                # Its threads may close their sockets a moment after the process shows ended.
                assert wait_until(lambda: _bound(squatter, port), 10)
                squatter.listen()
            finally:
                supervisor.resume()
            assert wait_until(lambda: _row(stack, "orthanc").state is State.GAVE_UP, 60)
            row = _row(stack, "orthanc")
            assert row.restarts == 2
            assert f"port {port} on 0.0.0.0 is already in use" in (row.last_exit or "")
            # ... and it says who holds it: this test's process, listening.
            assert f"(by pid {os.getpid()} (" in (row.last_exit or "")
            assert "listening)" in (row.last_exit or "")
            assert "gave up after 3 crashes" in row.note and "dicomflow up" in row.note
            time.sleep(2)
            assert _row(stack, "orthanc").state is State.GAVE_UP  # it stays given up

        # The port is free again; `up` asks the supervisor, which starts it afresh.
        lines: list[str] = []
        assert stack.up(report=lines.append, supervise=True) == ["orthanc"]
        assert lines[0].split()[:2] == ["supervisor", "running"]
        assert _row(stack, "orthanc").state is State.HEALTHY
        assert supervisor.is_running()


def test_down_stops_the_supervisor_before_the_components() -> None:
    with own_stack(Orthanc, SeaweedS3) as stack:
        stack.up(report=quiet, supervise=True)
        supervisor = read_record(control.pid_file(stack.settings))
        assert supervisor is not None and supervisor.process() is not None
        pids = [r.pid for r in stack.status()]
        lines: list[str] = []
        assert sorted(stack.down(report=lines.append, sweep=True)) == ["orthanc", "s3"]
        assert lines[0] == f"  {'supervisor':<22} stopped"
        assert supervisor.process() is None
        assert all(ended(pid) for pid in pids if pid)
        # Nothing was restarted while it was being stopped, and no component runs.
        assert "died" not in control.log_file(stack.settings).read_text()
        assert {r.state for r in stack.status()} == {State.STOPPED}
