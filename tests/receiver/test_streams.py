"""A sender's stream of one-instance associations goes into one batch (receiver/streams.py).

dcmtk's ``storescu`` once per file, as scanners that send each image as it is reconstructed,
autorouters and per-file scripts do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dicomflow.config import Settings, load_settings
from dicomflow.db.projects import ProjectStore
from dicomflow.spool.records import BatchRecord, BatchState, CloseReason, Door, Origin
from dicomflow.spool.store import Spool
from dicomflow.stack.isolated import free_port
from receiver.app import Receiver
from receiver.streams import Sender, SenderStreams
from tests.intake_testutil import admission_for
from tests.receiver.conftest import PROJECT
from tests.receiver.receiver_helpers import (
    good_dataset,
    receiver_process_env,
    sop_instance_uid,
    start_receiver_process,
    stop_receiver_process,
    wait_listening,
)

NODELAY = {**os.environ, "TCP_NODELAY": "1"}


def _files(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for i in range(count):
        path = folder / f"{i}.dcm"
        good_dataset().save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _storescu(port: int, path: Path, calling: str = "SCANNER") -> None:
    subprocess.run(
        ["storescu", "-aet", calling, "-aec", PROJECT.upper(), "127.0.0.1", str(port), str(path)],
        env=NODELAY,
        check=True,
        capture_output=True,
        timeout=30,
    )


def _closed(spool: Spool, count: int, wait: float = 10) -> list[BatchRecord]:
    """The spool's batches once ``count`` of them have closed (none open then)."""
    deadline = time.monotonic() + wait
    while True:
        batches = spool.batches()
        open_ = [b for b in batches if b.state is BatchState.OPEN]
        if len(batches) >= count and not open_:
            return batches
        assert time.monotonic() < deadline, f"batches: {batches}"
        time.sleep(0.05)


def _uids(spool: Spool, batch: BatchRecord) -> list[str]:
    return [entry.sop_instance_uid for entry in spool.manifest(batch.id)]


@contextmanager
def _receiver(
    spool: Spool, projects: ProjectStore, patch: pytest.MonkeyPatch, **streams: float
) -> Iterator[Receiver]:
    patch.setattr(tempfile, "tempdir", str(spool.incoming_dir))
    service = Receiver(spool, admission_for(spool, projects), port=0, **streams)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def test_a_senders_stream_of_associations_shares_one_batch(
    spool: Spool, projects: ProjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = _files(tmp_path / "files", 5)
    with _receiver(spool, projects, monkeypatch) as receiver:
        for path in files:
            _storescu(receiver.port, path)
        first, stream = _closed(spool, 2)
    # The first association is no stream yet: its batch closed at release, alone.
    assert first.close_reason == CloseReason.RELEASED
    assert _uids(spool, first) == [sop_instance_uid(files[0])]
    # The next four, each opened within a second of the last release, went into one batch
    # that closed once the sender paused.
    assert stream.close_reason == CloseReason.STREAM_END
    assert _uids(spool, stream) == [sop_instance_uid(p) for p in files[1:]]
    assert (stream.project, stream.dataset) == (PROJECT, "scanner")
    assert len(spool.batches()) == 2


def test_joining_off_closes_every_batch_at_release(
    spool: Spool, projects: ProjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = _files(tmp_path / "files", 3)
    with _receiver(spool, projects, monkeypatch, stream_join_seconds=0) as receiver:
        for path in files:
            _storescu(receiver.port, path)
        batches = _closed(spool, 3)
    assert [b.close_reason for b in batches] == [CloseReason.RELEASED] * 3
    assert [_uids(spool, b) for b in batches] == [[sop_instance_uid(p)] for p in files]


def test_two_senders_streams_do_not_mix(
    spool: Spool, projects: ProjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = _files(tmp_path / "files", 8)
    with _receiver(spool, projects, monkeypatch) as receiver:
        for i, path in enumerate(files):
            _storescu(receiver.port, path, calling=("CT1", "CT2")[i % 2])
        batches = _closed(spool, 4)
    sent = {"ct1": files[0::2], "ct2": files[1::2]}
    for dataset, paths in sent.items():
        own = [b for b in batches if b.dataset == dataset]
        # Each sender: its first association alone, then its stream in one batch.
        assert [_uids(spool, b) for b in own] == [
            [sop_instance_uid(paths[0])],
            [sop_instance_uid(p) for p in paths[1:]],
        ]
    assert len(batches) == 4


def test_an_echo_before_each_send_starts_no_stream(
    spool: Spool, projects: ProjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (path,) = _files(tmp_path / "files", 1)
    with _receiver(spool, projects, monkeypatch) as receiver:
        echo = ["echoscu", "-aet", "SCANNER", "-aec", PROJECT.upper()]
        subprocess.run(
            [*echo, "127.0.0.1", str(receiver.port)],
            env=NODELAY,
            check=True,
            capture_output=True,
            timeout=30,
        )
        _storescu(receiver.port, path)
        # Not held back for a stream: closed at its release, before any linger could end.
        (batch,) = _closed(spool, 1, wait=0.5)
    assert batch.close_reason == CloseReason.RELEASED


def test_a_stream_batch_is_not_kept_open_past_its_age(spool: Spool) -> None:
    now = [100.0]
    streams = SenderStreams(join_seconds=1.0, batch_seconds=5.0, clock=lambda: now[0])
    sender = Sender("10.0.0.7", PROJECT, "scanner")
    origin = Origin(Door.DIMSE, "10.0.0.7:4000", "SCANNER", PROJECT.upper())

    first = spool.open_batch(PROJECT, "scanner", origin)
    assert streams.begin(sender) == (False, None)
    assert not streams.end(sender, first, streaming=False)  # the caller closes it

    now[0] += 0.5
    streaming, batch = streams.begin(sender)
    assert (streaming, batch) == (True, None)
    young = spool.open_batch(PROJECT, "scanner", origin)
    assert streams.end(sender, young, streaming=True)  # left open, lingering
    assert young.close_at is not None

    now[0] += 0.5
    assert streams.begin(sender) == (True, young)  # taken: no other association gets it
    assert young.close_at is None
    assert streams.begin(Sender("10.0.0.8", PROJECT, "scanner")) == (False, None)

    young.opened_at -= 5.0  # open for longer than batch_seconds
    assert not streams.end(sender, young, streaming=True)

    now[0] += 1.5  # a pause longer than join_seconds: the next association starts afresh
    assert streams.begin(sender) == (False, None)


def test_a_batch_left_open_survives_a_sigkill(
    postgres: Settings,
    stack_env: dict[str, str],
    projects: ProjectStore,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = receiver_process_env(stack_env, postgres, tmp_path / "var", port)
    # Long enough for the kill to land while the stream's batch waits for the next one.
    env["DICOMFLOW_RECEIVER__STREAM_JOIN_SECONDS"] = "60"
    spool_dir = load_settings(environ=env).spool_dir
    files = _files(tmp_path / "files", 3)
    log = tmp_path / "receiver.log"
    proc = start_receiver_process(env, log)
    try:
        wait_listening(port, proc)
        for path in files:
            _storescu(port, path)  # each acknowledged: storescu exits 0
        spool = Spool(spool_dir)
        assert [b.state for b in spool.batches()] == [BatchState.PENDING, BatchState.OPEN]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc = start_receiver_process(env, log)
        wait_listening(port, proc)
        first, stream = _closed(spool, 2)
    finally:
        stop_receiver_process(proc)
    assert stream.close_reason == CloseReason.RECOVERED
    assert _uids(spool, first) + _uids(spool, stream) == [sop_instance_uid(p) for p in files]
    counts = Counter(e.sop_instance_uid for b in spool.batches() for e in spool.manifest(b.id))
    assert set(counts.values()) == {1}
