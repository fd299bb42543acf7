"""The receiver's fast paths give exactly what the pydicom/pynetdicom paths they replace give.

No server here: the header reader against ``pydicom.dcmread``, the file meta and the C-STORE
response encoders against pydicom's and pynetdicom's bytes, the streamed file against its
bytes, and the spool's direct placement of instance files.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta

import dicomflow.intake.checks as checks
from dicomflow.dicom.instance import Instance
from dicomflow.intake.checks import HEAD_BYTES, InstanceRejectedError
from dicomflow.spool import durable
from receiver.contexts import storage_contexts
from receiver.encoding import encode_file_meta, encode_plain_store_response
from receiver.incoming import (
    DIGEST_IN_WORKER_FROM,
    WRITEBACK_AFTER,
    BackgroundWorker,
    IncomingFile,
    create_empty_file,
    written_content,
)
from receiver.server import copy_contexts
from tests.dicomfiles import edited_instance
from tests.receiver.receiver_helpers import PYDICOM_FILES

Outcome = Instance | tuple[str, int]


def _with_pydicom(path: Path, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    with monkeypatch.context() as patch:
        patch.setattr(checks, "_inspect_plain", lambda path, head=None: None)
        return _outcome(path)


def _outcome(path: Path, head: bytes | None = None) -> Outcome:
    try:
        return checks.inspect_instance(path, head)
    except InstanceRejectedError as exc:
        return (exc.reason, int(exc.status))


def _every_sample_file() -> list[Path]:
    import data_store

    files = [Path(str(get_testdata_file(name))) for name in PYDICOM_FILES]
    files += sorted(Path(pydicom.__file__).parent.joinpath("data", "test_files").rglob("*.dcm"))
    files += sorted(Path(data_store.__file__).parent.rglob("*.dcm"))
    return files


def test_header_reader_agrees_with_pydicom_on_every_sample_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = 0
    for path in _every_sample_file():
        expected = _with_pydicom(path, monkeypatch)
        assert _outcome(path) == expected, path.name
        if checks._inspect_plain(path) is not None:
            fast += 1
    # The plainly encoded files (most of them) are answered without pydicom.
    assert fast >= 100


def _ct(**changes: object) -> Dataset:
    return edited_instance("CT_small.dcm", **changes)


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _nested() -> Sequence:
    inner = Sequence([_item(CodeValue="1", CodingSchemeDesignator="DCM")])
    return Sequence(
        [_item(ReferencedSOPInstanceUID="1.2.3", PurposeOfReferenceCodeSequence=inner)] * 2
    )


#: Crafted variants: name -> (dataset changes, whether the fast reader must answer).
VARIANTS: dict[str, tuple[dict[str, object], bool]] = {
    "plain": ({}, True),
    "padded UIDs": ({"StudyInstanceUID": "1.2.3.4\x00", "SeriesInstanceUID": "1.2.3 "}, True),
    "empty position": ({"ImagePositionPatient": None}, True),
    "one position value": ({"ImagePositionPatient": [1.5]}, True),
    "two position values": ({"ImagePositionPatient": [1.5, 2]}, True),
    "exponent": ({"ImagePositionPatient": ["1e2", "-0.5", "+3."]}, True),
    "no instance number": ({"InstanceNumber": None}, True),
    "empty instance number": ({"InstanceNumber": ""}, True),
    "frames zero": ({"NumberOfFrames": "0"}, True),
    "frames negative": ({"NumberOfFrames": "-2"}, True),
    "frames but no rows": ({"NumberOfFrames": "3", "Rows": None}, True),
    "no modality": ({"Modality": None}, True),
    "empty modality": ({"Modality": ""}, True),
    "two modalities": ({"Modality": ["CT", "MR"]}, False),
    "undefined-length sequence": ({"ReferencedImageSequence": _nested()}, True),
    "missing series": ({"SeriesInstanceUID": None}, False),
    "empty study": ({"StudyInstanceUID": ""}, False),
    "leading zero": ({"StudyInstanceUID": "1.2.03"}, False),
    "65 characters": ({"SeriesInstanceUID": "1." + "2" * 63}, False),
    "two series UIDs": ({"SeriesInstanceUID": ["1.2.3", "1.2.4"]}, False),
    "no SOP class": ({"SOPClassUID": None}, False),
}


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_header_reader_agrees_with_pydicom_on_crafted_headers(
    name: str, syntax: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes, answered_fast = VARIANTS[name]
    ds = _ct(**changes)
    for element in ds.iterall():
        if element.VR == "SQ":
            element.is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / "x.dcm"
    # Re-encoded as the syntax says (the pixel data keeps its bytes: only headers matter).
    pydicom.dcmwrite(
        path,
        ds,
        implicit_vr=syntax == ImplicitVRLittleEndian,
        little_endian=syntax != ExplicitVRBigEndian,
        force_encoding=True,
    )
    assert _outcome(path) == _with_pydicom(path, monkeypatch)
    assert (checks._inspect_plain(path) is not None) == answered_fast
    # Given the first bytes instead of reading them: the same.
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES + 1)
    assert _outcome(path, head) == _outcome(path)


def test_a_header_longer_than_the_head_goes_to_pydicom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large private element (group 0009) puts the UIDs past the bytes the fast reader gets.
    ds = _ct()
    ds.add_new(0x00090010, "LO", "DICOMFLOW TEST")
    ds.add_new(0x00091010, "OB", b"x" * (HEAD_BYTES + 10))
    path = tmp_path / "long.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert checks._inspect_plain(path) is None
    assert _outcome(path) == _with_pydicom(path, monkeypatch)


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", ExplicitVRLittleEndian),
        ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.45", ImplicitVRLittleEndian),
        ("31", generate_uid(), "1.2.840.10008.1.2.4.90"),
    ],
)
def test_file_meta_is_what_pynetdicom_writes(
    sop_class: str, sop_instance: str, syntax: str
) -> None:
    buffer = DicomBytesIO()
    write_file_meta_info(
        buffer,
        create_file_meta(
            sop_class_uid=sop_class,  # type: ignore[arg-type]
            sop_instance_uid=sop_instance,  # type: ignore[arg-type]
            transfer_syntax=syntax,  # type: ignore[arg-type]
        ),
    )
    assert encode_file_meta(sop_class, sop_instance, syntax) == buffer.getvalue()


def _pynetdicom_response(primitive: C_STORE, max_pdu: int = 16384) -> list[tuple[int, bytes]]:
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    return [
        pv for pdata in message.encode_msg(3, max_pdu) for pv in pdata.presentation_data_value_list
    ]


def _response(status: int = 0, message_id: int = 7, sop_instance: str = "1.2.3.4") -> C_STORE:
    rsp = C_STORE()
    rsp.MessageID = message_id
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = sop_instance
    rsp.Status = status
    return rsp


@pytest.mark.parametrize(
    "make",
    [
        lambda: _response(),
        lambda: _response(message_id=65535, sop_instance="1.2.3.45"),
        lambda: _response(status=0xB000),
    ],
)
def test_plain_store_response_is_what_pynetdicom_encodes(make: Callable[[], C_STORE]) -> None:
    encoded = encode_plain_store_response(make())
    assert encoded is not None
    assert _pynetdicom_response(make()) == [(3, b"\x03" + encoded)]


def test_a_response_with_an_error_comment_is_left_to_pynetdicom() -> None:
    rsp = _response(status=0xA900)
    rsp.ErrorComment = "StudyInstanceUID is empty"
    assert encode_plain_store_response(rsp) is None


def test_incoming_file_knows_its_bytes(tmp_path: Path) -> None:
    meta = encode_file_meta("1.2.840.10008.5.1.4.1.1.2", "1.2.3", ExplicitVRLittleEndian)
    incoming = IncomingFile(meta, tmp_path)
    chunks = [os.urandom(100_000) for _ in range(4)]  # past the head
    for chunk in chunks:
        incoming.write(chunk)
    incoming.close()
    incoming.close()
    data = incoming.path.read_bytes()
    assert data == b"\x00" * 128 + b"DICM" + meta + b"".join(chunks)
    content = incoming.result()
    assert content.sha256 == hashlib.sha256(data).hexdigest()
    assert content.size == len(data)
    assert content.head == data[: HEAD_BYTES + 1]

    class Request:
        _dataset_file = incoming

    pending = written_content(Request())
    assert pending is not None
    assert pending.head == content.head
    assert pending.result() == content
    assert written_content(object()) is None


def test_incoming_file_hashed_by_a_worker_knows_the_same(tmp_path: Path) -> None:
    meta = encode_file_meta("1.2.840.10008.5.1.4.1.1.2", "1.2.3", ExplicitVRLittleEndian)
    # Small fragments first (hashed by write), then large ones (by the worker), then a small
    # one again, which must wait its turn behind the large ones.
    chunks = [os.urandom(n) for n in (100, 5000, DIGEST_IN_WORKER_FROM, 300_000, 7)]
    worker = BackgroundWorker()
    threads: set[str] = set()
    try:
        incoming = IncomingFile(meta, worker=worker, created=create_empty_file(tmp_path))
        worker.submit(lambda: threads.add(threading.current_thread().name))
        released_by: list[str] = []
        for chunk in chunks[:-1]:
            incoming.write(chunk)
        # Released once hashed, in the worker, behind the large chunks (jobs run in order).
        incoming.write(
            chunks[-1], released=lambda: released_by.append(threading.current_thread().name)
        )
        pending = incoming.head
        # The file waits for its own jobs only, not for what was queued after them (the
        # next instance's file being made).
        later = threading.Event()
        worker.submit(later.wait)
        safety = threading.Timer(10, later.set)  # no hang if it does wait
        safety.start()
        content = incoming.result()
        assert not later.is_set()
        assert released_by == ["receiver-background"]
        incoming.close()
        later.set()
        safety.cancel()
    finally:
        worker.close()
    assert threads == {"receiver-background"}
    assert incoming.path.parent == tmp_path
    data = incoming.path.read_bytes()
    assert data == b"\x00" * 128 + b"DICM" + meta + b"".join(chunks)
    assert content.sha256 == hashlib.sha256(data).hexdigest()
    assert content.size == len(data)
    assert pending == content.head == data[: HEAD_BYTES + 1]
    # A closed worker runs what it is given at once.
    ran: list[int] = []
    worker.submit(lambda: ran.append(1))
    assert ran == [1]


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")
def test_incoming_file_starts_writeback_only_past_the_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    fadvise = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED
        calls.append((offset, length))
        fadvise(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    meta = encode_file_meta("1.2.840.10008.5.1.4.1.1.2", "1.2.3", ExplicitVRLittleEndian)
    small = IncomingFile(meta, tmp_path)
    small.write(os.urandom(WRITEBACK_AFTER - 1000))
    small.close()
    assert calls == []

    large = IncomingFile(meta, tmp_path)
    chunks = [os.urandom(128 * 1024) for _ in range(5)]
    for chunk in chunks:
        large.write(chunk)
    large.close()
    # Each range once, from where the last one ended, starting once the threshold is passed.
    assert calls[0][0] == 0 and calls[0][1] > WRITEBACK_AFTER
    assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(calls))
    assert sum(length for _, length in calls) == large.size
    data = large.path.read_bytes()
    assert data == b"\x00" * 128 + b"DICM" + meta + b"".join(chunks)
    assert large.result().sha256 == hashlib.sha256(data).hexdigest()


def test_adopt_file_moves_or_copies_under_the_final_name(tmp_path: Path) -> None:
    (tmp_path / "batch").mkdir()
    source = tmp_path / "in.dcm"
    source.write_bytes(b"moved")
    durable.adopt_file(source, tmp_path / "batch" / "000001.dcm", move=True)
    assert not source.exists()
    assert (tmp_path / "batch" / "000001.dcm").read_bytes() == b"moved"
    source.write_bytes(b"copied")
    durable.adopt_file(source, tmp_path / "batch" / "000002.dcm", move=False)
    assert source.read_bytes() == (tmp_path / "batch" / "000002.dcm").read_bytes() == b"copied"
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == ["000001.dcm", "000002.dcm"]


def test_adopt_file_gives_a_moved_file_back_when_the_disk_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "batch").mkdir()
    source = tmp_path / "in.dcm"
    source.write_bytes(b"data")

    def refuse(path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable, "fsync_file", refuse)
    with pytest.raises(OSError):
        durable.adopt_file(source, tmp_path / "batch" / "000001.dcm", move=True)
    assert source.read_bytes() == b"data"
    assert list((tmp_path / "batch").iterdir()) == []
    with pytest.raises(OSError):
        durable.adopt_file(source, tmp_path / "batch" / "000001.dcm", move=False)
    assert list((tmp_path / "batch").iterdir()) == []


def test_copied_contexts_are_what_deepcopy_gives_and_independent() -> None:
    contexts = storage_contexts()[:5]
    copies = copy_contexts(contexts)
    assert [vars(c) for c in copies] == [vars(deepcopy(c)) for c in contexts]
    copies[0].context_id = 1
    copies[0].add_transfer_syntax("1.2.3.4")
    assert contexts[0].context_id is None
    assert "1.2.3.4" not in contexts[0].transfer_syntax
