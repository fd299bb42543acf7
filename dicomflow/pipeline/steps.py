"""The pipeline's steps; the DAG ``service-process-incoming-dcm`` calls one per task."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy import text

from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.dicom.document import build_series_document, merge_series_documents
from dicomflow.dicom.headers import SeriesGroup
from dicomflow.index import open_index
from dicomflow.pacs.client import DicomWebClient
from dicomflow.pipeline.batch import SpooledBatch, report_key, thumbnail_key
from dicomflow.storage.client import ObjectStore
from dicomflow.thumbnails import render_series_thumbnail
from dicomflow.validation import render_report_html, validate_series

log = logging.getLogger(__name__)

Summary = dict[str, Any]
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


class StepError(RuntimeError):
    """A step that cannot finish; the batch stays in the spool for a re-run."""


def _dataset_digest(data: bytes) -> str:
    """SHA-256 of the dataset after the file meta, which PACSs may legitimately rewrite."""
    if data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00":
        meta_length = int.from_bytes(data[140:144], "little")
        data = data[144 + meta_length :]
    return hashlib.sha256(data).hexdigest()


def read_batch(settings: Settings, batch_id: str) -> Summary:
    """Read the manifest and headers (no pixel data); say what the batch holds."""
    batch = SpooledBatch(settings, batch_id)
    for rejected in batch.scan.rejected:
        log.warning(
            "batch %s: %s is not processed: %s", batch_id, rejected.path.name, rejected.reason
        )
    summary = {
        "batch_id": batch_id,
        "project": batch.record.project,
        "dataset": batch.record.dataset,
        "instances": len(batch.entries),
        "series": {
            g.series_instance_uid: {"instances": len(g.instances), "modality": g.modality}
            for g in batch.series
        },
        "unreadable": [str(r.path) for r in batch.scan.rejected],
    }
    log.info(
        "batch %s: %d instance(s) in %d series for project %s, dataset %s",
        batch_id,
        summary["instances"],
        len(batch.series),
        batch.record.project,
        batch.record.dataset,
    )
    return summary


def store_to_pacs(settings: Settings, batch_id: str) -> Summary:
    """Store the batch's instances in the PACS by STOW-RS, skipping those already held.

    An instance whose SOP Instance UID the PACS holds with identical dataset bytes is already
    stored (a resend or a re-run). One held with *different* bytes is a conflict: not
    overwritten, kept in the problem area with the reason, and reported.

    Raises
    ------
    StepError
        When instances could not be stored (the PACS refused them, or is down after retries).
    """
    batch = SpooledBatch(settings, batch_id)
    stored = skipped = 0
    conflicts: list[dict[str, str]] = []
    failed: dict[str, str] = {}
    with DicomWebClient.from_settings(settings) as pacs:
        for group in batch.series:
            held = set(pacs.series_instances(group.study_instance_uid, group.series_instance_uid))
            to_send = []
            for inst in group.instances:
                if inst.sop_instance_uid not in held:
                    to_send.append(inst.path)
                    continue
                theirs = pacs.retrieve_instance(
                    group.study_instance_uid, group.series_instance_uid, inst.sop_instance_uid
                )
                if _dataset_digest(theirs) == _dataset_digest(inst.path.read_bytes()):
                    skipped += 1
                    continue
                reason = (
                    f"conflict: SOP Instance UID {inst.sop_instance_uid} is already in the PACS "
                    "with different content; the stored instance was kept"
                )
                problem = batch.spool.keep_problem(
                    inst.path,
                    reason,
                    batch.record.origin,
                    batch.record.project,
                    details={
                        "batch_id": batch_id,
                        "series_instance_uid": group.series_instance_uid,
                    },
                )
                conflicts.append({"sop_instance_uid": inst.sop_instance_uid, "problem": problem.id})
            size = settings.pacs.stow_batch_size
            for start in range(0, len(to_send), size):
                chunk = to_send[start : start + size]
                result = pacs.store(chunk)
                stored += len(result.stored)
                failed.update(result.failed)
    if failed:
        sample = "; ".join(f"{uid}: {why}" for uid, why in list(failed.items())[:5])
        raise StepError(
            f"the PACS refused {len(failed)} instance(s) of batch {batch_id} ({sample}); "
            "the batch stays in the spool for a re-run"
        )
    log.info(
        "batch %s: %d stored, %d already in the PACS, %d conflict(s)",
        batch_id,
        stored,
        skipped,
        len(conflicts),
    )
    return {"stored": stored, "already_stored": skipped, "conflicts": conflicts}


def map_series(settings: Settings, batch_id: str) -> Summary:
    """Record each series in its project and dataset (and in ``admin``)."""
    batch = SpooledBatch(settings, batch_id)
    engine = make_engine(settings.platform_db_url)
    try:
        projects = ProjectStore(engine)
        for group in batch.series:
            for project in batch.projects:
                projects.map_series(
                    project,
                    batch.record.dataset,
                    group.series_instance_uid,
                    group.study_instance_uid,
                )
    finally:
        engine.dispose()
    return {"mapped": len(batch.series), "projects": batch.projects}


def _referenced_series(group: SeriesGroup) -> str | None:
    ds = pydicom.dcmread(group.instances[0].path, stop_before_pixels=True)
    for item in ds.get("ReferencedSeriesSequence", []):
        if "SeriesInstanceUID" in item:
            return str(item.SeriesInstanceUID)
    for frame_ref in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame_ref.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                return str(series.SeriesInstanceUID)
    return None


@contextmanager
def _reference_files(
    batch: SpooledBatch, group: SeriesGroup, pacs: DicomWebClient
) -> Iterator[list[Path] | None]:
    """The files of the image series a SEG or RTSTRUCT annotates: from the batch or the PACS."""
    uid = _referenced_series(group)
    if uid is None:
        yield None
        return
    for other in batch.series:
        if other.series_instance_uid == uid:
            yield other.paths
            return
    instances = pacs.retrieve_series(group.study_instance_uid, uid)
    if not instances:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="dicomflow-ref-") as tmp:
        paths = []
        for number, data in enumerate(instances):
            path = Path(tmp) / f"{number:05d}.dcm"
            path.write_bytes(data)
            paths.append(path)
        yield paths


def make_thumbnails(settings: Settings, batch_id: str) -> Summary:
    """Render one PNG per series into the project's and the admin bucket."""
    batch = SpooledBatch(settings, batch_id)
    store = ObjectStore.from_settings(settings)
    for project in batch.projects:
        store.ensure_bucket(project)
    made: dict[str, str | None] = {}
    with DicomWebClient.from_settings(settings) as pacs:
        for group in batch.series:
            annotation = {SEG_CLASS, RTSTRUCT_CLASS} & set(group.sop_class_uids)
            if annotation:
                with _reference_files(batch, group, pacs) as refs:
                    result = render_series_thumbnail(group, referenced_files=refs)
            else:
                result = render_series_thumbnail(group)
            log.info(
                "series %s: thumbnail %s (%s)",
                group.series_instance_uid,
                result.kind,
                result.reason,
            )
            if result.png is None:
                made[group.series_instance_uid] = None
                continue
            key = thumbnail_key(group.series_instance_uid)
            for project in batch.projects:
                store.put_bytes(project, key, result.png, "image/png")
            made[group.series_instance_uid] = key
    return {"thumbnails": made}


def validate(settings: Settings, batch_id: str, sample: int | None = None) -> Summary:
    """Run dciodvfy on the batch's instances; keep counts and an HTML report per series."""
    batch = SpooledBatch(settings, batch_id)
    store = ObjectStore.from_settings(settings)
    for project in batch.projects:
        store.ensure_bucket(project)
    results: dict[str, dict[str, Any]] = {}
    for group in batch.series:
        outcome = validate_series(group, sample=sample)
        key = report_key(group.series_instance_uid)
        page = render_report_html(
            outcome, details={"batch": batch_id, "modality": group.modality or "-"}
        )
        for project in batch.projects:
            store.put_bytes(project, key, page.encode(), "text/html; charset=utf-8")
        results[group.series_instance_uid] = {**outcome.summary(), "report_key": key}
        log.info(
            "series %s: %d error(s), %d warning(s) in %d instance(s)",
            group.series_instance_uid,
            outcome.errors,
            outcome.warnings,
            len(outcome.instances),
        )
    return {"validation": results}


@contextmanager
def _series_lock(settings: Settings, series_uid: str) -> Iterator[None]:
    """Serialise read-merge-write of one series' document across parallel batches."""
    engine = make_engine(settings.platform_db_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:uid))"), {"uid": series_uid})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:uid))"), {"uid": series_uid})
    finally:
        engine.dispose()


def index_series(
    settings: Settings,
    batch_id: str,
    thumbnails: dict[str, str | None] | None = None,
    validation: dict[str, dict[str, Any]] | None = None,
) -> Summary:
    """Write one document per series into the project's index and ``admin``, merged."""
    batch = SpooledBatch(settings, batch_id)
    record = batch.record
    index = open_index(settings)
    try:
        for project in batch.projects:
            index.ensure_project(project)
        for group in batch.series:
            uid = group.series_instance_uid
            new = build_series_document(
                group,
                projects=[record.project],
                datasets=[record.dataset],
                batch_id=batch_id,
                calling_ae=record.origin.calling_ae,
                called_ae=record.origin.called_ae,
                sender=record.origin.peer,
                received_at=record.created_at,
                thumbnail_key=(thumbnails or {}).get(uid),
                validation=(validation or {}).get(uid),
            )
            with _series_lock(settings, uid):
                stored = index.get("admin", uid)
                document = merge_series_documents(stored, new) if stored else new
                # Counts are exact (distinct SOP Instance UIDs); one fixed key makes the index's
                # per-batch sum equal to that count.
                document["instance_counts"] = {"all": document["instance_count"]}
                index.upsert(record.project, [document])
    finally:
        index.close()
    return {"indexed": [g.series_instance_uid for g in batch.series]}


def finish(settings: Settings, batch_id: str) -> Summary:
    """Mark the batch done and remove its instance files (its manifest stays for the record)."""
    batch = SpooledBatch(settings, batch_id)
    # Done first: a crash between the two leaves files to sweep, never a batch that a re-run
    # cannot read.
    batch.spool.mark_done(batch_id)
    removed = 0
    for entry in batch.entries:
        path = batch.directory / entry.file
        if path.exists():
            path.unlink()
            removed += 1
    return {"removed_files": removed}
