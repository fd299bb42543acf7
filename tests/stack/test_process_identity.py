"""A running component is known by its boot id and start ticks, whatever the wall clock does."""

from __future__ import annotations

import json

import psutil
import pytest

from dicomflow.stack.components import Orthanc
from dicomflow.stack.process import read_record
from dicomflow.stack.supervisor import State
from tests.stack.stack_testutil import ended, own_stack, quiet


@pytest.mark.parametrize("step", [16.0, -16.0])
def test_a_clock_step_does_not_hide_the_running_stack(step: float) -> None:
    with own_stack(Orthanc) as stack:
        stack.up(report=quiet)
        orthanc = stack.components[0]
        pid = read_record(orthanc.pid_file).pid  # type: ignore[union-attr]
        # After the wall clock moved by `step`, psutil derives the process's start time from a
        # boot time that moved with it: the recorded wall-clock time is `step` away from it.
        data = json.loads(orthanc.pid_file.read_text())
        data["create_time"] -= step
        orthanc.pid_file.write_text(json.dumps(data))

        [row] = stack.status()
        assert (row.state, row.pid) == (State.HEALTHY, pid)
        # `up` finds it running instead of failing on its port, and `down` stops it.
        lines: list[str] = []
        assert stack.up(report=lines.append) == []
        assert lines == [f"  {'orthanc':<22} already running (pid {pid})"]
        assert stack.down(report=quiet) == ["orthanc"]
        assert ended(pid)


def test_a_pid_file_of_an_older_version_is_recognised_and_upgraded() -> None:
    with own_stack(Orthanc) as stack:
        stack.up(report=quiet)
        orthanc = stack.components[0]
        record = read_record(orthanc.pid_file)
        assert record is not None
        created = psutil.Process(record.pid).create_time()
        older = {"pid": record.pid, "create_time": created, "command": record.command}

        # A pid file that names another process (a pid reused after ours ended) is not ours.
        orthanc.pid_file.write_text(json.dumps({**older, "create_time": created - 3600}))
        assert [r.state for r in stack.status()] == [State.STOPPED]
        orthanc.pid_file.write_text(json.dumps({**record.__dict__, "start_ticks": 1}))
        assert [r.state for r in stack.status()] == [State.STOPPED]

        # The older form alone (wall-clock start time) still finds it, as it did, and is
        # rewritten with the boot id and start ticks, so a later clock step cannot hide it.
        orthanc.pid_file.write_text(json.dumps(older))
        [row] = stack.status()
        assert (row.state, row.pid) == (State.HEALTHY, record.pid)
        upgraded = json.loads(orthanc.pid_file.read_text())
        assert upgraded["start_ticks"] == record.start_ticks
        assert upgraded["boot_id"] == record.boot_id
