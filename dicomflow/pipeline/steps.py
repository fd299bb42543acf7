"""The pipeline's steps; the DAG ``service-process-incoming-dcm`` calls one per task.

Each step takes the process's :class:`~dicomflow.platform.Platform` and a batch id, re-reads
what it needs from the spool (the source of truth until the batch is finished) and returns a
small typed, JSON-able summary (it travels as an XCom). Every step can be re-run: object keys
and document ids come from DICOM UIDs, PACS writes skip what is stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

import pydicom

from dicomflow.db.session import advisory_lock
from dicomflow.dicom.headers import SeriesGroup
from dicomflow.pacs.client import DicomWebClient
from dicomflow.pipeline.batch import SpooledBatch
from dicomflow.pipeline.documents import DocumentWriter
from dicomflow.platform import Platform
from dicomflow.storage.client import ObjectNotFoundError, ObjectStore
from dicomflow.storage.keys import record_key, report_key, thumbnail_key
from dicomflow.thumbnails import ThumbnailKind, render_series_thumbnail
from dicomflow.validation import (
    SeriesValidation,
    Validator,
    render_report_html,
    validate_series,
)

log = logging.getLogger(__name__)

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


class StepError(RuntimeError):
    """A step that cannot finish; the batch stays in the spool for a re-run."""


class SeriesInBatch(TypedDict):
    """A series as :func:`read_batch` found it."""

    instances: int
    modality: str | None


class ReadSummary(TypedDict):
    """What :func:`read_batch` found in a batch."""

    batch_id: str
    project: str
    dataset: str
    instances: int
    series: dict[str, SeriesInBatch]
    unreadable: list[str]


class Conflict(TypedDict):
    """An instance the PACS holds with other bytes, kept aside as a problem."""

    sop_instance_uid: str
    problem: str


class StoreSummary(TypedDict):
    """What :func:`store_to_pacs` did."""

    stored: int
    already_stored: int
    conflicts: list[Conflict]


class MapSummary(TypedDict):
    """What :func:`map_series` recorded."""

    mapped: int
    projects: list[str]


class ThumbnailSummary(TypedDict):
    """The thumbnails :func:`make_thumbnails` wrote: object key per series (``None``: none)."""

    thumbnails: dict[str, str | None]
    redone: list[str]


class ValidationSummary(TypedDict):
    """Per series: :meth:`SeriesValidation.summary` with its report key and the series' totals."""

    validation: dict[str, dict[str, Any]]


class IndexSummary(TypedDict):
    """The series whose documents were written."""

    indexed: list[str]


class FinishSummary(TypedDict):
    """What :func:`finish` cleaned up."""

    removed_files: int


def _dataset_digest(data: bytes) -> str:
    """SHA-256 of the dataset after the file meta, which PACSs may legitimately rewrite."""
    if data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00":
        meta_length = int.from_bytes(data[140:144], "little")
        data = data[144 + meta_length :]
    return hashlib.sha256(data).hexdigest()


def _uid_digest(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:16]


def read_batch(platform: Platform, batch_id: str) -> ReadSummary:
    """Read the manifest and headers (no pixel data); say what the batch holds."""
    batch = SpooledBatch(platform.spool, batch_id)
    for rejected in batch.scan.rejected:
        log.warning(
            "batch %s: %s is not processed: %s", batch_id, rejected.path.name, rejected.reason
        )
    summary: ReadSummary = {
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


def store_to_pacs(platform: Platform, batch_id: str) -> StoreSummary:
    """Store the batch's instances in the PACS by STOW-RS, skipping those already held.

    An instance whose SOP Instance UID the PACS holds with identical dataset bytes is already
    stored (a resend or a re-run). One held with *different* bytes is a conflict: not
    overwritten, kept in the problem area with the reason, and reported.

    Raises
    ------
    StepError
        When instances could not be stored (the PACS refused them, or is down after retries).
    """
    batch = SpooledBatch(platform.spool, batch_id)
    settings = platform.settings
    pacs = platform.pacs
    stored = skipped = 0
    conflicts: list[Conflict] = []
    failed: dict[str, str] = {}
    to_send: list[Path] = []
    for group in batch.series:
        held = set(pacs.series_instances(group.study_instance_uid, group.series_instance_uid))
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
            # Named after the batch and the instance: a retried or doubled task keeps the
            # conflict once.
            problem_id = f"conflict-{batch_id}-{_uid_digest(inst.sop_instance_uid)}"
            batch.spool.keep_problem(
                inst.path,
                f"conflict: SOP Instance UID {inst.sop_instance_uid} is already in the PACS "
                "with different content; the stored instance was kept",
                batch.record.origin,
                batch.record.project,
                details={
                    "batch_id": batch_id,
                    "series_instance_uid": group.series_instance_uid,
                    "sop_instance_uid": inst.sop_instance_uid,
                },
                problem_id=problem_id,
            )
            conflicts.append({"sop_instance_uid": inst.sop_instance_uid, "problem": problem_id})
    size = settings.pacs.stow_batch_size
    chunks = [to_send[start : start + size] for start in range(0, len(to_send), size)]
    # A PACS stores requests in parallel (Orthanc: 220/s one at a time, 360/s with four
    # in flight, measured), so a few requests overlap.
    with ThreadPoolExecutor(settings.pacs.stow_concurrency, "stow") as pool:
        for result in pool.map(pacs.store, chunks):
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


def map_series(platform: Platform, batch_id: str) -> MapSummary:
    """Record each series in its project and dataset (and in ``admin``); datasets are made here."""
    batch = SpooledBatch(platform.spool, batch_id)
    pairs = [(g.series_instance_uid, g.study_instance_uid) for g in batch.series]
    for project in batch.projects:
        platform.projects.map_series(project, batch.record.dataset, pairs)
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
def _as_files(instances: list[bytes]) -> Iterator[list[Path]]:
    """Instances fetched from the PACS, as files in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="dicomflow-pacs-") as tmp:
        paths = []
        for number, data in enumerate(instances):
            path = Path(tmp) / f"{number:05d}.dcm"
            path.write_bytes(data)
            paths.append(path)
        yield paths


@contextmanager
def _reference_files(
    batch: SpooledBatch, group: SeriesGroup, uid: str | None, pacs: DicomWebClient
) -> Iterator[list[Path] | None]:
    """The files of the image series a SEG or RTSTRUCT annotates: from the batch or the PACS."""
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
    with _as_files(instances) as paths:
        yield paths


def _is_annotation(group: SeriesGroup) -> bool:
    return bool({SEG_CLASS, RTSTRUCT_CLASS} & set(group.sop_class_uids))


def make_thumbnails(platform: Platform, batch_id: str) -> ThumbnailSummary:
    """Render one PNG per series into the project's and the admin bucket.

    A SEG or RTSTRUCT whose image series is not in the PACS yet gets a labelled placeholder and
    waits in the platform database; when a later batch brings that series, the annotation's
    thumbnail is redone over it.
    """
    batch = SpooledBatch(platform.spool, batch_id)
    store = platform.objects
    for project in batch.projects:
        store.ensure_bucket(project)
    overlays = platform.overlays
    pacs = platform.pacs
    made: dict[str, str | None] = {}
    redone: list[str] = []
    for group in batch.series:
        uid = group.series_instance_uid
        if _is_annotation(group):
            ref_uid = _referenced_series(group)
            with _reference_files(batch, group, ref_uid, pacs) as refs:
                result = render_series_thumbnail(group, referenced_files=refs)
            if result.kind is ThumbnailKind.PLACEHOLDER and ref_uid is not None:
                overlays.wait_for(uid, ref_uid, group.study_instance_uid, batch.projects)
            else:
                overlays.done(uid)
        else:
            result = render_series_thumbnail(group)
        log.info("series %s: thumbnail %s (%s)", uid, result.kind, result.reason)
        made[uid] = _put_thumbnail(store, batch.projects, uid, result.png)
    for group in batch.series:
        for waiting in overlays.waiting_on(group.series_instance_uid):
            instances = pacs.retrieve_series(waiting.study_uid, waiting.annotation_series_uid)
            with _as_files(instances) as paths:
                result = render_series_thumbnail(paths, referenced_files=group.paths)
            if result.kind is ThumbnailKind.OVERLAY:
                _put_thumbnail(store, waiting.projects, waiting.annotation_series_uid, result.png)
                overlays.done(waiting.annotation_series_uid)
                redone.append(waiting.annotation_series_uid)
                log.info(
                    "series %s: thumbnail redone over its image series %s",
                    waiting.annotation_series_uid,
                    group.series_instance_uid,
                )
    return {"thumbnails": made, "redone": redone}


def _put_thumbnail(
    store: ObjectStore, projects: list[str], series_uid: str, png: bytes | None
) -> str | None:
    if png is None:
        return None
    key = thumbnail_key(series_uid)
    for project in projects:
        store.ensure_bucket(project)
        store.put_bytes(project, key, png, "image/png")
    return key


def validate(platform: Platform, batch_id: str) -> ValidationSummary:
    """Run dciodvfy on the batch's instances; keep counts and an HTML report per series.

    ``validation.sample`` in the settings limits how many instances of a series are checked.
    The report covers the whole series: a series that arrives in several batches gets one
    report over all of them (the findings are kept as JSON next to it and merged).
    """
    settings = platform.settings
    sample = settings.validation.sample or None
    batch = SpooledBatch(platform.spool, batch_id)
    store = platform.objects
    for project in batch.projects:
        store.ensure_bucket(project)
    engine = platform.engine
    validator = Validator.from_settings(settings)
    results: dict[str, dict[str, Any]] = {}
    try:
        for group in batch.series:
            uid = group.series_instance_uid
            outcome = validate_series(group, validator, sample=sample)
            with advisory_lock(engine, f"validation:{uid}"):
                whole = _with_earlier_batches(store, outcome)
                page = render_report_html(
                    whole, details={"last batch": batch_id, "modality": group.modality or "-"}
                )
                record = json.dumps(whole.to_json()).encode()
                for project in batch.projects:
                    store.put_bytes(project, record_key(uid), record, "application/json")
                    store.put_bytes(
                        project, report_key(uid), page.encode(), "text/html; charset=utf-8"
                    )
            # The series so far, each instance once (a resent instance is not counted again):
            # what the document shows, whatever order the batches come in.
            results[uid] = {
                **whole.summary(),
                "report_key": report_key(uid),
                "this_batch": outcome.summary(),
            }
            log.info(
                "series %s: %d error(s), %d warning(s) in %d instance(s)",
                uid,
                outcome.errors,
                outcome.warnings,
                len(outcome.instances),
            )
    finally:
        validator.close()
    return {"validation": results}


def _with_earlier_batches(store: ObjectStore, outcome: SeriesValidation) -> SeriesValidation:
    """The validation of the series so far (kept in ``admin``), with this batch's merged in."""
    try:
        earlier = json.loads(store.get_bytes("admin", record_key(outcome.series_instance_uid)))
    except ObjectNotFoundError:
        return outcome
    return SeriesValidation.from_json(earlier).merged_with(outcome)


def announce_batch(platform: Platform, batch_id: str) -> IndexSummary:
    """Make a just-closed batch's series searchable at once, before any processing.

    The documents say ``pacs_state: storing`` until :func:`index_series` confirms that the
    PACS holds the batch.
    """
    result = _write_documents(platform, batch_id, archived=False)
    log.info("batch %s: %d series searchable on arrival", batch_id, len(result["indexed"]))
    return result


def index_series(
    platform: Platform, batch_id: str, thumbnails: dict[str, str | None] | None = None
) -> IndexSummary:
    """Index the batch's series (project and ``admin``) as held by the PACS, with thumbnails.

    Runs once the PACS holds the instances: the documents then say ``pacs_state: stored``.
    """
    return _write_documents(platform, batch_id, thumbnails=thumbnails)


def record_validation(
    platform: Platform, batch_id: str, validation: dict[str, dict[str, Any]] | None = None
) -> IndexSummary:
    """Add the validation results to the series documents, before or after the index step.

    It claims nothing about the PACS (only :func:`index_series` does, after the store), so it
    need not wait for the store: the documents say what the PACS confirmed so far.
    """
    return _write_documents(platform, batch_id, validation=validation, archived=False)


def _write_documents(
    platform: Platform,
    batch_id: str,
    thumbnails: dict[str, str | None] | None = None,
    validation: dict[str, dict[str, Any]] | None = None,
    archived: bool = True,
) -> IndexSummary:
    """Record the batch's series and write their documents (see :mod:`.documents`)."""
    batch = SpooledBatch(platform.spool, batch_id)
    written = DocumentWriter(platform).write_batch(
        batch, archived=archived, thumbnails=thumbnails, validation=validation
    )
    return {"indexed": written}


def finish(platform: Platform, batch_id: str) -> FinishSummary:
    """Mark the batch done and remove its instance files (its manifest stays for the record)."""
    batch = SpooledBatch(platform.spool, batch_id)
    # Done first: a crash between the two leaves files to sweep, never a batch that a re-run
    # cannot read.
    batch.spool.mark_done(batch_id)
    removed = 0
    for entry in batch.entries:
        path = entry.path
        if path.exists():
            path.unlink()
            removed += 1
    return {"removed_files": removed}
