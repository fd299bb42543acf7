"""Event handlers of the receiver: association checks, C-STORE into the spool, C-ECHO.

Each association gets an :class:`AssociationState`; the called AE title names the project
and the calling AE title the dataset, checked by the platform's
:class:`~dicomflow.intake.admission.Admission`. Its instances go through one
:class:`~dicomflow.intake.session.IntakeSession`, so they land in a batch of their own that
closes when the association is released or aborted, or, for a sender's stream of small
associations, in the batch of the stream (see :mod:`receiver.streams`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_RELEASE
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from dicomflow.db.projects import ADMIN_PROJECT, normalize_ae_name
from dicomflow.dicom.uids import uid_problem
from dicomflow.intake.admission import Admission, AdmissionRefusedError
from dicomflow.intake.checks import InstanceRejectedError, StoreStatus
from dicomflow.intake.session import IntakeSession
from dicomflow.spool.records import CloseReason, Door, Origin, PendingContent
from dicomflow.spool.store import Spool
from receiver.incoming import written_content
from receiver.streams import Sender, SenderStreams

LOGGER = logging.getLogger("receiver")

#: Error Comment (0000,0902) is LO: at most 64 characters.
_ERROR_COMMENT_MAX = 64


class RejectResult:
    """A-ASSOCIATE-RJ Result values (PS3.8 9.3.4)."""

    PERMANENT = 0x01
    TRANSIENT = 0x02


class RejectSource:
    """A-ASSOCIATE-RJ Source values."""

    SERVICE_USER = 0x01


class RejectReason:
    """A-ASSOCIATE-RJ Reason/Diag. values for source "DICOM UL service-user"."""

    NO_REASON = 0x01
    CALLING_AE_NOT_RECOGNISED = 0x03
    CALLED_AE_NOT_RECOGNISED = 0x07


@dataclass
class AssociationState:
    """What the receiver knows of one association."""

    peer: str
    started: float = field(default_factory=time.monotonic)
    calling_ae: str = ""
    called_ae: str = ""
    project: str = ""
    dataset: str = ""
    intake: IntakeSession | None = None
    outcome: str = "open"
    release_requested: bool = False
    sender: Sender | None = None
    #: Whether the association continues its sender's stream (see :mod:`receiver.streams`).
    streaming: bool = False
    #: Whether its release or abort has been dealt with.
    finished: bool = False


def _peer(assoc: Association) -> str:
    info = assoc.requestor
    return f"{info.address}:{info.port}"


class ReceiverHandlers:
    """The handlers bound to the receiver's AE.

    Parameters
    ----------
    spool
        Where instances go.
    admission
        Which projects exist (and whether unknown ones go to ``admin``).
    streams
        Which associations continue a sender's stream.
    """

    def __init__(self, spool: Spool, admission: Admission, streams: SenderStreams) -> None:
        self.spool = spool
        self.admission = admission
        self.streams = streams
        self._states: dict[int, AssociationState] = {}
        self._lock = threading.Lock()

    def handlers(self) -> list[Any]:
        """``(event, handler)`` pairs for ``AE.start_server(evt_handlers=...)``."""
        return [
            (evt.EVT_CONN_OPEN, self.on_conn_open),
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_ECHO, self.on_c_echo),
            (evt.EVT_C_STORE, self.on_c_store),
            (evt.EVT_ACSE_RECV, self.on_acse_recv),
            (evt.EVT_RELEASED, self.on_released),
            (evt.EVT_ABORTED, self.on_aborted),
            (evt.EVT_CONN_CLOSE, self.on_conn_close),
        ]

    def _state(self, assoc: Association) -> AssociationState:
        with self._lock:
            state = self._states.get(id(assoc))
            if state is None:
                state = self._states[id(assoc)] = AssociationState(_peer(assoc))
            return state

    def on_conn_open(self, event: Event) -> None:
        """Start the association's record."""
        self._state(event.assoc)

    def on_requested(self, event: Event) -> None:
        """Accept the association only for a known project (the called AE title)."""
        assoc = event.assoc
        state = self._state(assoc)
        request = assoc.requestor.primitive
        assert request is not None  # EVT_REQUESTED follows the A-ASSOCIATE-RQ
        state.calling_ae = str(request.calling_ae_title).strip()
        state.called_ae = str(request.called_ae_title).strip()
        dataset = normalize_ae_name(state.calling_ae) or "unknown"
        try:
            destination = self.admission.destination(
                state.called_ae,
                dataset,
                calling_ae=state.calling_ae,
                peer_host=assoc.requestor.address,
            )
        except AdmissionRefusedError as exc:
            if exc.sender_refused:
                # The project lists the senders it accepts, and this is none of them.
                state.outcome = "rejected: sender not accepted"
                LOGGER.warning("rejecting association from %s: %s", state.peer, exc)
                self._reject(assoc, RejectResult.PERMANENT, RejectReason.CALLING_AE_NOT_RECOGNISED)
            elif exc.unknown_project:
                state.outcome = "rejected: called AE title not recognised"
                LOGGER.warning(
                    "rejecting association from %s: called AE title %r (project %r) not "
                    "recognised; calling AE title %r; existing projects: %s",
                    state.peer,
                    state.called_ae,
                    normalize_ae_name(state.called_ae),
                    state.calling_ae,
                    ", ".join(sorted(self.admission.known_projects())) or "(none)",
                )
                self._reject(assoc, RejectResult.PERMANENT, RejectReason.CALLED_AE_NOT_RECOGNISED)
            else:
                state.outcome = f"rejected: {exc}"
                LOGGER.warning("rejecting association from %s: %s", state.peer, exc)
                self._reject(assoc, RejectResult.PERMANENT, RejectReason.NO_REASON)
            return
        except Exception:
            LOGGER.exception("cannot look up project of %r; rejecting (transient)", state.called_ae)
            state.outcome = "rejected: project lookup failed"
            self._reject(assoc, RejectResult.TRANSIENT, RejectReason.NO_REASON)
            return
        if destination.routed_to_admin:
            LOGGER.info(
                "called AE title %r is no project: routing %s to %r",
                state.called_ae,
                state.peer,
                ADMIN_PROJECT,
            )
        state.project = destination.project
        state.dataset = destination.dataset
        origin = Origin(Door.DIMSE, state.peer, state.calling_ae, state.called_ae)
        state.intake = IntakeSession(self.spool, destination, origin)
        state.sender = Sender(assoc.requestor.address, destination.project, destination.dataset)
        state.streaming, batch = self.streams.begin(state.sender)
        if batch is not None:
            state.intake.continue_batch(batch)

    @staticmethod
    def _reject(assoc: Association, result: int, reason: int) -> None:
        assoc.acse.send_reject(result, RejectSource.SERVICE_USER, reason)
        # As pynetdicom does for its own rejections: wait until the A-ASSOCIATE-RJ is sent
        # and the peer closed, else the server closes the socket before the PDU leaves.
        assoc.kill()

    def on_c_echo(self, event: Event) -> int:
        """Answer a C-ECHO with Success."""
        return int(StoreStatus.SUCCESS)

    def on_c_store(self, event: Event) -> int | Dataset:
        """Make the received instance durable in the spool, then answer Success."""
        return self.store(
            event.assoc,
            str(event.request.AffectedSOPClassUID or ""),
            Path(event.dataset_path),
            written_content(event.request),
        )

    def store(
        self, assoc: Association, sop_class_uid: str, path: Path, content: PendingContent | None
    ) -> int | Dataset:
        """What :meth:`on_c_store` does, for a caller without an event.

        The reactor serves plain C-STORE requests with it directly (see
        ``EventDrivenAssociation._store_directly``).

        Parameters
        ----------
        assoc
            The association the instance came on.
        sop_class_uid
            The request's Affected SOP Class UID.
        path
            The received data set as a Part 10 file; it is moved away.
        content
            What its writer knows of its bytes, if anything.

        Returns
        -------
        int or pydicom.dataset.Dataset
            The status, or a failure status with an Error Comment.
        """
        state = self._state(assoc)
        intake = state.intake
        if intake is None:  # cannot happen: stores only follow an accepted association
            return _failure(StoreStatus.PROCESSING_FAILURE, "association has no project")
        refused = _unsupported_sop_class(sop_class_uid)
        if refused is not None:
            try:
                intake.reject(path, refused, move=True)
            except OSError:
                LOGGER.exception("cannot keep a refused instance from %s", state.peer)
            return _failure(StoreStatus.SOP_CLASS_NOT_SUPPORTED, refused)
        try:
            intake.store(path, move=True, content=content)
        except InstanceRejectedError as exc:
            return _failure(exc.status, exc.reason)
        except Exception as exc:
            LOGGER.exception("storing an instance from %s failed", state.peer)
            intake.failed += 1
            return _failure(StoreStatus.PROCESSING_FAILURE, f"receiver error: {exc}")
        return int(StoreStatus.SUCCESS)

    def _finish(self, assoc: Association, outcome: str, reason: CloseReason) -> None:
        state = self._state(assoc)
        if state.outcome == "open":
            state.outcome = outcome
        intake = state.intake
        if intake is None or state.finished:
            return
        state.finished = True
        if (
            reason is CloseReason.RELEASED
            and state.sender is not None
            and self.streams.end(state.sender, intake.batch, streaming=state.streaming)
        ):
            state.outcome = f"{outcome}, batch left open for the sender's next association"
            return
        intake.close(reason)

    def on_released(self, event: Event) -> None:
        """Close the association's batch, or leave it open for the sender's stream."""
        self._finish(event.assoc, "released", CloseReason.RELEASED)

    def on_aborted(self, event: Event) -> None:
        """Close the association's batch: what was acknowledged stays acknowledged."""
        self._finish(event.assoc, "aborted", CloseReason.ABORTED)

    def on_acse_recv(self, event: Event) -> None:
        """Note an A-RELEASE request.

        The connection may close (in the DUL thread) before ``EVT_RELEASED`` runs (in the
        association thread); this event comes first, so the close reason is right.
        """
        # The documented payload of EVT_ACSE_RECV.
        primitive = getattr(event, "primitive", None)
        if isinstance(primitive, A_RELEASE) and primitive.result is None:
            self._state(event.assoc).release_requested = True

    def on_conn_close(self, event: Event) -> None:
        """Close what is still open and write the association's log line."""
        if self._state(event.assoc).release_requested:
            self._finish(event.assoc, "released", CloseReason.RELEASED)
        else:
            self._finish(event.assoc, "connection closed", CloseReason.ABORTED)
        with self._lock:
            state = self._states.pop(id(event.assoc), None)
        if state is None:
            return
        intake = state.intake
        LOGGER.info(
            "association peer=%s calling=%r called=%r project=%s dataset=%s outcome=%s "
            "stored=%d failed=%d bytes=%d duration=%.3fs batches=%s",
            state.peer,
            state.calling_ae,
            state.called_ae,
            state.project or "-",
            state.dataset or "-",
            state.outcome,
            intake.stored if intake else 0,
            intake.failed if intake else 0,
            intake.bytes if intake else 0,
            time.monotonic() - state.started,
            ",".join(intake.batch_ids) if intake and intake.batch_ids else "-",
        )


def _unsupported_sop_class(sop_class: str) -> str | None:
    """Why a C-STORE's Affected SOP Class UID is refused, or ``None`` for a storage class."""
    if issubclass(uid_to_service_class(sop_class), StorageServiceClass):
        return None
    return (
        uid_problem(sop_class, "SOP Class UID") or f"SOP Class {sop_class} is not a storage class"
    )


def _failure(status: StoreStatus, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = int(status)
    ds.ErrorComment = comment[:_ERROR_COMMENT_MAX]
    return ds
