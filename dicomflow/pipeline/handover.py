"""The hand-over of closed batches through the object store, for workers on any host.

With ``airflow.executor: celery`` a run's tasks may run on a host that does not hold the
receiver's spool. The dispatcher then uploads each batch (its manifest, records and instance
files) to the object store before it creates the batch's run (:func:`upload_batch`), and a
task that does not find a batch in its own host's spool reads it from there into a cache
beside its spool (:func:`run_spool`). With the local executor nothing is uploaded: the tasks
read the spool as they always did.

The receiver's spool stays the source of truth. Its copy is removed only once the run is done
(and the background validation lane, when on, has read it), as with the local executor; since
the ``finish`` step may run where the spool is not, the dispatcher settles the batches of its
spool from Airflow's record of the runs (:class:`Settlement`), and removes the object-store
copy last.

Layout: bucket ``<bucket_prefix>spool.handover`` (a name no project can have), one object per
batch, ``batches/<batch id>.tar``: its files (records, manifest, instances) in one
uncompressed tar. An S3 object appears only whole, so a batch is handed over whole or not
at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from dicomflow.pipeline.batch import RunBatches, SpooledBatch, left_for_the_lane
from dicomflow.platform import Platform
from dicomflow.spool import durable
from dicomflow.spool.records import BatchState
from dicomflow.spool.store import Spool, UnknownBatchError
from dicomflow.storage.client import ObjectNotFoundError, ObjectStore

__all__ = [
    "HANDOVER_PROJECT",
    "HandoverError",
    "Settlement",
    "fetch_batch",
    "is_local",
    "release_batch",
    "run_spool",
    "upload_batch",
]

log = logging.getLogger(__name__)

#: The "project" whose bucket holds the hand-over (project names cannot contain a dot).
HANDOVER_PROJECT = "spool.handover"
#: In the spool's batch folder: the object store confirmed the batch's copy.
UPLOADED_FILE = "handover.json"


class HandoverError(RuntimeError):
    """A batch is neither in this host's spool nor handed over whole in the object store."""


def _key(batch_id: str) -> str:
    return f"batches/{batch_id}.tar"


def _files(directory: Path) -> list[Path]:
    """The batch's files to hand over: all but temporary ones and the local marker."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name != UPLOADED_FILE
    )


def _write_tar(files: list[Path], out: BinaryIO, failures: list[BaseException]) -> None:
    """Stream ``files`` as an uncompressed tar (DICOM pixel data hardly compresses).

    What goes wrong is kept in ``failures``: the reader sees only an early end of the stream.
    """
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path in files:
                tar.add(path, arcname=path.name, recursive=False)
    except BaseException as exc:
        failures.append(exc)
    finally:
        with contextlib.suppress(OSError):
            out.close()


def upload_batch(store: ObjectStore, spool: Spool, batch_id: str) -> int:
    """Copy a closed batch to the object store, once; return the bytes sent (0: done before).

    The batch travels as one tar object, streamed (one request per batch instead of one per
    instance, see docs/scaling.md); an object appears only whole. Once the store confirms it,
    the copy is recorded in the spool (``handover.json`` in the batch's folder); a crash
    before that uploads the batch again (same key: nothing doubles).

    Raises
    ------
    UnknownBatchError
        When the spool has no such batch.
    HandoverError
        When the store does not show the object after the upload.
    """
    directory = spool.batch_path(batch_id)
    if (directory / UPLOADED_FILE).exists():
        return 0
    store.ensure_bucket(HANDOVER_PROJECT)
    files = _files(directory)
    read_fd, write_fd = os.pipe()
    failures: list[BaseException] = []
    writer = threading.Thread(
        target=_write_tar, args=(files, os.fdopen(write_fd, "wb"), failures), daemon=True
    )
    writer.start()
    with os.fdopen(read_fd, "rb") as reader:
        store.put_stream(HANDOVER_PROJECT, _key(batch_id), reader, "application/x-tar")
    writer.join()
    if failures:
        # The stream ended early: the object holds part of the batch and must not stay.
        store.remove(HANDOVER_PROJECT, [_key(batch_id)])
        raise HandoverError(f"batch {batch_id}: not handed over: {failures[0]}")
    if not store.exists(HANDOVER_PROJECT, _key(batch_id)):
        raise HandoverError(f"batch {batch_id}: the object store did not keep its hand-over")
    sent = sum(p.stat().st_size for p in files)
    durable.write_json(directory / UPLOADED_FILE, {"key": _key(batch_id), "bytes": sent})
    return sent


def is_local(spool: Spool, batch_id: str) -> bool:
    """Whether this host's spool holds the batch."""
    try:
        spool.batch_path(batch_id)
    except UnknownBatchError:
        return False
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One fetch of a batch at a time on this host (a run's tasks start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fetch_batch(store: ObjectStore, cache: Spool, batch_id: str) -> bool:
    """Bring a handed-over batch into ``cache`` (a spool of its own); whether it was fetched.

    The files land in a temporary folder that is renamed into place once whole, so a task
    never reads half a batch.

    Raises
    ------
    HandoverError
        When the object store has no whole copy of the batch.
    """
    if "/" in batch_id or batch_id.startswith("."):
        raise HandoverError(f"not a batch id: {batch_id!r}")
    with _locked(cache.root / "locks" / batch_id):
        if is_local(cache, batch_id):
            return False
        staging = Path(tempfile.mkdtemp(prefix=f".{batch_id}-", dir=cache.batches_dir))
        try:
            with (
                store.open_stream(HANDOVER_PROJECT, _key(batch_id)) as stream,
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                tar.extractall(staging, filter="data")
            os.replace(staging, cache.batches_dir / batch_id)
        except ObjectNotFoundError:
            shutil.rmtree(staging, ignore_errors=True)
            raise HandoverError(
                f"batch {batch_id} is not in this host's spool and was not handed over "
                "through the object store (is `airflow.executor: celery` set on the "
                "receiver's host too?)"
            ) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return True


def cache_spool(platform: Platform) -> Spool:
    """This host's cache of handed-over batches (``<data_dir>/handover``)."""
    return Spool(platform.settings.data_dir / "handover")


def run_spool(platform: Platform, batch_ids: str | Sequence[str]) -> Spool:
    """Where a task reads a run's batches: this host's spool, or the hand-over's cache.

    Raises
    ------
    HandoverError
        When a batch is in neither place (the local executor never uploads).
    """
    ids = [batch_ids] if isinstance(batch_ids, str) else list(batch_ids)
    if all(is_local(platform.spool, b) for b in ids):
        return platform.spool
    if not platform.settings.airflow.celery:
        missing = [b for b in ids if not is_local(platform.spool, b)]
        raise HandoverError(
            f"batch(es) {', '.join(missing)} not in the spool {platform.spool.root} "
            "(`airflow.executor` is local: tasks read this host's spool only)"
        )
    cache = cache_spool(platform)
    for batch_id in ids:
        if fetch_batch(platform.objects, cache, batch_id):
            log.info("batch %s read from the object store's hand-over", batch_id)
    return cache


def release_batch(store: ObjectStore, spool: Spool, batch_id: str) -> int:
    """Remove a settled batch's object-store copy (after the spool's); how many objects."""
    try:
        directory = spool.batch_path(batch_id)
    except UnknownBatchError:
        return 0
    if not (directory / UPLOADED_FILE).exists():
        return 0
    removed = store.remove(HANDOVER_PROJECT, [_key(batch_id)])
    durable.remove(directory / UPLOADED_FILE)
    return removed


class Settlement:
    """The dispatcher's account of runs whose tasks ran where its spool is not.

    A run that Airflow records as succeeded has its batches finished here as the ``finish``
    step does with the local executor: queued for the background validation lane (files
    kept) if it has instances left to check, or their instance files removed; a
    validation-lane run that succeeded removes them.
    Then, and only then, the object-store copy goes. A failed run is the failure watch's
    (:class:`~dicomflow.pipeline.failures.FailureWatch`): it marks the batches failed from
    Airflow's record and retries them.

    Parameters
    ----------
    platform
        The dispatcher's connections (its spool is the receiver host's).
    dag_id, validation_dag_id
        The processing DAG and the background lane's (``None``: no lane).
    """

    def __init__(self, platform: Platform, dag_id: str, validation_dag_id: str | None) -> None:
        self.platform = platform
        self.dag_id = dag_id
        self.validation_dag_id = validation_dag_id

    def _state(self, batch_id: str) -> BatchState | None:
        try:
            return self.platform.spool.batch(batch_id).state
        except UnknownBatchError:
            return None

    def _succeeded(self, dag_id: str, run_id: str) -> bool:
        run = self.platform.airflow.get_dag_run(dag_id, run_id)
        return run is not None and run.get("state") == "success"

    def settle(self) -> int:
        """One look at the recorded runs; return how many batches were settled."""
        spool = self.platform.spool
        background = self.validation_dag_id is not None
        settled = 0
        for run in spool.runs():
            if run.dag_id == self.dag_id:
                waiting = [b for b in run.batch_ids if self._state(b) is BatchState.TRIGGERED]
                if waiting and self._succeeded(run.dag_id, run.run_id):
                    lane = left_for_the_lane(RunBatches(spool, run.batch_ids)) if background else []
                    for batch_id in waiting:
                        if batch_id in lane:
                            spool.queue_validation(batch_id)
                        spool.mark_done(batch_id)
                        if batch_id not in lane:
                            SpooledBatch(spool, batch_id).remove_instance_files()
                        settled += 1
                        log.info("batch %s done (run %s, on a worker)", batch_id, run.run_id)
            elif run.dag_id == self.validation_dag_id:
                queued = set(spool.validation_queue()) & set(run.batch_ids)
                if queued and self._succeeded(run.dag_id, run.run_id):
                    for batch_id in sorted(queued):
                        SpooledBatch(spool, batch_id).remove_instance_files()
                        spool.validation_done(batch_id)
            self._release(run.batch_ids)
        return settled

    def _release(self, batch_ids: Sequence[str]) -> None:
        """Drop the object-store copies that no step can need any more."""
        queued = set(self.platform.spool.validation_queue())
        for batch_id in batch_ids:
            if self._state(batch_id) is BatchState.DONE and batch_id not in queued:
                release_batch(self.platform.objects, self.platform.spool, batch_id)
