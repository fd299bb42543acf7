"""The receiver with real dcmtk senders and a pynetdicom SCU, on the real platform database."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from dicomflow.db.projects import ProjectStore
from dicomflow.spool import durable
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool
from receiver.app import Receiver
from tests.intake_testutil import admission_for
from tests.receiver.receiver_helpers import (
    bad_datasets,
    dataset_bytes,
    good_dataset,
    sample_files,
    sop_instance_uid,
)

NODELAY = {**os.environ, "TCP_NODELAY": "1"}


def dcmsend(port: int, files: list[Path], called: str, calling: str = "SCANNER") -> str:
    result = subprocess.run(
        [
            "dcmsend",
            "-v",
            "-aec",
            called,
            "-aet",
            calling,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        env=NODELAY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


def _send_files_as_they_are(port: int, files: list[Path], called: str, calling: str) -> None:
    """Send files with pynetdicom streaming each file's data set bytes unchanged.

    dcmsend re-encodes what it parses (e.g. it drops trailing padding), so it cannot show
    that the receiver keeps bytes; pynetdicom with chunked sending transmits the file as is.
    """
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        ae = AE(ae_title=calling)
        headers = {
            p: pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
            for p in files
        }
        pairs = {
            (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in headers.values()
        }
        for sop_class, syntax in sorted(pairs):
            ae.add_requested_context(sop_class, syntax)
        assoc = ae.associate("127.0.0.1", port, ae_title=called, max_pdu=65536)
        assert assoc.is_established
        for path in files:
            status = assoc.send_c_store(path)
            assert status.Status == 0, (path.name, status)
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False


def test_every_transfer_syntax_is_stored_byte_identical(receiver: Receiver, spool: Spool) -> None:
    files = sample_files()
    # pynetdicom proposes at most 128 contexts per association: send in groups.
    for i in range(0, len(files), 40):
        _send_files_as_they_are(receiver.port, files[i : i + 40], "KP-RECV", "Scanner-1")
    receiver.stop()

    batches = spool.batches()
    assert {(b.project, b.dataset, b.state) for b in batches} == {
        ("recv", "scanner-1", BatchState.PENDING)
    }
    # One sender's associations in a row: the first closed at its release, the rest are its
    # stream's batch, closed by the stop or by the pause before it (receiver/streams.py).
    reasons = [b.close_reason for b in batches]
    assert reasons[0] == "association released" and len(reasons) == 2
    assert reasons[1] in ("receiver stopped", "sender's stream paused")
    entries = [(b, e) for b in batches for e in spool.manifest(b.id)]
    assert {e.sop_instance_uid for _b, e in entries} == {sop_instance_uid(p) for p in files}
    # Some files are other encodings of the same instance: compare as multisets of bytes.
    stored = Counter(_digest(dataset_bytes(e.path)) for b, e in entries)
    sent = Counter(_digest(dataset_bytes(p)) for p in files)
    re_encoded = [p.name for p in files if _digest(dataset_bytes(p)) not in stored]
    assert re_encoded == [], f"re-encoded: {re_encoded}"
    assert stored == sent
    # Each file keeps, as recovery needs it, the SHA-256 of its own bytes, as in the manifest.
    for _, e in entries:
        data = e.path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == e.sha256 and len(data) == e.size
        assert durable.recorded_sha256(e.path) == bytes.fromhex(e.sha256)
    syntaxes = {e.transfer_syntax_uid for _b, e in entries}
    assert {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.5",
    } <= syntaxes


def _dcmtk_reads(path: Path) -> bool:
    return subprocess.run(["dcmdump", "-q", str(path)], capture_output=True).returncode == 0


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_dcmsend_delivers_every_file(receiver: Receiver, spool: Spool) -> None:
    """dcmsend may convert a file to Explicit VR LE when it offers that too in the context
    (the receiver prefers it); lossy-compressed files it never converts."""
    # dcmtk cannot parse one of pydicom-data's files itself and aborts; another claims the SOP
    # Class UID '31', which the receiver refuses (see the test below). The byte-fidelity test
    # above sends both with a sender that does not parse.
    files = [p for p in sample_files() if _dcmtk_reads(p) and p.name != "explicit_VR-UN.dcm"]
    output = dcmsend(receiver.port, files, "KP-RECV", "Scanner-1")
    receiver.stop()
    (batch,) = spool.batches()
    stored: dict[str, set[str]] = {}
    for e in spool.manifest(batch.id):
        stored.setdefault(e.sop_instance_uid, set()).add(e.transfer_syntax_uid)
    lossy = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.91"}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        uid, original = str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID)
        assert uid in stored, (path.name, output[-1000:])
        if original in lossy:
            assert original in stored[uid], path.name
    # The file made ahead for a next instance does not outlive the association.
    assert list(spool.incoming_dir.iterdir()) == []


def test_a_malformed_sop_class_uid_is_refused_and_the_association_goes_on(
    receiver: Receiver, spool: Spool, tmp_path: Path
) -> None:
    """dcmsend takes the SOP Class UID of the C-STORE from the data set: here '31'.

    pynetdicom alone aborts the association there (it has no service for that class); the
    receiver answers that instance with a failure status and keeps it as a problem, and the
    instances after it are stored.
    """
    import data_store

    bad = next(Path(data_store.__file__).parent.rglob("explicit_VR-UN.dcm"))
    good = tmp_path / "good.dcm"
    good_dataset().save_as(good, enforce_file_format=True)
    output = dcmsend(receiver.port, [bad, good], "RECV")
    receiver.stop()

    assert re.search(r"with status SUCCESS\s*:\s*1\b", output), output[-2000:]
    assert re.search(r"with status REFUSED\s*:\s*1\b", output), output[-2000:]
    assert "Peer Aborted" not in output
    (batch,) = spool.batches()
    assert batch.close_reason == "association released"
    assert [e.sop_instance_uid for e in spool.manifest(batch.id)] == [sop_instance_uid(good)]
    (problem,) = spool.problems()
    assert "'31' is not a valid UID" in problem.reason
    assert dataset_bytes(problem.path / "instance.dcm") != b""


def _scu(calling: str = "SCU") -> AE:
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae


def test_bad_instances_fail_with_their_reason_and_the_good_ones_are_stored(
    receiver: Receiver, spool: Spool, tmp_path: Path
) -> None:
    bad = bad_datasets()
    garbage = good_dataset()
    good = [good_dataset() for _ in range(2)]
    assoc = _scu().associate("127.0.0.1", receiver.port, ae_title="recv")
    assert assoc.is_established
    statuses: dict[str, Dataset] = {}
    statuses["good 0"] = assoc.send_c_store(good[0])
    for name, (ds, _words) in bad.items():
        statuses[name] = assoc.send_c_store(ds)
    # Garbage: a valid command set whose data set bytes are random.
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes, not a parsed data set
    try:
        statuses["garbage"] = assoc.send_c_store(_GarbageFile(garbage, tmp_path))  # type: ignore[arg-type]
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
    statuses["good 1"] = assoc.send_c_store(good[1])
    assoc.release()
    receiver.stop()

    assert statuses["good 0"].Status == statuses["good 1"].Status == 0x0000
    for name, (_ds, words) in bad.items():
        assert statuses[name].Status == 0xA900, name
        assert words in statuses[name].ErrorComment, name
    assert statuses["garbage"].Status == 0xC000
    (batch,) = spool.batches()
    assert [e.sop_instance_uid for e in spool.manifest(batch.id)] == [
        g.SOPInstanceUID for g in good
    ]
    problems = spool.problems()
    assert len(problems) == len(bad) + 1
    reasons = sorted(p.reason for p in problems)
    assert all(p.origin.called_ae == "recv" and p.origin.calling_ae == "SCU" for p in problems)
    assert any("cannot be parsed" in r for r in reasons)
    assert all((p.path / "instance.dcm").stat().st_size > 0 for p in problems)


class _GarbageFile:
    """A C-STORE source that is a file of random data set bytes (pynetdicom sends it as is)."""

    def __new__(cls, template: Dataset, directory: Path) -> Path:  # type: ignore[misc]
        from pydicom.filewriter import write_file_meta_info

        path = directory / "garbage.dcm"
        with path.open("wb") as fh:
            fh.write(b"\x00" * 128 + b"DICM")
            meta = Dataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            write_file_meta_info(fh, meta)  # type: ignore[arg-type]
            fh.write(os.urandom(4000))
        return path


def test_unknown_project_is_rejected(receiver: Receiver, spool: Spool) -> None:
    result = subprocess.run(
        ["echoscu", "-aec", "NO-SUCH-PROJECT", "127.0.0.1", str(receiver.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr
    assert "Rejected Permanent" in result.stderr
    assert spool.batches() == []


def test_echo_and_kaapana_prefix(receiver: Receiver) -> None:
    for called in ("RECV", "kp-recv", "KP-RECV"):
        result = subprocess.run(
            ["echoscu", "-aec", called, "127.0.0.1", str(receiver.port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr


def test_unknown_projects_can_be_routed_to_admin(spool: Spool, projects: ProjectStore) -> None:
    service = Receiver(
        spool, admission_for(spool, projects, route_unknown_projects_to_admin=True), port=0
    )
    service.start()
    try:
        assoc = _scu("Lab-PC").associate("127.0.0.1", service.port, ae_title="UNKNOWN-PRJ")
        assert assoc.is_established
        assert assoc.send_c_store(good_dataset()).Status == 0
        assoc.release()
    finally:
        service.stop()
    (batch,) = spool.batches()
    assert (batch.project, batch.dataset) == ("admin", "lab-pc")


def test_sixteen_parallel_senders(receiver: Receiver, spool: Spool, tmp_path: Path) -> None:
    senders = 16
    per_sender = 5
    dirs = []
    for i in range(senders):
        directory = tmp_path / f"sender{i}"
        directory.mkdir()
        for j in range(per_sender):
            good_dataset().save_as(directory / f"{j}.dcm", enforce_file_format=True)
        dirs.append(directory)

    def send(i: int) -> str:
        return dcmsend(receiver.port, sorted(dirs[i].iterdir()), "RECV", f"SENDER{i}")

    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(send, range(senders)))
    receiver.stop()
    batches = spool.batches()
    assert len(batches) == senders
    assert sorted(b.dataset for b in batches) == sorted(f"sender{i}" for i in range(senders))
    assert all(b.instances == per_sender for b in batches)
    all_uids = [e.sop_instance_uid for b in batches for e in spool.manifest(b.id)]
    assert len(all_uids) == len(set(all_uids)) == senders * per_sender


def test_a_receiver_holding_over_1024_descriptors_still_accepts(
    receiver: Receiver, spool: Spool, tmp_path: Path
) -> None:
    # A busy receiver holds many files (manifests of open batches, incoming files, other
    # associations); select() refuses descriptors from 1024 on, and pynetdicom took that
    # for a closed connection, dropping every new association.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if hard != unlimited and hard < 1200:
        pytest.skip(f"this machine allows only {hard} open files")
    if soft != unlimited and soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert held[-1] >= 1024
        files = []
        for number in range(3):
            files.append(tmp_path / f"{number}.dcm")
            good_dataset().save_as(files[-1], enforce_file_format=True)
        output = dcmsend(receiver.port, files, "KP-RECV", "Scanner-1")
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    receiver.stop()
    stored = {e.sop_instance_uid for b in spool.batches() for e in spool.manifest(b.id)}
    assert stored == {sop_instance_uid(p) for p in files}, output[-1000:]
