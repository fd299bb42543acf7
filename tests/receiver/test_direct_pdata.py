"""The reactor's direct P-DATA path stores what pynetdicom's path stores, PDU layout aside.

Every scenario runs twice, once with the direct path (``EventDrivenDUL._stream_fragments``)
and once with it turned off, against a real receiver on the real platform database: the
stored bytes and the statuses must be the same, and the direct path must have been taken.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from dicomflow.db.projects import ProjectStore
from dicomflow.spool.store import Spool
from receiver.dul import EventDrivenDUL
from tests.receiver.receiver_helpers import (
    count_served,
    dataset_bytes,
    running_receiver,
    sample_files,
)

#: Implicit and Explicit VR Little Endian.
UNCOMPRESSED = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})
#: One PDU: (message control header, value) per PDV.
Pdu = list[tuple[int, bytes]]


@pytest.fixture
def direct_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the P-DATA-TF PDUs the direct path wrote (one element: the count)."""
    return count_served(monkeypatch, EventDrivenDUL, "_stream_fragments")


def _both_ways(
    tmp_path: Path,
    projects: ProjectStore,
    monkeypatch: pytest.MonkeyPatch,
    scenario: Callable[[int], object],
) -> Iterator[tuple[bool, object, list[bytes]]]:
    """Run ``scenario(port)`` with the direct path and without: (direct, result, stored).

    Either way no file may be left in the spool's ``incoming`` area (see
    :func:`running_receiver`).
    """
    for direct in (True, False):
        with monkeypatch.context() as patch:
            if not direct:
                patch.setattr(EventDrivenDUL, "_direct_target", lambda *_: None)
            spool = Spool(tmp_path / f"spool-{direct}")
            with running_receiver(spool, projects, patch) as service:
                result = scenario(service.port)
            stored = [
                dataset_bytes(entry.path)
                for batch in spool.batches()
                for entry in spool.manifest(batch.id)
            ]
            yield direct, result, stored


def _digests(blobs: list[bytes]) -> list[str]:
    return sorted(hashlib.sha256(blob).hexdigest() for blob in blobs)


@pytest.mark.parametrize(
    ("tool", "max_send_pdu"),
    [("dcmsend", 4096), ("dcmsend", 131072), ("storescu", 4096), ("storescu", 16384)],
)
def test_dcmtk_senders_with_small_and_large_pdus(
    tool: str,
    max_send_pdu: int,
    tmp_path: Path,
    projects: ProjectStore,
    monkeypatch: pytest.MonkeyPatch,
    direct_count: list[int],
) -> None:
    # Uncompressed files, which both tools send without converting; larger than one PDU.
    files = [p for p in sample_files() if p.stat().st_size > 20_000 and _uncompressed(p)][:12]
    assert len(files) >= 5
    options = ["--max-send-pdu", str(max_send_pdu)]

    def scenario(port: int) -> int:
        result = subprocess.run(
            [tool, *options, "-aec", "KP-RECV", "-aet", "PDUSIZE", "127.0.0.1", str(port)]
            + [str(p) for p in files],
            env={**os.environ, "TCP_NODELAY": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        return result.returncode

    results = {}
    for direct, returncode, stored in _both_ways(tmp_path, projects, monkeypatch, scenario):
        if direct:
            assert direct_count[0] > 0
        results[direct] = (returncode, _digests(stored))
    assert results[True] == results[False]
    assert len(results[True][1]) >= 5


def _uncompressed(path: Path) -> bool:
    meta = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    return str(meta.file_meta.TransferSyntaxUID) in UNCOMPRESSED


def _large_dataset(path: Path, side: int) -> bytes:
    """The data set bytes (Explicit VR LE) of a CT instance with ``side``² pixels."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = side
    ds.PixelData = np.arange(side * side, dtype=np.uint16).tobytes()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return dataset_bytes(path)


def _command(message_id: int, sop_instance: str) -> bytes:
    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = CTImageStorage
    primitive.AffectedSOPInstanceUID = sop_instance
    primitive.Priority = 2
    primitive.DataSet = BytesIO(b"\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def _p_data(context_id: int, pdvs: Pdu) -> bytes:
    body = b"".join(
        struct.pack(">LBB", len(value) + 2, context_id, control) + value for control, value in pdvs
    )
    return struct.pack(">BBL", 0x04, 0, len(body)) + body


def _start_a_data_set(port: int, head: bytes) -> tuple[Association, int, socket.socket]:
    """Associate, then send a C-STORE command and ``head`` as a data-set fragment, not the last.

    Returns the association, the accepted context's ID and the raw socket to go on with.
    """
    ae = AE(ae_title="RAWPDU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="KP-RECV")
    assert assoc.is_established
    context_id = assoc.accepted_contexts[0].context_id
    sock = assoc.dul.socket.socket  # type: ignore[union-attr]
    assert sock is not None
    sock.sendall(
        _p_data(context_id, [(3, _command(1, generate_uid()))]) + _p_data(context_id, [(0, head)])
    )
    return assoc, context_id, sock


def _send_raw(port: int, pdus: list[Pdu], *, pieces: list[int] | None = None) -> list[int]:
    """Associate with pynetdicom, send ``pdus`` as raw bytes, return the response statuses.

    ``pieces``: send the bytes in pieces of these lengths (cycled), pausing between them so
    the receiver reads them with separate ``recv`` calls.
    """
    ae = AE(ae_title="RAWPDU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.dimse_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="KP-RECV")
    assert assoc.is_established
    context_id = assoc.accepted_contexts[0].context_id
    sock = assoc.dul.socket.socket  # type: ignore[union-attr]
    assert sock is not None
    # As pynetdicom's send_c_store does: pause the association's own loop, which would take
    # the responses for unexpected messages.
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    stream = b"".join(_p_data(context_id, pdu) for pdu in pdus)
    if pieces is None:
        sock.sendall(stream)
    else:
        offset, index = 0, 0
        while offset < len(stream):
            size = pieces[index % len(pieces)]
            sock.sendall(stream[offset : offset + size])
            offset += size
            index += 1
            time.sleep(0.002)
    messages = sum(1 for pdu in pdus for control, _ in pdu if control == 0x03)
    statuses = []
    for _ in range(messages):
        _context, response = assoc.dimse.get_msg(block=True)
        assert response is not None
        statuses.append(int(response.Status))  # type: ignore[union-attr]
    assoc._reactor_checkpoint.set()
    assoc.release()
    return statuses


def _layouts(small: bytes, large: bytes) -> dict[str, tuple[list[Pdu], list[int] | None]]:
    cmd1, cmd2 = _command(1, generate_uid()), _command(2, generate_uid())
    tail = len(large) - 3
    return {
        "command and data in one PDU": (
            [[(3, cmd1), (0, large[:1000])], [(0, large[1000:200_001])], [(2, large[200_001:])]],
            None,
        ),
        "several PDVs in one PDU": (
            [
                [(3, cmd1)],
                [(0, large[:7]), (0, large[7:5000]), (0, large[5000:90_001])],
                [(0, large[90_001:tail]), (2, large[tail:])],
            ],
            None,
        ),
        "one-byte PDVs": (
            [[(3, cmd1)], [(0, large[i : i + 1]) for i in range(40)] + [(2, large[40:])]],
            None,
        ),
        "the whole data set in one large PDU, then a small instance": (
            [[(3, cmd1)], [(2, large)], [(3, cmd2)], [(0, small[:11]), (2, small[11:])]],
            None,
        ),
        # Pieces of 3, 5, 2 and 4093 bytes split PDU headers and PDV headers.
        "split across recv calls": (
            [[(3, cmd1)], [(0, large[:70_000])], [(0, large[70_000:-1])], [(2, large[-1:])]],
            [3, 5, 2, 4093],
        ),
    }


@pytest.mark.parametrize(
    "layout",
    [
        "command and data in one PDU",
        "several PDVs in one PDU",
        "one-byte PDVs",
        "the whole data set in one large PDU, then a small instance",
        "split across recv calls",
    ],
)
def test_crafted_pdu_layouts_store_the_same_bytes(
    layout: str,
    tmp_path: Path,
    projects: ProjectStore,
    monkeypatch: pytest.MonkeyPatch,
    direct_count: list[int],
) -> None:
    small = _large_dataset(tmp_path / "small.dcm", 64)
    large = _large_dataset(tmp_path / "large.dcm", 400)
    pdus, pieces = _layouts(small, large)[layout]
    commands = sum(1 for pdu in pdus for control, _ in pdu if control == 3)
    sent = [large, small][:commands]

    def scenario(port: int) -> list[int]:
        return _send_raw(port, pdus, pieces=pieces)

    results = {}
    for direct, statuses, stored in _both_ways(tmp_path, projects, monkeypatch, scenario):
        if direct:
            assert direct_count[0] > 0
        results[direct] = (statuses, _digests(stored))
        assert _digests(stored) == _digests(sent)
    assert results[True] == results[False]
    assert results[True][0] == [0] * len(sent)


@pytest.mark.parametrize(
    "malformed",
    ["a PDV longer than its PDU", "a PDV of length 0", "a PDV without a control header"],
)
# A reactor thread that ends with a traceback leaves the peer waiting: fail on one.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_malformed_p_data_aborts_as_before(
    malformed: str,
    tmp_path: Path,
    projects: ProjectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    large = _large_dataset(tmp_path / "large.dcm", 400)

    def scenario(port: int) -> list[int] | str:
        assoc, context_id, sock = _start_a_data_set(port, large[:100_000])
        if malformed == "a PDV longer than its PDU":
            body = struct.pack(">LBB", 5000, context_id, 0) + large[100_000:101_000]
        elif malformed == "a PDV of length 0":
            body = struct.pack(">LBB", 2, context_id, 0) + struct.pack(">L", 0)
        else:
            body = struct.pack(">LB", 1, context_id)
        sock.sendall(struct.pack(">BBL", 0x04, 0, len(body)) + body)
        deadline = time.monotonic() + 10
        while not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.01)
        return "aborted" if assoc.is_aborted else "not aborted"

    outcomes = {
        direct: (outcome, stored)
        for direct, outcome, stored in _both_ways(tmp_path, projects, monkeypatch, scenario)
    }
    assert outcomes[True] == outcomes[False] == ("aborted", [])


def test_a_data_set_cut_off_by_a_lost_connection_is_removed_at_once(
    tmp_path: Path,
    projects: ProjectStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sender vanishes mid data set: its partial file goes while the receiver runs on."""
    large = _large_dataset(tmp_path / "large.dcm", 400)

    def scenario(port: int) -> list[str]:
        assoc, _context_id, sock = _start_a_data_set(port, large[:100_000])
        incoming = Path(tempfile.gettempdir())  # the spool's (see running_receiver)
        deadline = time.monotonic() + 10
        while not any(f.stat().st_size > 100_000 for f in incoming.iterdir()):
            assert time.monotonic() < deadline, "the partial data set never reached its file"
            time.sleep(0.01)
        # Gone without a word, as a sender whose machine or process dies.
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        while list(incoming.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)
        left = sorted(f.name for f in incoming.iterdir())
        assoc.kill()
        return left

    caplog.set_level(logging.INFO, logger="receiver")
    for _direct, left, stored in _both_ways(tmp_path, projects, monkeypatch, scenario):
        assert left == [] and stored == []
    discarded = [r for r in caplog.records if "discarded the partial data set" in r.message]
    assert len(discarded) == 2


def test_a_woken_message_queue_returns_at_once_without_an_item() -> None:
    from receiver.dimse import WakeableQueue

    messages = WakeableQueue()
    messages.wake()
    start = time.monotonic()
    assert messages.get_or_wake(5.0) is None
    assert time.monotonic() - start < 1.0
    messages.put((1, "request"))
    # A wake-up never hides an item, and a plain get() is not disturbed by one.
    messages.wake()
    assert messages.get_or_wake(5.0) == (1, "request")
    messages.put((2, "next"))
    messages.wake()
    assert messages.get(timeout=1.0) == (2, "next")
