"""The upgrade checklist: what of pynetdicom the receiver subclasses, overrides or reaches into.

pynetdicom 3.0.4 polls, copies and builds objects where the receiver cannot afford it (see
:mod:`receiver.dul`, :mod:`receiver.association`, :mod:`receiver.dimse`), and none of that
has a setting. So the receiver subclasses its classes, overrides methods whose code it
mirrors (public ones and private ones), writes its own versions of some of its code paths,
reads and sets private attributes, and replaces a function where pynetdicom calls it (see
:mod:`receiver.negotiation`). All of that is tied to the release it was written
against: :func:`fast_reactor_supported` lets :class:`receiver.app.Receiver` use these
classes only on :data:`SUPPORTED_PYNETDICOM` and fall back to pynetdicom's own (slower)
ones on any other release.

:data:`UPGRADE_CHECKLIST` lists every such point, with where it is in pynetdicom
:data:`CHECKED_AGAINST` and why the receiver needs it. ``tests/receiver/test_overrides.py``
keeps the list complete: it fails when a subclass, an override, a private name or a replaced
function is missing from it or listed but no longer used, and when a listed line of the
installed pynetdicom no longer names what it should. Only the mirrors (code of ours written
after pynetdicom's, see :attr:`Kind.MIRROR`) no program can find: list one whenever you copy
pynetdicom's code.

To move to another pynetdicom release:

1. Read its release notes, then for every entry compare the listed code of
   :data:`CHECKED_AGAINST` with the new release's (``git diff v3.0.4 vX.Y.Z --
   src/pynetdicom``) and carry each change over into the receiver's copy.
2. Install it, update the line numbers and :data:`CHECKED_AGAINST` until
   ``tests/receiver/test_overrides.py`` passes, and add the release to
   :data:`SUPPORTED_PYNETDICOM`.
3. Run ``tests/receiver`` and ``bench/bench_receiver.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import pynetdicom

__all__ = [
    "CHECKED_AGAINST",
    "SUPPORTED_PYNETDICOM",
    "UPGRADE_CHECKLIST",
    "Kind",
    "UpstreamPoint",
    "fast_reactor_supported",
]

#: pynetdicom releases whose code the receiver's subclasses mirror.
SUPPORTED_PYNETDICOM = frozenset({"3.0.4"})
#: The pynetdicom release the line numbers of :data:`UPGRADE_CHECKLIST` point into.
CHECKED_AGAINST = "3.0.4"


def fast_reactor_supported() -> bool:
    """Whether the installed pynetdicom is a release the event-driven reactors mirror."""
    return pynetdicom.__version__ in SUPPORTED_PYNETDICOM


class Kind(Enum):
    """How the receiver depends on a point of pynetdicom."""

    #: A class of ours subclasses it.
    SUBCLASS = "subclass"
    #: A method (or property) of ours overrides it.
    OVERRIDE = "override"
    #: Code of ours does what it does, in its own way: a change there must be carried over.
    MIRROR = "mirror"
    #: Code of ours reads, sets or calls it, and pynetdicom does not promise to keep it.
    PRIVATE = "private"
    #: A function of ours replaces it in a pynetdicom module, where pynetdicom looks it up.
    PATCH = "patch"


@dataclass(frozen=True, slots=True)
class UpstreamPoint:
    """One point of pynetdicom the receiver depends on.

    Parameters
    ----------
    kind
        How the receiver depends on it.
    upstream
        Its dotted name, e.g. ``pynetdicom.dul.DULServiceProvider.run_reactor`` (an
        attribute that pynetdicom sets on instances is named on its class).
    line
        The line of pynetdicom :data:`CHECKED_AGAINST` that defines it (``class``, ``def``
        or the first assignment).
    ours
        The dotted names of what depends on it: for :attr:`Kind.PRIVATE` the modules that
        use it, otherwise the class, method or function of ours.
    why
        Why the receiver depends on it.
    """

    kind: Kind
    upstream: str
    line: int
    ours: tuple[str, ...]
    why: str

    @property
    def name(self) -> str:
        """The last part of :attr:`upstream`: the class, method or attribute name."""
        return self.upstream.rsplit(".", 1)[1]

    @property
    def location(self) -> str:
        """Where it is in pynetdicom's source tree, ``path:line``."""
        return f"src/pynetdicom/{self.upstream.split('.')[1]}.py:{self.line}"


def _point(
    kind: Kind, upstream: str, line: int, ours: str | tuple[str, ...], why: str
) -> UpstreamPoint:
    return UpstreamPoint(kind, upstream, line, (ours,) if isinstance(ours, str) else ours, why)


_S, _O, _M, _P, _R = Kind.SUBCLASS, Kind.OVERRIDE, Kind.MIRROR, Kind.PRIVATE, Kind.PATCH
_DUL = "pynetdicom.dul.DULServiceProvider"
_ASSOC = "pynetdicom.association.Association"
_DIMSE = "pynetdicom.dimse.DIMSEServiceProvider"
_MESSAGE = "pynetdicom.dimse_messages.DIMSEMessage"

#: Every point of pynetdicom the receiver depends on beyond its documented API, by layer
#: from the server down to the wire; see the module docstring for how to use it.
UPGRADE_CHECKLIST: tuple[UpstreamPoint, ...] = (
    # --- receiver.server: accepting connections --------------------------------------------
    _point(
        _S,
        "pynetdicom.transport.ThreadedAssociationServer",
        1075,
        "receiver.server.ReceiverServer",
        "sets TCP_NODELAY on accepted sockets; holds the direct store function",
    ),
    _point(
        _O,
        "pynetdicom.transport.AssociationServer.get_request",
        952,
        "receiver.server.ReceiverServer.get_request",
        "calls the parent, then sets TCP_NODELAY: a small C-STORE response otherwise "
        "waits for the sender's delayed ACK",
    ),
    _point(
        _O,
        "pynetdicom.transport.AssociationServer.shutdown",
        1031,
        "receiver.server.ReceiverServer.shutdown",
        "servers made with AE.make_server are not in AE._servers, which the parent expects",
    ),
    _point(
        _P,
        "pynetdicom.transport.AssociationServer._handlers",
        866,
        "receiver.server",
        "the server's bound event handlers, bound to each association as the parent's "
        "_create_association does",
    ),
    _point(
        _S,
        "pynetdicom.transport.RequestHandler",
        683,
        "receiver.server.EventDrivenRequestHandler",
        "creates our association on our socket for each accepted connection",
    ),
    _point(
        _O,
        "pynetdicom.transport.RequestHandler._create_association",
        745,
        "receiver.server.EventDrivenRequestHandler._create_association",
        "a copy of the parent's with EventDrivenAssociation, BulkReadSocket, copy_contexts "
        "instead of deepcopy, and the server's direct store function",
    ),
    _point(
        _M,
        "pynetdicom.transport.RequestHandler._create_association",
        745,
        "receiver.server.copy_contexts",
        "does what its deepcopy of the server's contexts does, ~40 ms faster per association",
    ),
    _point(
        _P,
        "pynetdicom.presentation.PresentationContext._transfer_syntax",
        214,
        "receiver.server",
        "copy_contexts copies a context's fields and this list, the one mutable field",
    ),
    _point(
        _P,
        f"{_ASSOC}._server",
        149,
        "receiver.server",
        "set on each association as the parent's _create_association does",
    ),
    # --- receiver.association: the association thread --------------------------------------
    _point(
        _S,
        _ASSOC,
        101,
        "receiver.association.EventDrivenAssociation",
        "its loop blocks on the message queue instead of sleeping 1 ms; C-STOREs served "
        "in the reactor thread and without primitives",
    ),
    _point(
        _O,
        f"{_ASSOC}.__init__",
        129,
        "receiver.association.EventDrivenAssociation.__init__",
        "calls the parent, then replaces self.dul and self.dimse with ours and re-applies "
        "the timeouts the parent pushed into the replaced DUL's timers",
    ),
    _point(
        _O,
        f"{_ASSOC}._run_reactor",
        696,
        "receiver.association.EventDrivenAssociation._run_reactor",
        "runs _serve_until_end, then closes the DIMSE provider's worker and spare file",
    ),
    _point(
        _M,
        f"{_ASSOC}._run_reactor",
        696,
        "receiver.association.EventDrivenAssociation._serve_until_end",
        "the acceptor loop of the parent, waiting on WakeableQueue.get_or_wake instead of "
        "sleeping 1 ms before each look",
    ),
    _point(
        _O,
        f"{_ASSOC}._serve_request",
        3490,
        "receiver.association.EventDrivenAssociation._serve_request",
        "a C-STORE of a SOP Class no service knows goes to the storage service instead of "
        "aborting the association; anything else to the parent",
    ),
    _point(
        _O,
        f"{_ASSOC}._abort_blocking",
        229,
        "receiver.association.EventDrivenAssociation._abort_blocking",
        "from the reactor thread it must not wait for that thread to end",
    ),
    _point(
        _M,
        f"{_ASSOC}._serve_request",
        3490,
        "receiver.association.EventDrivenAssociation._store_directly",
        "what _serve_request and StorageServiceClass.SCP do around the EVT_C_STORE "
        "handler, without the primitives, for a plain C-STORE",
    ),
    _point(
        _M,
        "pynetdicom.service_class.StorageServiceClass.SCP",
        1527,
        "receiver.association.EventDrivenAssociation._respond_to_store",
        "the response SCP sends for the handler's status, encoded directly when plain",
    ),
    _point(
        _P,
        f"{_ASSOC}._accepted_cx",
        167,
        ("receiver.association", "receiver.dimse"),
        "the accepted presentation contexts: checked before serving a C-STORE, and the "
        "transfer syntax of a streamed data set's file meta",
    ),
    _point(
        _P,
        f"{_ASSOC}._kill",
        189,
        ("receiver.association", "receiver.dul"),
        "whether the association is ending: read before serving in the reactor, set when "
        "the reactor aborts",
    ),
    _point(
        _P,
        f"{_ASSOC}._sent_release",
        164,
        "receiver.association",
        "no C-STORE is served directly once a release was sent, as _serve_request checks",
    ),
    _point(
        _P,
        f"{_ASSOC}._is_paused",
        198,
        "receiver.association",
        "set around serving a request, as _serve_request and _run_reactor do",
    ),
    _point(
        _P,
        f"{_ASSOC}._reactor_checkpoint",
        195,
        "receiver.association",
        "cleared while a handler uses the association as an SCU: then nothing is served "
        "in the reactor thread",
    ),
    _point(
        _P,
        f"{_ASSOC}._serve_request",
        3490,
        "receiver.dimse",
        "an N-EVENT-REPORT is served in a thread of its own, as receive_primitive does",
    ),
    _point(
        _P,
        f"{_ASSOC}._dul_ready",
        193,
        "receiver.dul",
        "set once the reactor runs, as run_reactor does; Association.run waits for it",
    ),
    # --- receiver.negotiation: presentation contexts ---------------------------------------
    _point(
        _R,
        "pynetdicom.acse.negotiate_as_acceptor",
        22,
        "receiver.negotiation.negotiate_as_acceptor",
        "what ACSE._negotiate_as_acceptor calls (acse.py:407): pynetdicom's own function "
        "(presentation.py:602), then the requestor's own compressed syntax where offered first",
    ),
    # --- receiver.dul: the reactor thread ---------------------------------------------------
    _point(
        _S,
        _DUL,
        47,
        "receiver.dul.EventDrivenDUL",
        "waits on its sockets instead of sleeping 1 ms; sends P-DATA from the caller; "
        "writes data-set PDUs straight to their file",
    ),
    _point(
        _O,
        f"{_DUL}.__init__",
        68,
        "receiver.dul.EventDrivenDUL.__init__",
        "calls the parent, then adds the wake-up socket pair, the state lock and the "
        "receive buffers",
    ),
    _point(
        _O,
        f"{_DUL}.run_reactor",
        377,
        "receiver.dul.EventDrivenDUL.run_reactor",
        "runs _run, then discards an unfinished data set and wakes the association thread",
    ),
    _point(
        _M,
        f"{_DUL}.run_reactor",
        377,
        "receiver.dul.EventDrivenDUL._run",
        "the parent's loop with an event-driven idle wait instead of sleeping "
        "_run_loop_delay, and the state machine under the state lock",
    ),
    _point(
        _M,
        f"{_DUL}.run_reactor",
        377,
        "receiver.dul.EventDrivenDUL._abort_after",
        "the parent's A-ABORT after an exception, also after one of the state machine",
    ),
    _point(
        _O,
        f"{_DUL}.send_pdu",
        464,
        "receiver.dul.EventDrivenDUL.send_pdu",
        "a P-DATA that the state machine would only send is sent by the caller; anything "
        "else is queued by the parent and wakes the reactor",
    ),
    _point(
        _M,
        "pynetdicom.fsm.DT_1",
        409,
        "receiver.dul.EventDrivenDUL._send_data_directly",
        "what DT-1 (and AR-7) do with a P-DATA in Sta6 (Sta8): send the PDU, stay",
    ),
    _point(
        _O,
        f"{_DUL}.stop_dul",
        489,
        "receiver.dul.EventDrivenDUL.stop_dul",
        "as the parent, and wakes the reactor so that it ends at once",
    ),
    _point(
        _O,
        f"{_DUL}._read_pdu_data",
        245,
        "receiver.dul.EventDrivenDUL._read_pdu_data",
        "as the parent, with its events and log messages, except that a P-DATA-TF of "
        "data-set fragments of a streaming C-STORE is written straight to its file",
    ),
    _point(
        _M,
        "pynetdicom.fsm.DT_2",
        435,
        "receiver.dul.EventDrivenDUL._stream_fragments",
        "what DT-2, receive_primitive and decode_msg do with a P-DATA-TF of data-set "
        "fragments, without the copies and objects",
    ),
    _point(
        _P,
        f"{_DUL}._kill_thread",
        111,
        "receiver.dul",
        "the reactor's stop flag, read and set as the parent does",
    ),
    _point(
        _P,
        f"{_DUL}._idle_timer",
        99,
        "receiver.dul",
        "started and restarted by the loop, as the parent's",
    ),
    _point(
        _P,
        f"{_DUL}._recv_pdu",
        95,
        "receiver.dul",
        "where _read_pdu_data puts a decoded PDU, as the parent's",
    ),
    _point(
        _P,
        f"{_DUL}._decode_pdu",
        118,
        "receiver.dul",
        "decodes a PDU that is not written directly, as the parent's _read_pdu_data",
    ),
    _point(
        _P,
        f"{_DUL}._send",
        450,
        "receiver.dul",
        "sends an encoded P-DATA-TF from the caller (see _send_data_directly)",
    ),
    _point(
        _P,
        f"{_DUL}._process_recv_primitive",
        202,
        "receiver.dul",
        "one step of the loop, as the parent's run_reactor",
    ),
    _point(
        _P,
        f"{_DUL}._is_transport_event",
        148,
        "receiver.dul",
        "one step of the loop, as the parent's run_reactor",
    ),
    # --- receiver.transport: the association's socket ------------------------------------
    _point(
        _S,
        "pynetdicom.transport.AssociationSocket",
        282,
        "receiver.transport.BulkReadSocket",
        "reads a PDU with as few recv calls as possible; poll instead of select",
    ),
    _point(
        _O,
        "pynetdicom.transport.AssociationSocket.ready",
        538,
        "receiver.transport.BulkReadSocket.ready",
        "the parent's with poll instead of select, which refuses descriptors from 1024 on",
    ),
    _point(
        _O,
        "pynetdicom.transport.AssociationSocket.recv",
        570,
        "receiver.transport.BulkReadSocket.recv",
        "reads into one buffer with recv_into instead of 4 KB pieces joined",
    ),
    _point(
        _M,
        "pynetdicom.transport.AssociationSocket.recv",
        570,
        "receiver.transport.BulkReadSocket.recv_into",
        "the parent's recv into a caller's buffer: blocks, and returns fewer bytes only "
        "when the peer closed the connection",
    ),
    _point(
        _P,
        "pynetdicom.transport.AssociationSocket._is_connected",
        347,
        "receiver.transport",
        "read by ready, as the parent's",
    ),
    # --- receiver.dimse: DIMSE messages -----------------------------------------------------
    _point(
        _S,
        _DIMSE,
        99,
        "receiver.dimse.StreamingDIMSE",
        "streams C-STORE data sets into IncomingFiles; plain requests and responses "
        "without pydicom",
    ),
    _point(
        _O,
        f"{_DIMSE}.__init__",
        172,
        "receiver.dimse.StreamingDIMSE.__init__",
        "calls the parent, then replaces msg_queue with a WakeableQueue (a queue.Queue) "
        "and adds the worker and the spare file",
    ),
    _point(
        _O,
        f"{_DIMSE}.receive_primitive",
        248,
        "receiver.dimse.StreamingDIMSE.receive_primitive",
        "the parent's, with _decode instead of DIMSEMessage.decode_msg",
    ),
    _point(
        _M,
        f"{_DIMSE}.receive_primitive",
        248,
        "receiver.dimse.StreamingDIMSE._message_received",
        "the tail of receive_primitive (events, C-CANCEL, N-EVENT-REPORT, queueing, the "
        "reset of issue #41), serving in the reactor or directly when allowed",
    ),
    _point(
        _M,
        f"{_MESSAGE}.decode_msg",
        367,
        "receiver.dimse.StreamingDIMSE._decode",
        "decode_msg with the data set streamed into an IncomingFile and a plain C-STORE "
        "request's command set read by parse_store_request",
    ),
    _point(
        _O,
        f"{_DIMSE}.send_msg",
        310,
        "receiver.dimse.StreamingDIMSE.send_msg",
        "a plain C-STORE response is encoded directly; anything else by the parent",
    ),
    _point(
        _M,
        f"{_MESSAGE}.encode_msg",
        507,
        "receiver.dimse.StreamingDIMSE.send_store_response",
        "one P-DATA with the whole command set as its last fragment, when it fits",
    ),
    _point(
        _P,
        "pynetdicom.dimse_messages._MESSAGE_TYPES",
        909,
        "receiver.dimse",
        "the message class for a decoded command set's Command Field, as decode_msg",
    ),
    _point(
        _P,
        f"{_MESSAGE}._data_set_file",
        357,
        "receiver.dimse",
        "the file a data set streams into: an IncomingFile instead of a NamedTemporaryFile",
    ),
    _point(
        _P,
        f"{_MESSAGE}._data_set_path",
        354,
        "receiver.dimse",
        "that file's path, as decode_msg sets it",
    ),
    _point(
        _P,
        "pynetdicom._config.STORE_RECV_CHUNKED_DATASET",
        120,
        ("receiver.app", "receiver.dimse"),
        "set by the receiver (documented setting in a private module); read by _decode as "
        "decode_msg reads it",
    ),
    # --- receiver.encoding: the wire -------------------------------------------------------
    _point(
        _M,
        "pynetdicom.dsutils.create_file_meta",
        24,
        "receiver.encoding.encode_file_meta",
        "the file meta group pynetdicom writes before a received data set, byte for byte "
        "(with pydicom's write_file_meta_info)",
    ),
    _point(
        _M,
        f"{_MESSAGE}.primitive_to_message",
        738,
        "receiver.encoding.encode_store_response",
        "the command set pynetdicom encodes for a plain C-STORE response, byte for byte",
    ),
    _point(
        _M,
        f"{_MESSAGE}.message_to_primitive",
        692,
        "receiver.encoding.parse_store_request",
        "reads what pydicom decodes and the C_STORE primitive accepts of a plain request",
    ),
    # --- receiver.incoming: the file a data set streams into ------------------------------
    _point(
        _P,
        "pynetdicom.dimse_primitives.DIMSEPrimitive._dataset_file",
        95,
        "receiver.incoming",
        "written_content finds a request's IncomingFile there (message_to_primitive puts "
        "it there, StorageServiceClass.SCP closes and removes it by name)",
    ),
    # --- receiver.app: process-wide settings -----------------------------------------------
    _point(
        _P,
        "pynetdicom._config.ENFORCE_UID_CONFORMANCE",
        26,
        "receiver.app",
        "documented setting in a private module: our checks give a reason per instance",
    ),
    _point(
        _P,
        "pynetdicom._config.LOG_REQUEST_IDENTIFIERS",
        77,
        "receiver.app",
        "documented setting in a private module: no identifiers logged per request",
    ),
    _point(
        _P,
        "pynetdicom._config.LOG_RESPONSE_IDENTIFIERS",
        61,
        "receiver.app",
        "documented setting in a private module: no identifiers logged per response",
    ),
    _point(
        _P,
        "pynetdicom._config.LOG_HANDLER_LEVEL",
        8,
        "receiver.app",
        "documented setting in a private module: no description of every PDU and message",
    ),
)
