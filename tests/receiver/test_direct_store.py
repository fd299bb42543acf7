"""The reactor's direct C-STORE service answers as pynetdicom's storage service does.

The command-set reader is compared with pynetdicom's decoding of requests pynetdicom
encodes; the service runs against a real receiver on the real platform database, once
directly and once through pynetdicom (``EventDrivenAssociation._store_directly`` turned
off), and the statuses, Error Comments and stored bytes must be the same.
"""

from __future__ import annotations

import hashlib
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import decode, encode
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from dicomflow.db.projects import ProjectStore
from dicomflow.spool.store import Spool
from receiver.app import Receiver
from receiver.association import EventDrivenAssociation
from receiver.dimse import StreamingDIMSE
from receiver.encoding import StoreRequest, parse_store_request
from tests.dicomfiles import edited_instance
from tests.intake_testutil import admission_for
from tests.receiver.conftest import PROJECT
from tests.receiver.receiver_helpers import count_served, dataset_bytes

CT = "1.2.840.10008.5.1.4.1.1.2"


def _command(primitive: Any) -> bytes:
    """The command set pynetdicom encodes for a request primitive."""
    message = (C_STORE_RQ if isinstance(primitive, C_STORE) else C_ECHO_RQ)()
    message.primitive_to_message(primitive)
    encoded = encode(message.command_set, True, True)
    assert encoded is not None
    return encoded


def _store(**fields: Any) -> C_STORE:
    primitive = C_STORE()
    primitive.MessageID = fields.get("message_id", 7)
    primitive.AffectedSOPClassUID = fields.get("sop_class", CT)
    primitive.AffectedSOPInstanceUID = fields.get("sop_instance", "1.2.3.4.5")
    primitive.Priority = fields.get("priority", 2)
    if fields.get("data_set", True):
        primitive.DataSet = BytesIO(b"\x00")  # only its presence matters to the command set
    if "originator" in fields:
        primitive.MoveOriginatorApplicationEntityTitle = fields["originator"]
        primitive.MoveOriginatorMessageID = fields.get("originator_id", 3)
    return primitive


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, StoreRequest(7, CT, "1.2.3.4.5", 2)),
        ({"message_id": 65535, "priority": 1}, StoreRequest(65535, CT, "1.2.3.4.5", 1)),
        # An odd-length UID is padded with a NUL, which decoding removes.
        ({"sop_instance": "1.2.3.45"}, StoreRequest(7, CT, "1.2.3.45", 2)),
        ({"sop_instance": "1." + "2" * 62}, StoreRequest(7, CT, "1." + "2" * 62, 2)),
        (
            {"originator": "MOVESCU", "originator_id": 9},
            StoreRequest(7, CT, "1.2.3.4.5", 2, "MOVESCU", 9),
        ),
    ],
)
def test_the_command_reader_agrees_with_pynetdicom(
    fields: dict[str, Any], expected: StoreRequest
) -> None:
    command = _command(_store(**fields))
    message = C_STORE_RQ()
    message.command_set = decode(BytesIO(command), True, True)
    primitive = message.message_to_primitive()
    assert isinstance(primitive, C_STORE)
    assert parse_store_request(command) == expected
    assert (expected.message_id, expected.sop_class_uid, expected.sop_instance_uid) == (
        primitive.MessageID,
        primitive.AffectedSOPClassUID,
        primitive.AffectedSOPInstanceUID,
    )


def test_anything_but_a_plain_store_request_is_left_to_pynetdicom() -> None:
    echo = C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    assert parse_store_request(_command(echo)) is None
    plain = _command(_store())
    # An element a C-STORE request does not have: (0000,0600) Move Destination.
    extra = plain + b"\x00\x00\x00\x06\x02\x00\x00\x00AB"
    assert parse_store_request(extra) is None
    # Truncated in the middle of an element.
    assert parse_store_request(plain[:-3]) is None
    # No data set announced (Command Data Set Type 0x0101).
    assert parse_store_request(_command(_store(data_set=False))) is None
    too_long = _command(_store(sop_instance="1.2.3")).replace(
        b"1.2.3\x00", b"1." + b"2" * 64 + b"\x00"
    )
    assert parse_store_request(too_long) is None


def _send(port: int, instances: list[Dataset]) -> list[tuple[int, str | None]]:
    """Statuses and Error Comments pynetdicom's SCU gets for ``instances``."""
    ae = AE(ae_title="DIRECTSTORE")
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ae.add_requested_context(CTImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=PROJECT)
    assert assoc.is_established
    answers = []
    try:
        for ds in instances:
            status = assoc.send_c_store(ds)
            answers.append((int(status.Status), status.get("ErrorComment")))
    finally:
        assoc.release()
    return answers


def test_direct_and_pynetdicom_services_answer_and_store_the_same(
    tmp_path: Path, projects: ProjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    instances = [
        edited_instance("CT_small.dcm"),
        edited_instance("CT_small.dcm", SeriesInstanceUID=None),
        edited_instance("CT_small.dcm", StudyInstanceUID="1.2.3." + "4" * 70),
        edited_instance("CT_small.dcm"),
    ]
    served_directly = [0]
    # Once a data set is complete the next instance's file is made ahead of time, on both
    # paths and whatever the answer.
    prepared = {True: 0, False: 0}
    prepare = StreamingDIMSE.prepare_next_file

    results = {}
    for direct in (True, False):

        def counting_prepare(self: StreamingDIMSE, direct: bool = direct) -> None:
            prepared[direct] += 1
            prepare(self)

        with monkeypatch.context() as patch:
            if direct:
                served_directly = count_served(patch, EventDrivenAssociation, "_store_directly")
            else:
                patch.setattr(EventDrivenAssociation, "_store_directly", lambda *_: False)
            patch.setattr(StreamingDIMSE, "prepare_next_file", counting_prepare)
            spool = Spool(tmp_path / f"spool-{direct}")
            service = Receiver(spool, admission_for(spool, projects), port=0)
            service.start()
            try:
                answers = _send(service.port, instances)
            finally:
                service.stop()
        stored = sorted(
            hashlib.sha256(dataset_bytes(entry.path)).hexdigest()
            for batch in spool.batches()
            for entry in spool.manifest(batch.id)
        )
        problems = sorted(problem.reason for problem in spool.problems())
        results[direct] = (answers, stored, problems)
    assert served_directly[0] == len(instances)
    assert prepared[True] == prepared[False] == len(instances)
    assert results[True] == results[False]
    answers, stored, problems = results[True]
    assert [status for status, _ in answers] == [0, 0xA900, 0xA900, 0]
    assert all(comment for status, comment in answers if status)
    assert len(stored) == 2 and len(problems) == 2


def test_another_c_store_handler_gets_every_request(tmp_path: Path, projects: ProjectStore) -> None:
    spool = Spool(tmp_path / "spool")
    service = Receiver(spool, admission_for(spool, projects), port=0)
    seen: list[str] = []
    service.start()
    try:
        assert service._server is not None
        ours = service._server.direct_store
        assert ours is not None

        def watching(event: evt.Event) -> int | Dataset:
            seen.append(str(getattr(event.request, "AffectedSOPInstanceUID", "")))
            return ours[0](event)

        # A handler other than the one paired with the store function: pynetdicom's way.
        service._server.unbind(evt.EVT_C_STORE, ours[0])
        service._server.bind(evt.EVT_C_STORE, watching)
        instance = edited_instance("CT_small.dcm")
        assert _send(service.port, [instance]) == [(0, None)]
    finally:
        service.stop()
    assert seen == [instance.SOPInstanceUID]


def test_a_message_watcher_sees_the_decoded_command_set(
    tmp_path: Path, projects: ProjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command set of a plain C-STORE is read with struct and decoded with pydicom only
    # when something needs it: here an EVT_DIMSE_RECV handler.
    served_directly = count_served(monkeypatch, EventDrivenAssociation, "_store_directly")
    seen: list[tuple[int, str]] = []

    def watching(event: evt.Event) -> None:
        command = event.message.command_set
        seen.append((int(command.CommandField), str(command.AffectedSOPInstanceUID)))

    spool = Spool(tmp_path / "spool")
    service = Receiver(spool, admission_for(spool, projects), port=0)
    service.start()
    try:
        assert service._server is not None
        service._server.bind(evt.EVT_DIMSE_RECV, watching)
        instances = [edited_instance("CT_small.dcm") for _ in range(2)]
        assert _send(service.port, instances) == [(0, None)] * 2
    finally:
        service.stop()
    assert seen == [(1, ds.SOPInstanceUID) for ds in instances]
    assert served_directly[0] == 2
