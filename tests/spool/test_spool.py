"""The spool on a temporary directory: durability facts, states, limits, recovery, problems."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dicomflow.cli.batches import batches as batches_command
from dicomflow.dicom.instance import Instance
from dicomflow.intake.checks import HEAD_BYTES, InstanceRejectedError, StoreStatus
from dicomflow.intake.session import recover_spool
from dicomflow.spool import durable
from dicomflow.spool.records import (
    BatchState,
    CloseReason,
    Door,
    Origin,
    WrittenContent,
)
from dicomflow.spool.store import Spool
from tests.dicomfiles import edited_instance
from tests.intake_testutil import open_session

ORIGIN = Origin(Door.DIMSE, "127.0.0.1:5000", "SCANNER", "KP-PROJ")


def make_instance(directory: Path, **changes: str | None) -> Path:
    ds = edited_instance("MR_small.dcm", **changes)
    path = directory / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", max_instances=3, idle_seconds=0.2)


def test_instances_become_durable_files_with_a_manifest(spool: Spool, tmp_path: Path) -> None:
    sources = [make_instance(tmp_path) for _ in range(2)]
    originals = [p.read_bytes() for p in sources]
    intake = open_session(spool, "proj", "scanner", ORIGIN)
    entries = [intake.store(p, move=True) for p in sources]

    assert not any(p.exists() for p in sources), "move=True takes the files away"
    (batch,) = spool.batches()
    assert batch.state is BatchState.OPEN
    assert (batch.instances, batch.bytes) == (2, sum(len(b) for b in originals))
    manifest = spool.manifest(batch.id)
    assert manifest == entries
    for entry, original in zip(manifest, originals, strict=True):
        assert entry.path.parent == batch.path
        assert entry.path.read_bytes() == original
        assert entry.transfer_syntax_uid == "1.2.840.10008.1.2.1"
        assert len(entry.sha256) == 64
    assert not [p for p in batch.path.iterdir() if p.name.startswith(".tmp-")]

    assert [b.id for b in spool.pending()] == []
    intake.close(CloseReason.RELEASED)
    record = spool.batch(batch.id)
    assert record.state is BatchState.PENDING
    assert record.close_reason == "association released"
    assert [b.id for b in spool.pending()] == [batch.id], "a closed batch is in the outbox"
    spool.mark_triggered(batch.id, "batch-x", "dag")
    assert spool.batch(batch.id).state is BatchState.TRIGGERED
    assert spool.pending() == [], "handed over: out of the outbox"
    spool.mark_done(batch.id)
    assert spool.batch(batch.id).state is BatchState.DONE


def test_limits_roll_over_to_a_new_batch(spool: Spool, tmp_path: Path) -> None:
    closed: list[str] = []
    spool.add_close_listener(closed.append)
    intake = open_session(spool, "proj", "scanner", ORIGIN)
    for _ in range(4):
        intake.store(make_instance(tmp_path), move=False)
    assert len(intake.batch_ids) == 2
    first, second = (spool.batch(i) for i in intake.batch_ids)
    assert (first.state, first.instances, first.close_reason) == (
        BatchState.PENDING,
        3,
        "maximum instances reached",
    )
    assert (second.state, second.instances) == (BatchState.OPEN, 1)
    assert closed == [first.id]


def test_idle_batches_close_and_the_session_continues_in_a_new_one(
    spool: Spool, tmp_path: Path
) -> None:
    intake = open_session(spool, "proj", "scanner", ORIGIN)
    intake.store(make_instance(tmp_path), move=False)
    assert spool.close_idle() == []
    time.sleep(0.3)
    assert spool.close_idle() == intake.batch_ids
    intake.store(make_instance(tmp_path), move=False)
    assert len(intake.batch_ids) == 2
    assert spool.batch(intake.batch_ids[0]).close_reason == "idle timeout"


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({"SeriesInstanceUID": None}, StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "missing"),
        ({"StudyInstanceUID": ""}, StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "empty"),
        ({"SOPInstanceUID": "1." + "2" * 63}, StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "65"),
        ({"SeriesInstanceUID": "1.2.03"}, StoreStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "valid"),
    ],
)
def test_bad_instances_are_kept_with_their_reason(
    spool: Spool, tmp_path: Path, changes: dict[str, str | None], status: StoreStatus, words: str
) -> None:
    path = make_instance(tmp_path, **changes)
    original = path.read_bytes()
    intake = open_session(spool, "proj", "scanner", ORIGIN)
    with pytest.raises(InstanceRejectedError) as info:
        intake.store(path, move=True)
    assert info.value.status is status
    assert words in info.value.reason
    assert spool.batches() == [], "no batch is opened for a rejected instance"
    (problem,) = spool.problems()
    assert (problem.path / "instance.dcm").read_bytes() == original
    reason = json.loads((problem.path / "reason.json").read_text())
    assert reason["reason"] == info.value.reason
    assert (reason["peer"], reason["calling_ae"], reason["called_ae"]) == (
        "127.0.0.1:5000",
        "SCANNER",
        "KP-PROJ",
    )


def test_garbage_is_rejected_as_unparseable(spool: Spool, tmp_path: Path) -> None:
    path = tmp_path / "garbage.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + bytes(range(256)) * 8)
    with pytest.raises(InstanceRejectedError) as info:
        open_session(spool, "proj", "d", ORIGIN).store(path, move=False)
    assert info.value.status is StoreStatus.CANNOT_UNDERSTAND
    assert len(spool.problems()) == 1


class _HashThatFails:
    """A writer whose background hash failed after the file was written.

    Stands in for :class:`receiver.incoming.IncomingFile`: ``hashlib`` does not fail for real,
    the worker thread's error path is what is exercised here.
    """

    def __init__(self, source: Path) -> None:
        self.head = source.read_bytes()[: HEAD_BYTES + 1]

    def result(self) -> WrittenContent:
        raise RuntimeError("hashing the received data set failed: worker gone")


def test_an_instance_whose_hash_fails_is_refused_and_kept(spool: Spool, tmp_path: Path) -> None:
    intake = open_session(spool, "proj", "scanner", ORIGIN)
    first = intake.store(make_instance(tmp_path), move=True)
    failing = make_instance(tmp_path)
    original = failing.read_bytes()
    with pytest.raises(InstanceRejectedError) as info:
        intake.store(failing, move=True, content=_HashThatFails(failing))
    assert info.value.status is StoreStatus.PROCESSING_FAILURE
    assert "worker gone" in info.value.reason
    (problem,) = spool.problems()
    assert (problem.path / "instance.dcm").read_bytes() == original
    # The failed instance left nothing in the batch; the next one takes the free name.
    third = intake.store(make_instance(tmp_path), move=True)
    (batch,) = spool.batches()
    assert spool.manifest(batch.id) == [first, third]
    assert sorted(p.name for p in batch.path.glob("*.dcm")) == ["000001.dcm", "000002.dcm"]
    assert (batch.instances, intake.stored, intake.failed) == (2, 2, 1)


_FULL_DISK_SCRIPT = """
import json, resource, signal, sys
from pathlib import Path
from dicomflow.intake.checks import InstanceRejectedError
from dicomflow.spool.store import Spool
from tests.spool.test_spool import ORIGIN, make_instance
from tests.intake_testutil import open_session

root, files = Path(sys.argv[1]), Path(sys.argv[2])
spool = Spool(root)
intake = open_session(spool, "proj", "scanner", ORIGIN)
intake.store(make_instance(files), move=True)
manifest = next(root.glob("batches/*/manifest.jsonl"))
second = make_instance(files)
# Files may not grow past the manifest's length plus half a line: its next line is cut
# short by the kernel, as on a full disk (without the signal that would end the process).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = manifest.stat().st_size + 200
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    intake.store(second, move=True)
    refused = None
except InstanceRejectedError as exc:
    refused = exc.reason
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
intake.store(make_instance(files), move=True)
print(json.dumps({"refused": refused, "batch": manifest.parent.name}))
"""


def test_a_manifest_line_cut_short_by_a_full_disk_is_not_kept(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_SCRIPT, str(tmp_path / "spool"), str(files)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["refused"] is not None and "spool write failed" in result["refused"]
    spool = Spool(tmp_path / "spool")
    # Both stored instances are listed: the later line does not follow a torn one.
    manifest = spool.manifest(result["batch"])
    assert [entry.path.name for entry in manifest] == ["000001.dcm", "000002.dcm"]
    (problem,) = spool.problems()
    assert (problem.path / "instance.dcm").exists()


_CRASH_SCRIPT = """
import json, os, sys
from pathlib import Path
from dicomflow.spool.records import CloseReason
from dicomflow.spool.store import Spool
from tests.intake_testutil import open_session
from tests.spool.test_spool import ORIGIN, make_instance

root, files, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
spool = Spool(root)
intake = open_session(spool, "proj", "scanner", ORIGIN)
entries = [intake.store(make_instance(files), move=True).manifest_record() for _ in range(count)]
empty = spool.open_batch("proj", "other", ORIGIN)
pending = open_session(spool, "proj", "p2", ORIGIN)
pending.store(make_instance(files), move=False)
pending.close(CloseReason.RELEASED)
(spool.incoming_dir / "tmpabc.dcm").write_bytes(b"half a transfer")
print(json.dumps({"batch": intake.batch_ids[0], "entries": entries, "empty": empty.id,
                  "pending": pending.batch_ids[0]}), flush=True)
os._exit(0)  # dies with its batches open, as a killed door does
"""


def _crashed_door(tmp_path: Path, count: int) -> tuple[Spool, list[Instance], Path, dict[str, str]]:
    """A spool a door process wrote and died over: ``count`` instances in an open batch.

    Returns the spool (as a new process sees it), the open batch's records and path, and the
    ids of the door's other batches (``empty`` still open, ``pending`` closed).
    """
    files = tmp_path / "files"
    files.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", _CRASH_SCRIPT, str(tmp_path / "spool"), str(files), str(count)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    spool = Spool(tmp_path / "spool")
    path = spool.batch_path(result["batch"])
    entries = [Instance.from_manifest_record(r, path) for r in result["entries"]]
    return spool, entries, path, {"empty": result["empty"], "pending": result["pending"]}


def _never(path: Path) -> Instance:
    raise AssertionError(f"recovery read {path}, a file it had no reason to read")


def test_recovery_closes_half_open_batches_and_drops_unacknowledged_files(
    tmp_path: Path,
) -> None:
    spool, entries, batch_path, others = _crashed_door(tmp_path, 2)
    # What a crash can leave: a torn manifest line, a temporary file, a file never recorded.
    with open(batch_path / "manifest.jsonl", "ab") as fh:
        fh.write(b'{"file": "000003.dcm", "sop_ins')
    (batch_path / ".tmp-000003.dcm").write_bytes(b"partial")
    (batch_path / "000003.dcm").write_bytes(b"never acknowledged")
    # Not something the spool writes: left alone (and the batch still recovered).
    (batch_path / "notes").mkdir()
    # A batch a live process has open is its own: recovery leaves it alone.
    live = open_session(spool, "proj", "live", ORIGIN)
    live.store(make_instance(tmp_path), move=False)
    ours = spool.incoming_dir

    report = Spool(spool.root).recover(_never)
    assert report.closed == [batch_path.name]
    assert report.removed_empty == [others["empty"]]
    assert report.dropped_files == 2
    assert report.pending == sorted([batch_path.name, others["pending"]])
    assert spool.manifest(batch_path.name) == entries
    assert sorted(p.name for p in batch_path.glob("*.dcm")) == ["000001.dcm", "000002.dcm"]
    assert (batch_path / "notes").is_dir()
    assert spool.batch(batch_path.name).close_reason == "recovered after restart"
    assert [p.name for p in spool.incoming_root.iterdir()] == [ours.name], (
        "the dead door's transfers in progress are gone, ours stay"
    )
    assert spool.batch(live.batch_ids[0]).state is BatchState.OPEN
    assert [b.id for b in spool.pending()] == sorted([batch_path.name, others["pending"]])
    assert spool.recover(_never).closed == [], "recovery is idempotent"


def test_each_instance_file_keeps_its_hash(spool: Spool, tmp_path: Path) -> None:
    intake = open_session(spool, "proj", "scanner", ORIGIN)
    entry = intake.store(make_instance(tmp_path), move=True)
    kept = durable.recorded_sha256(entry.path)
    assert kept is not None and kept.hex() == entry.sha256
    assert spool.keeps_hashes


def test_recovery_lists_again_the_instances_whose_manifest_lines_a_crash_took(
    tmp_path: Path,
) -> None:
    spool, entries, batch_path, _ = _crashed_door(tmp_path, 3)
    manifest = batch_path / "manifest.jsonl"
    # What a power loss can leave of lines written but not yet flushed (they are flushed at
    # the close): the first line and half of the second.
    first_line = manifest.read_bytes().split(b"\n")[0] + b"\n"
    manifest.write_bytes(first_line + b'{"file":"000002.dcm","sop_')
    # And a fourth file whose flush never finished: its kept hash is not that of its bytes.
    unfinished = batch_path / "000004.dcm"
    unfinished.write_bytes(make_instance(tmp_path).read_bytes())
    os.setxattr(unfinished, durable.SHA256_XATTR, bytes(32))

    second = spool
    report = recover_spool(second)
    assert report.closed == [batch_path.name]
    assert (report.restored_files, report.dropped_files) == (2, 1)
    recovered = second.manifest(batch_path.name)
    assert recovered[0] == entries[0]
    # Everything but the time of arrival (that of the file then) is as first recorded.
    assert [replace(e, received_at="") for e in recovered] == [
        replace(e, received_at="") for e in entries
    ]
    assert sorted(p.name for p in batch_path.glob("*.dcm")) == [e.path.name for e in entries]
    assert second.batch(batch_path.name).instances == 3
    assert recover_spool(second).restored_files == 0, "recovery is idempotent"


def test_without_extended_attributes_each_manifest_line_is_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Stand-in for a file system without user extended attributes (e.g. NFSv3): the disks
    # of this machine all keep them, so the refusal is made up here.
    def refuse(*args: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", refuse)
    spool = Spool(tmp_path / "spool")
    intake = open_session(spool, "proj", "scanner", ORIGIN)
    entries = [intake.store(make_instance(tmp_path), move=True) for _ in range(2)]
    assert not spool.keeps_hashes
    assert sum("keeps no user extended attributes" in r.message for r in caplog.records) == 1
    (batch,) = spool.batches()
    assert spool.manifest(batch.id) == entries
    assert durable.recorded_sha256(entries[0].path) is None


def test_batches_command_lists_json(spool: Spool, tmp_path: Path) -> None:
    from click.testing import CliRunner

    intake = open_session(spool, "proj", "scanner", ORIGIN)
    intake.store(make_instance(tmp_path), move=False)
    intake.close(CloseReason.RELEASED)

    class FakeSettings:  # the command only reads these two things of the settings
        spool_dir = spool.root

        class receiver:
            batch_max_instances = 10
            batch_max_bytes = 10
            batch_idle_seconds = 1.0

    result = CliRunner().invoke(batches_command, ["--json"], obj=FakeSettings())
    assert result.exit_code == 0, result.output
    (listed,) = json.loads(result.output)
    assert (listed["id"], listed["state"], listed["instances"]) == (
        intake.batch_ids[0],
        "pending",
        1,
    )
    table = CliRunner().invoke(batches_command, ["--state", "open"], obj=FakeSettings())
    assert "no batches" in table.output


def test_a_named_problem_is_kept_once(spool: Spool, tmp_path: Path) -> None:
    source = tmp_path / "x.dcm"
    source.write_bytes(b"not really dicom")
    origin = Origin(Door.DIMSE, "127.0.0.1:1", "A", "B")
    first = spool.keep_problem(source, "conflict: x", origin, problem_id="conflict-b-1")
    again = spool.keep_problem(source, "conflict: x", origin, problem_id="conflict-b-1")
    assert first is not None and first.id == "conflict-b-1"
    assert again is None
    assert [p.id for p in spool.problems()] == ["conflict-b-1"]
