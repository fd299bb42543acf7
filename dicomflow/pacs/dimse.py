"""Storing to the PACS by DIMSE C-STORE: the alternative to STOW-RS (``pacs.protocol: dimse``).

Only the store goes this way; queries and retrieval stay DICOMweb (:mod:`.client`). Each
instance travels as its file holds it: the data set after the file meta is sent byte for byte
(pynetdicom's chunked sending), in the transfer syntax the file is in, and a presentation
context is proposed per SOP class and transfer syntax, so the PACS cannot ask for another
encoding. An instance whose pair the PACS does not accept is reported as failed, never
re-encoded.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset
from pynetdicom.presentation import build_context

from dicomflow.config import Settings
from dicomflow.pacs.client import PacsError, PacsUnavailableError, StoreResult

__all__ = ["DimseStoreClient"]

log = logging.getLogger(__name__)

# Send each data set straight from its file, as stored: nothing is decoded or re-encoded.
_config.STORE_SEND_CHUNKED_DATASET = True
# A PACS may hold UIDs that are not strictly conformant; it is not ours to refuse them.
_config.ENFORCE_UID_CONFORMANCE = False
_config.LOG_HANDLER_LEVEL = "none"

#: Presentation contexts one association may propose (PS3.8: odd ids 1-255).
MAX_CONTEXTS = 128
#: C-STORE warning statuses (PS3.4 B.2.3): the PACS kept the instance.
_WARNINGS = {0xB000, 0xB006, 0xB007}


class _Outgoing:
    """One file to send: its path and what its file meta says."""

    __slots__ = ("path", "sop_class", "sop_instance", "syntax")

    def __init__(self, path: Path) -> None:
        meta, _offset = split_dataset(path)
        missing = [
            kw
            for kw in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
            if kw not in meta
        ]
        if missing:
            raise PacsError(
                f"{path}: the file meta lacks {', '.join(missing)}; it cannot be sent by C-STORE"
            )
        self.path = path
        self.sop_class = str(meta.MediaStorageSOPClassUID)
        self.sop_instance = str(meta.MediaStorageSOPInstanceUID)
        self.syntax = str(meta.TransferSyntaxUID)

    @property
    def pair(self) -> tuple[str, str]:
        return (self.sop_class, self.syntax)


class DimseStoreClient:
    """Sends instances to a PACS by C-STORE over one association per call.

    Parameters
    ----------
    host, port
        The PACS's DICOM address.
    called_ae
        The PACS's AE title.
    calling_ae
        Ours (a PACS usually accepts stores only from AE titles it knows).
    timeout
        Seconds to wait for the association, a response or network data.
    attempts
        Tries of an association that cannot be made or breaks, for the instances not yet
        confirmed, with ``backoff`` seconds doubling between.
    """

    def __init__(
        self,
        host: str,
        port: int,
        called_ae: str,
        calling_ae: str,
        *,
        timeout: float = 120.0,
        attempts: int = 3,
        backoff: float = 1.0,
    ) -> None:
        if not port:
            raise ValueError(
                "pacs.dicom_port is 0: C-STORE (pacs.protocol dimse) needs the PACS's DICOM port"
            )
        self.host, self.port = host, port
        self.called_ae, self.calling_ae = called_ae, calling_ae
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> DimseStoreClient:
        """The PACS's DICOM port as the settings describe it."""
        pacs = settings.pacs
        return cls(
            pacs.dimse_host, pacs.dicom_port, pacs.ae_title, pacs.calling_ae_title, **options
        )

    @property
    def address(self) -> str:
        """``AE@host:port`` of the PACS, for messages."""
        return f"{self.called_ae}@{self.host}:{self.port}"

    def close(self) -> None:
        """Nothing is kept open between calls (one association per :meth:`store`)."""

    def __enter__(self) -> DimseStoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def store(self, files: Sequence[Path]) -> StoreResult:
        """Send instances over one association (more when they need over 128 contexts).

        Returns
        -------
        StoreResult
            The instances the PACS answered Success (or a warning) for, and the refused ones
            with their status.

        Raises
        ------
        PacsUnavailableError
            When the PACS cannot be reached, or keeps breaking the association, after the
            retries.
        PacsError
            When a file lacks the file meta C-STORE needs.
        """
        result = StoreResult()
        pending = [_Outgoing(Path(p)) for p in files]
        for group in _by_contexts(pending):
            self._store_group(group, result)
        return result

    def _store_group(self, group: list[_Outgoing], result: StoreResult) -> None:
        pending = list(group)
        last = ""
        for attempt in range(1, self._attempts + 1):
            pending, last = self._send(pending, result)
            if not pending:
                return
            if attempt < self._attempts:
                delay = self._backoff * 2 ** (attempt - 1)
                log.warning(
                    "C-STORE to %s: %s; %d instance(s) again in %.1f s",
                    self.address,
                    last,
                    len(pending),
                    delay,
                )
                time.sleep(delay)
        raise PacsUnavailableError(
            f"C-STORE of {len(pending)} instance(s) to the PACS at {self.address} failed after "
            f"{self._attempts} attempts: {last}"
        )

    def _associate(self, pairs: set[tuple[str, str]]) -> Association:
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self._timeout
        # One context per SOP class and transfer syntax: the PACS accepts the file's own
        # encoding or refuses the context, it cannot pick another.
        ae.requested_contexts = [build_context(c, [s]) for c, s in sorted(pairs)]
        assoc = ae.associate(self.host, self.port, ae_title=self.called_ae)
        if assoc.is_established:
            sock = assoc.dul.socket.socket if assoc.dul.socket else None
            if sock is not None:
                # Each C-STORE is a small command PDU, the data and a small answer: without
                # this Nagle's algorithm holds the data for the peer's delayed ACK (~40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # The association thread polls its socket every ms by default, which caps one
            # association near one C-STORE per ms of latency added to each answer.
            assoc.dul._run_loop_delay = 0.0001
            _keep_responses(assoc)
        return assoc

    def _send(self, pending: list[_Outgoing], result: StoreResult) -> tuple[list[_Outgoing], str]:
        """One association's worth; what is left unconfirmed, and why."""
        assoc = self._associate({o.pair for o in pending})
        if not assoc.is_established:
            why = "association rejected" if assoc.is_rejected else "no association"
            return pending, f"{why} (called AE {self.called_ae}, calling AE {self.calling_ae})"
        accepted = {
            (str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts
        }
        try:
            for number, item in enumerate(pending):
                if item.pair not in accepted:
                    result.failed[item.sop_instance] = (
                        f"the PACS accepts no presentation context for SOP class "
                        f"{item.sop_class} in transfer syntax {item.syntax}"
                    )
                    continue
                status = assoc.send_c_store(item.path, msg_id=number % 65535 + 1)
                if "Status" not in status:
                    # No answer (timeout, abort): this one and the rest are unconfirmed.
                    return pending[number:], "the association broke without an answer"
                code = int(status.Status)
                if code == 0x0000 or code in _WARNINGS:
                    if code:
                        log.warning(
                            "C-STORE of %s: the PACS kept it with warning 0x%04X",
                            item.sop_instance,
                            code,
                        )
                    result.stored.add(item.sop_instance)
                    result.failed.pop(item.sop_instance, None)
                else:
                    result.failed[item.sop_instance] = _failure(code, status)
            return [], ""
        finally:
            if assoc.is_established:
                assoc.release()
            else:
                assoc.abort()


def _keep_responses(assoc: Association) -> None:
    """Hand back to ``send_c_store`` the answers pynetdicom's reactor takes from it.

    The association's reactor thread pauses while ``send_c_store`` waits for its answer, but
    the pause has a gap: an answer arriving in it is taken off the queue by the reactor, which
    serves requests only, logs "Received unexpected C-STORE service message" and drops it.
    ``send_c_store`` then waits for the DIMSE timeout and the PACS closes the idle association
    (measured: 1 in ~1,000-2,000 instances on a loaded machine, 30 s lost each time; the
    symptom of pynetdicom issue 875). We send requests and never serve any, so whatever the
    reactor would serve and is not a request is an answer to us: it goes back on the queue.
    """
    serve = assoc._serve_request

    def serve_or_return(msg: Any, context_id: int) -> None:
        if msg.is_valid_request:
            serve(msg, context_id)
        else:
            assoc.dimse.msg_queue.put((context_id, msg))

    assoc._serve_request = serve_or_return  # type: ignore[method-assign]


def _failure(code: int, status: Dataset) -> str:
    comment = str(status.get("ErrorComment", "") or "")
    return f"C-STORE status 0x{code:04X}" + (f": {comment}" if comment else "")


def _by_contexts(items: list[_Outgoing]) -> list[list[_Outgoing]]:
    """Split so that no association needs more than :data:`MAX_CONTEXTS` contexts."""
    groups: list[list[_Outgoing]] = []
    pairs: set[tuple[str, str]] = set()
    current: list[_Outgoing] = []
    for item in items:
        if item.pair not in pairs and len(pairs) == MAX_CONTEXTS:
            groups.append(current)
            current, pairs = [], set()
        pairs.add(item.pair)
        current.append(item)
    if current:
        groups.append(current)
    return groups
