"""The receiver service: builds the AE, recovers the spool, runs the server.

It writes into the spool and nothing else: closed batches wait in the spool's outbox for the
dispatcher, so the receiver takes data while Airflow, the PACS or the index is away.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import threading
import time
from typing import TYPE_CHECKING, cast

from pynetdicom import AE, _config
from pynetdicom.transport import RequestHandler

from dicomflow.intake.admission import KNOWN_PROJECTS_FILE, Admission
from dicomflow.intake.session import recover_spool
from dicomflow.spool.store import Spool
from receiver.contexts import storage_contexts
from receiver.handlers import ReceiverHandlers
from receiver.negotiation import install as install_negotiation
from receiver.overrides import fast_reactor_supported
from receiver.server import EventDrivenRequestHandler, ReceiverServer
from receiver.streams import SenderStreams

if TYPE_CHECKING:
    from dicomflow.config import Settings

LOGGER = logging.getLogger("receiver")

#: Seconds between looks for batches that are due to close: a stream's batch closes at most
#: this long after its sender's pause (see :mod:`receiver.streams`).
HOUSEKEEPING_INTERVAL = 0.1
#: Bytes of the largest PDU we announce (and so receive).
MAXIMUM_PDU_SIZE = 1 << 20
#: Seconds without any PDU after which an association is aborted.
NETWORK_TIMEOUT = 120.0
#: Seconds :meth:`Receiver.stop` waits for the aborted associations' threads to end.
STOP_WAIT = 10.0


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom settings the receiver relies on.

    Received data sets are streamed to a temporary file instead of being held in memory
    (flat memory for a 500 MB instance); the handler moves that file into the spool.
    """
    _config.STORE_RECV_CHUNKED_DATASET = True
    # Our own checks give a reason per instance; pynetdicom's would reject silently.
    _config.ENFORCE_UID_CONFORMANCE = False
    # Logging every identifier of every request costs time and floods the log.
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    # pynetdicom's standard handlers format a description of every PDU and DIMSE message
    # (~0.15 ms per instance) even though the receiver logs pynetdicom at WARNING; the
    # receiver writes its own line per association. Read when the server is made.
    _config.LOG_HANDLER_LEVEL = "none"
    # A sender's compressed data is accepted as it was compressed.
    install_negotiation()


class Receiver:
    """The DICOM receiver: C-STORE and C-ECHO into the spool.

    Parameters
    ----------
    spool
        Where instances go.
    admission
        Which projects exist (the platform's admission checks).
    host, port
        Where to listen; port 0 picks a free port (see :attr:`port`).
    ae_title
        The receiver's own AE title (it answers to every project's AE title).
    max_associations
        Concurrent associations accepted.
    stream_join_seconds, stream_batch_seconds
        How a sender's stream of small associations shares one batch (see
        :mod:`receiver.streams`); ``stream_join_seconds=0`` closes each association's batch
        at its release.
    """

    def __init__(
        self,
        spool: Spool,
        admission: Admission,
        *,
        host: str = "127.0.0.1",
        port: int = 11112,
        ae_title: str = "DICOMFLOW",
        max_associations: int = 64,
        stream_join_seconds: float = 1.0,
        stream_batch_seconds: float = 10.0,
    ) -> None:
        configure_pynetdicom()
        self.spool = spool
        self.host = host
        self._requested_port = port
        self.handlers = ReceiverHandlers(
            spool, admission, SenderStreams(stream_join_seconds, stream_batch_seconds)
        )
        self.ae = AE(ae_title=ae_title)
        self.ae.maximum_associations = max_associations
        self.ae.network_timeout = NETWORK_TIMEOUT
        # Senders cut instances into PDUs no larger than we announce; pynetdicom's default of
        # 16 KB makes a 500 KB instance 32 PDUs decoded in Python. dcmtk announces 128 KB.
        self.ae.maximum_pdu_size = MAXIMUM_PDU_SIZE
        # The called AE title names the project: it never equals our own title.
        self.ae.require_called_aet = False
        self.ae.supported_contexts = storage_contexts()
        self._server: ReceiverServer | None = None
        self._stop = threading.Event()
        self._housekeeper = threading.Thread(
            target=self._housekeeping, name="spool-housekeeping", daemon=True
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Receiver:
        """A receiver on the spool and the project list of ``settings``.

        The database is not needed to start: the projects known last are accepted while it
        is away.
        """
        from dicomflow.db.projects import ProjectStore
        from dicomflow.db.session import make_engine

        rs = settings.receiver
        spool = Spool.from_settings(settings)
        admission = Admission(
            ProjectStore(make_engine(settings.platform_db_url)),
            spool.root / KNOWN_PROJECTS_FILE,
            route_unknown_projects_to_admin=rs.route_unknown_projects_to_admin,
        )
        return cls(
            spool,
            admission,
            host=rs.host,
            port=rs.port,
            ae_title=rs.ae_title,
            max_associations=rs.max_associations,
            stream_join_seconds=rs.stream_join_seconds,
            stream_batch_seconds=rs.stream_batch_seconds,
        )

    @property
    def port(self) -> int:
        """The port actually listened on."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Recover the spool, start the housekeeping and the server threads."""
        recover_spool(self.spool)
        self._housekeeper.start()
        fast = fast_reactor_supported()
        if not fast:
            LOGGER.warning(
                "pynetdicom release not known to the event-driven reactor: using the stock "
                "polling reactor (slower)"
            )
        handler_class = EventDrivenRequestHandler if fast else RequestHandler
        server = self.ae.make_server(
            (self.host, self._requested_port),
            evt_handlers=self.handlers.handlers(),
            server_class=ReceiverServer,
            request_handler=handler_class,
        )
        self._server = cast(ReceiverServer, server)
        self._server.direct_store = (self.handlers.on_c_store, self.handlers.store)
        thread = threading.Thread(target=server.serve_forever, name="receiver-server", daemon=True)
        thread.start()
        LOGGER.info(
            "receiver listening on %s:%d (AE %s, spool %s, %s reactor)",
            self.host,
            self.port,
            self.ae.ae_title,
            self.spool.root,
            "event-driven" if fast else "stock",
        )

    def _housekeeping(self) -> None:
        while not self._stop.wait(HOUSEKEEPING_INTERVAL):
            try:
                self.spool.close_idle()
            except Exception:
                LOGGER.exception("closing idle batches failed")

    def stop(self) -> None:
        """Stop accepting, end associations and close open batches (they go to the outbox)."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        self.ae.shutdown()
        self._wait_for_associations()
        self.spool.close_all()

    def _wait_for_associations(self) -> None:
        """Let the aborted associations' threads finish before their batches are closed.

        ``AE.shutdown`` aborts each association and returns at once; its threads then still
        finish the instance being stored and remove the association's unused files.
        Bounded, so one stuck handler cannot hold the stop.
        """
        deadline = time.monotonic() + STOP_WAIT
        for assoc in self.ae.active_associations:
            assoc.join(max(0.0, deadline - time.monotonic()))
            if assoc.is_alive():
                LOGGER.warning(
                    "association with %s still running %.0f s after the stop",
                    assoc.requestor.address,
                    STOP_WAIT,
                )

    def wait(self) -> None:
        """Block until :meth:`stop` is called."""
        self._stop.wait()


def freeze_startup_objects() -> None:
    """Leave the objects that exist now out of Python's full garbage collections.

    Process-wide (``gc.freeze``): call it once the receiver has started, only in the
    receiver's own process. A full collection walks every tracked object, ~90,000 of them
    after the imports (pydicom's dictionaries, pynetdicom, SQLAlchemy), and takes ~50 ms on
    a 2-core machine with every thread paused, while senders wait for their answers.
    pynetdicom's server forces one every 60 turns of its accept loop (~30 s) and Python
    starts one as objects accumulate. These objects live as long as the process anyway.
    """
    gc.collect()
    gc.freeze()


def use_spool_for_temporary_files(spool: Spool) -> None:
    """Let pynetdicom's temporary files live in the spool, so moving them is a rename.

    Process-wide (``tempfile.tempdir``): call it only in the receiver's own process. The
    folder is this process's own: recovery removes it once the process is gone.
    """
    tempfile.tempdir = str(spool.incoming_dir)
