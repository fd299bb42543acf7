"""dciodvfy through fork servers: the same findings as plain runs, and every way it can fail."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from dicomflow.validation import InstanceValidation, Validator, run_dciodvfy
from dicomflow.validation.dciodvfy import find_allocator
from dicomflow.validation.forkserver import (
    ForkServer,
    ForkServerError,
    PreloadUnavailableError,
    build_preload,
)
from tests.dicomfiles import pydicom_file

pytestmark = pytest.mark.skipif(
    shutil.which("dciodvfy") is None or shutil.which("cc") is None,
    reason="needs dicom3tools (dciodvfy) and a C compiler",
)


@pytest.fixture(scope="module")
def preload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_preload(tmp_path_factory.mktemp("cache"))


def _outcome(result: InstanceValidation) -> tuple[object, ...]:
    return result.iod, result.findings, result.returncode, result.crashed


#: The system's jemalloc (``validation.allocator: auto``); scripts/install.sh installs it.
JEMALLOC = find_allocator("auto")


@pytest.mark.parametrize(
    ("served_by", "allocator"),
    [("fork server", None), ("fork server", JEMALLOC), ("plain runs", JEMALLOC)],
    ids=["fork-server", "fork-server-jemalloc", "plain-jemalloc"],
)
def test_every_pydicom_file_gets_the_findings_of_a_plain_run(
    preload: Path, served_by: str, allocator: str | None
) -> None:
    # The files pydicom ships in its wheel (no download attempts).
    files = sorted(Path(pydicom.__file__).parent.joinpath("data", "test_files").rglob("*.dcm"))
    assert len(files) > 50
    server = preload if served_by == "fork server" else None
    with Validator(workers=2, preload=server, allocator=allocator) as validator:
        served = validator.validate_all([(f, None) for f in files])
    plain = [run_dciodvfy(f) for f in files]
    assert [_outcome(s) for s in served] == [_outcome(p) for p in plain]
    # The sample covers findings, clean files and a validator crash (rtdose.dcm).
    assert sum(r.errors for r in served) > 0 and any(r.crashed for r in served)


def test_a_server_forks_per_file_and_stays_up(preload: Path) -> None:
    server = ForkServer(shutil.which("dciodvfy") or "dciodvfy", preload)
    try:
        first = server.run(pydicom_file("CT_small.dcm"), timeout=30)
        crash = server.run(pydicom_file("rtdose.dcm"), timeout=30)
        again = server.run(pydicom_file("CT_small.dcm"), timeout=30)
    finally:
        server.close()
    assert first.returncode == 0 and "CTImage" in first.output
    assert crash.returncode == -signal.SIGABRT
    assert again.output == first.output  # a child's run leaves nothing behind in the server
    assert not server.alive


def test_a_file_that_never_ends_times_out_like_a_plain_run(preload: Path, tmp_path: Path) -> None:
    # dciodvfy blocks opening a FIFO that nobody writes: a real hang, for both ways of running.
    fifo = tmp_path / "never.dcm"
    os.mkfifo(fifo)
    with Validator(workers=1, timeout=1, preload=preload) as validator:
        served = validator.validate(fifo)
        after = validator.validate(pydicom_file("CT_small.dcm"))
    plain = run_dciodvfy(fifo, timeout=1)
    for result in (served, plain):
        assert result.crashed
        assert result.findings[-1].message == "validator timed out after 1 s"
    assert after.iod == "CTImage" and not after.crashed  # the server survived its child


def test_a_killed_server_falls_back_to_a_plain_run(
    preload: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ct = pydicom_file("CT_small.dcm")
    with Validator(workers=1, preload=preload) as validator:
        before = validator.validate(ct)
        (server,) = validator._servers
        os.kill(server._process.pid, signal.SIGKILL)
        server._process.wait()
        with caplog.at_level(logging.WARNING):
            during = validator.validate(ct)
            after = validator.validate(ct)
        assert len(validator._servers) == 2  # a new server replaced the dead one
    assert _outcome(during) == _outcome(before) == _outcome(after)
    assert "fork server failed" in caplog.text and "plain run" in caplog.text


def test_a_path_the_protocol_cannot_carry_is_validated_plainly(
    preload: Path, tmp_path: Path
) -> None:
    odd = tmp_path / "two\nlines.dcm"
    shutil.copy(pydicom_file("CT_small.dcm"), odd)
    with Validator(workers=1, preload=preload) as validator:
        result = validator.validate(odd, "1.2.3")
        validator.validate(pydicom_file("CT_small.dcm"))
        assert len(validator._servers) == 1  # the server that refused the path is used again
    assert result.iod == "CTImage" and result.sop_instance_uid == "1.2.3"
    server = ForkServer("dciodvfy", preload)
    try:
        with pytest.raises(ForkServerError, match="not expressible"):
            server.run(odd, timeout=5)
    finally:
        server.close()


def test_no_compiler_is_reported_with_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(PreloadUnavailableError, match="gcc"):
        build_preload(tmp_path / "cache", compiler="no-such-cc")
    assert not (tmp_path / "cache").exists()


def test_the_library_is_built_once_per_source(tmp_path: Path) -> None:
    first = build_preload(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert build_preload(tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no partial builds left


def test_the_allocator_setting() -> None:
    assert JEMALLOC == "libjemalloc.so.2", "libjemalloc2 is installed (scripts/install.sh)"
    assert find_allocator("") is None
    assert find_allocator("libtcmalloc_minimal.so.4") == "libtcmalloc_minimal.so.4"


def test_a_missing_allocator_library_is_reported_and_not_used(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    missing = str(tmp_path / "libnothing.so")
    with caplog.at_level(logging.WARNING):
        assert find_allocator(missing) is None
    assert missing in caplog.text and "glibc" in caplog.text


def test_the_fork_server_never_runs_above_the_task_that_starts_it(
    preload: Path, tmp_path: Path
) -> None:
    script = (
        "import os, sys; from pathlib import Path; "
        "from dicomflow.validation.forkserver import ForkServer; "
        "server = ForkServer('dciodvfy', Path(sys.argv[1]), niceness=int(sys.argv[2])); "
        "print(os.getpriority(os.PRIO_PROCESS, server._process.pid)); server.close()"
    )

    def niceness(task: int, configured: int) -> int:
        done = subprocess.run(
            ["nice", "-n", str(task), sys.executable, "-c", script, str(preload), str(configured)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return int(done.stdout)

    assert niceness(task=5, configured=10) == 10
    assert niceness(task=12, configured=10) == 12
