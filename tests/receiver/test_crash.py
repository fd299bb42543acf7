"""A receiver process killed with SIGKILL mid-send loses nothing it acknowledged."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from dicomflow.config import Settings, load_settings
from dicomflow.spool.store import Spool
from dicomflow.stack.isolated import free_port
from tests.receiver.receiver_helpers import (
    good_dataset,
    receiver_process_env,
    start_receiver_process,
    stop_receiver_process,
    wait_listening,
)


def _send(port: int, datasets: list, acked: list[str], stop_after: int | None) -> None:
    ae = AE(ae_title="CRASHTEST")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="RECV")
    if not assoc.is_established:
        return
    for ds in datasets:
        if not assoc.is_established:
            break
        status = assoc.send_c_store(ds)
        if "Status" in status and status.Status == 0:
            acked.append(str(ds.SOPInstanceUID))
    if assoc.is_established:
        assoc.release()


def test_sigkill_mid_send_loses_and_duplicates_nothing_acknowledged(
    postgres: Settings, stack_env: dict[str, str], projects: object, tmp_path: Path
) -> None:
    # A receiver of its own: its own spool and port, on the session's PostgreSQL. Restart
    # recovery closes every open batch of its spool, so it must not share the session's.
    shared = postgres
    port = free_port()
    env = receiver_process_env(stack_env, shared, tmp_path / "var", port)
    settings = load_settings(environ=env)
    log = tmp_path / "receiver.log"
    datasets = [good_dataset() for _ in range(300)]
    for ds in datasets:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    acked: list[str] = []

    proc = start_receiver_process(env, log)
    try:
        wait_listening(port, proc)
        sender = threading.Thread(target=_send, args=(port, datasets, acked, None))
        sender.start()
        while len(acked) < 60 and sender.is_alive():
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        sender.join(60)
        acked_before = list(acked)
        assert 60 <= len(acked_before) < len(datasets), "the kill must land mid-send"

        # Restart: recovery closes the half-open batch; the sender resends what was not acked.
        proc = start_receiver_process(env, log)
        wait_listening(port, proc)
        remaining = [ds for ds in datasets if str(ds.SOPInstanceUID) not in set(acked_before)]
        _send(port, remaining, acked, None)
    finally:
        stop_receiver_process(proc)

    spool = Spool(settings.spool_dir)
    counts = Counter(e.sop_instance_uid for b in spool.batches() for e in spool.manifest(b.id))
    for uid in acked_before:
        assert counts[uid] == 1, f"acknowledged instance {uid} is in the spool {counts[uid]} times"
    assert set(counts) == {str(ds.SOPInstanceUID) for ds in datasets}
    # Only the instance in flight at the kill may be there twice (stored, never acknowledged).
    assert sum(counts.values()) - len(datasets) <= 1
    assert "recovered after restart" in {b.close_reason for b in spool.batches()}
    for batch in spool.batches():
        for entry in spool.manifest(batch.id):
            assert entry.path.stat().st_size == entry.size
