"""The pipeline's steps; the DAG ``service-process-incoming-dcm`` calls one per task.

Each step takes the process's :class:`~dicomflow.platform.Platform` and the batches of the run
(one or several: the dispatcher hands batches that closed together to one run), re-reads what
it needs from the spool (the source of truth until a batch is finished) and returns a small
typed, JSON-able summary (it travels as an XCom). Every step can be re-run: object keys and
document ids come from DICOM UIDs, PACS writes skip what is stored.

Validation has two lanes: :func:`validate` checks a representative set of each series at once
(its first, middle and last instance and one of each SOP class), and
:func:`validate_the_rest`, run later by the DAG ``service-validate-instances`` at low
priority, checks every other instance and fills the report in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

import pydicom

from dicomflow.db.projects import ADMIN_PROJECT
from dicomflow.db.session import advisory_locks
from dicomflow.db.validation import ValidationRecords
from dicomflow.dicom.headers import SeriesGroup
from dicomflow.dicom.instance import Instance, dataset_digest
from dicomflow.pacs.client import DicomWebClient
from dicomflow.pacs.sending import store_instances
from dicomflow.pipeline.batch import RunBatches, SpooledBatch, left_for_the_lane
from dicomflow.pipeline.documents import DocumentWriter
from dicomflow.pipeline.handover import run_spool
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
from dicomflow.validation.series import representative_instances, sample_evenly

log = logging.getLogger(__name__)

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"

#: The batches of a run: one id, or several.
Batches = str | Sequence[str]

#: Series whose thumbnails are rendered and uploaded at once (each reads one instance or a
#: few: its middle slice, or an annotation with its image).
THUMBNAILERS = 4

#: Series the store step asks the PACS about at once (the DICOMweb client's connections).
PACS_QUERIES = 8

#: Validation reports written to the object store at once (each a request or two, waiting).
REPORT_WRITERS = 8


class StepError(RuntimeError):
    """A step that cannot finish; the batches stay in the spool for a re-run."""


class Conflict(TypedDict):
    """An instance the PACS holds with other bytes, kept aside as a problem."""

    sop_instance_uid: str
    problem: str


class StoreSummary(TypedDict):
    """What :func:`store_to_pacs` did: instances stored, and series mapped to projects."""

    instances: int
    series: int
    stored: int
    already_stored: int
    conflicts: list[Conflict]
    mapped: int
    projects: list[str]
    unreadable: list[str]


class ThumbnailSummary(TypedDict):
    """The thumbnails :func:`make_thumbnails` wrote: object key per series (``None``: none)."""

    thumbnails: dict[str, str | None]
    redone: list[str]


class ValidationSummary(TypedDict):
    """Per series: the validation of the whole series so far, with its report's key."""

    validation: dict[str, dict[str, Any]]


class IndexSummary(TypedDict):
    """The series whose documents were written."""

    indexed: list[str]


class FinishSummary(TypedDict):
    """What :func:`finish` cleaned up."""

    removed_files: int
    kept_for_validation: int


def _uid_digest(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:16]


def store_to_pacs(platform: Platform, batch_ids: Batches) -> StoreSummary:
    """Store the instances in the PACS (STOW-RS or C-STORE), then map the series to projects.

    An instance whose SOP Instance UID the PACS holds with identical dataset bytes is already
    stored (a resend or a re-run). One held with *different* bytes is a conflict: not
    overwritten, kept in the problem area with the reason, and reported. Once the PACS holds
    the series, each is recorded in its batch's project and dataset (and in ``admin``):
    members of a project never see a series the PACS does not hold.

    Raises
    ------
    StepError
        When instances could not be stored (the PACS refused them, or is down after retries).
    """
    run = RunBatches(run_spool(platform, batch_ids), batch_ids)
    _log_run(run)
    settings = platform.settings
    pacs = platform.pacs
    stored = skipped = 0
    conflicts: list[Conflict] = []
    failed: dict[str, str] = {}
    to_send: list[Path] = []
    series = run.series
    # Asked side by side: 300 single-instance series waited on 300 queries one after another.
    with ThreadPoolExecutor(PACS_QUERIES, thread_name_prefix="qido") as pool:
        holdings = list(
            pool.map(
                lambda g: set(pacs.series_instances(g.study_instance_uid, g.series_instance_uid)),
                series,
            )
        )
    for group, held in zip(series, holdings, strict=True):
        for inst in group.instances:
            if inst.sop_instance_uid not in held:
                to_send.append(inst.path)
                continue
            theirs = pacs.retrieve_instance(
                group.study_instance_uid, group.series_instance_uid, inst.sop_instance_uid
            )
            if dataset_digest(theirs) == dataset_digest(inst.path.read_bytes()):
                skipped += 1
                continue
            conflicts.append(_keep_conflict(run.batch_of(inst), group, inst))
    # By pacs.protocol: STOW-RS requests or C-STORE associations, several at once.
    result = store_instances(settings, pacs, to_send)
    stored = len(result.stored)
    failed.update(result.failed)
    if failed:
        sample = "; ".join(f"{uid}: {why}" for uid, why in list(failed.items())[:5])
        raise StepError(
            f"the PACS refused {len(failed)} instance(s) of batch(es) "
            f"{', '.join(run.batch_ids)} ({sample}); they stay in the spool for a re-run"
        )
    log.info("%d stored, %d already in the PACS, %d conflict(s)", stored, skipped, len(conflicts))
    mapped = _map_series(platform, run)
    return {
        "instances": sum(len(b.entries) for b in run.batches),
        "series": len(run.series),
        "stored": stored,
        "already_stored": skipped,
        "conflicts": conflicts,
        "mapped": mapped,
        "projects": run.projects,
        "unreadable": [str(r.path) for r in run.scan.rejected],
    }


def _log_run(run: RunBatches) -> None:
    """Say in the task's log what the run's batches hold, and what cannot be read."""
    for rejected in run.scan.rejected:
        log.warning("%s is not processed: %s", rejected.path, rejected.reason)
    for batch in run.batches:
        log.info(
            "batch %s: %d instance(s) for project %s, dataset %s",
            batch.batch_id,
            len(batch.entries),
            batch.record.project,
            batch.record.dataset,
        )
    log.info(
        "run of %d batch(es): %d series, %d instance(s)",
        len(run.batches),
        len(run.series),
        sum(len(b.entries) for b in run.batches),
    )


def _keep_conflict(batch: SpooledBatch, group: SeriesGroup, inst: Instance) -> Conflict:
    # Named after the batch and the instance: a retried or doubled task keeps it once.
    problem_id = f"conflict-{batch.batch_id}-{_uid_digest(inst.sop_instance_uid)}"
    batch.spool.keep_problem(
        inst.path,
        f"conflict: SOP Instance UID {inst.sop_instance_uid} is already in the PACS "
        "with different content; the stored instance was kept",
        batch.record.origin,
        batch.record.project,
        details={
            "batch_id": batch.batch_id,
            "series_instance_uid": group.series_instance_uid,
            "sop_instance_uid": inst.sop_instance_uid,
        },
        problem_id=problem_id,
    )
    return {"sop_instance_uid": inst.sop_instance_uid, "problem": problem_id}


def _map_series(platform: Platform, run: RunBatches) -> int:
    """Record each series in its project and dataset (and in ``admin``); datasets are made here."""
    mapped: set[str] = set()
    for batch in run.batches:
        pairs = [(g.series_instance_uid, g.study_instance_uid) for g in batch.series]
        for project in batch.projects:
            platform.projects.map_series(project, batch.record.dataset, pairs)
        mapped.update(uid for uid, _ in pairs)
    return len(mapped)


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
    run: RunBatches, group: SeriesGroup, uid: str | None, pacs: DicomWebClient
) -> Iterator[list[Path] | None]:
    """The files of the image series a SEG or RTSTRUCT annotates: from the run or the PACS."""
    if uid is None:
        yield None
        return
    for other in run.series:
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


def make_thumbnails(platform: Platform, batch_ids: Batches) -> ThumbnailSummary:
    """Render one PNG per series into its projects' buckets and the admin bucket.

    A SEG or RTSTRUCT whose image series is not in the PACS yet gets a labelled placeholder and
    waits in the platform database; when a later batch brings that series, the annotation's
    thumbnail is redone over it.
    """
    run = RunBatches(run_spool(platform, batch_ids), batch_ids)
    store = platform.objects
    for project in run.projects:
        store.ensure_bucket(project)
    overlays = platform.overlays
    pacs = platform.pacs
    redone: list[str] = []

    def thumbnail(group: SeriesGroup) -> str | None:
        uid = group.series_instance_uid
        projects = run.projects_of(uid)
        if _is_annotation(group):
            ref_uid = _referenced_series(group)
            with _reference_files(run, group, ref_uid, pacs) as refs:
                result = render_series_thumbnail(group, referenced_files=refs)
            if result.kind is ThumbnailKind.PLACEHOLDER and ref_uid is not None:
                overlays.wait_for(uid, ref_uid, group.study_instance_uid, projects)
            else:
                overlays.done(uid)
        else:
            result = render_series_thumbnail(group)
        log.info("series %s: thumbnail %s (%s)", uid, result.kind, result.reason)
        return _put_thumbnail(store, projects, uid, result.png)

    # Series side by side, as the documents and the validation: a run of many small series
    # (CR, DX, mammography) rendered and uploaded one after another was the last of the
    # run's first tasks to finish, on one core, while the other core waited.
    with ThreadPoolExecutor(THUMBNAILERS, thread_name_prefix="thumbnails") as pool:
        keys = list(pool.map(thumbnail, run.series))
    made = {g.series_instance_uid: key for g, key in zip(run.series, keys, strict=True)}
    by_uid = {g.series_instance_uid: g for g in run.series}
    for waiting in overlays.waiting_on(list(by_uid)):
        group = by_uid[waiting.referenced_series_uid]
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


def validate(platform: Platform, batch_ids: Batches) -> ValidationSummary:
    """Check a representative set of each series with dciodvfy (the first lane).

    The first, middle and last instance and one of each SOP class: enough to tell a series'
    state at once; the rest is checked by :func:`validate_the_rest`. Each series keeps one
    record of its findings over every batch that brought it (:mod:`dicomflow.db.validation`)
    and one HTML report of them in each of its projects' buckets.
    """
    return _validate(
        platform, batch_ids, lambda group, _checked: representative_instances(group), "first"
    )


def validate_the_rest(platform: Platform, batch_ids: Batches) -> ValidationSummary:
    """Check every instance the first lane left (the background lane), then the documents.

    ``validation.sample`` bounds it (at most that many per series, evenly spaced; 0: all).
    Runs at low priority, after the batches are done, and removes their instance files.
    Two runs of the lane over one batch (a retry, a test's own run beside the dispatcher's)
    take turns: the second finds the batch no longer queued and leaves it.
    """
    sample = platform.settings.validation.sample or None

    def the_rest(group: SeriesGroup, checked: set[str]) -> list[Instance]:
        # What the series' record holds is checked, whatever run checked it: the first lane
        # chose its representative set from the batches its run coalesced, which need not be
        # the batches this run has (50 senders splitting series left instances unchecked when
        # this lane chose the representative set of its own grouping again).
        ordered = sorted(group.instances, key=Instance.sort_key)
        # A file already gone was validated and removed by an earlier attempt that stopped
        # before the batch left the queue: its findings are in the series' record.
        return [
            i
            for i in sample_evenly(ordered, sample)
            if i.sop_instance_uid not in checked and i.path.exists()
        ]

    ids = [batch_ids] if isinstance(batch_ids, str) else list(batch_ids)
    with advisory_locks(platform.engine, [f"validation-lane:{b}" for b in ids]):
        spool = run_spool(platform, ids)
        # A handed-over copy has no queue here: the receiver's dispatcher keeps it, and takes
        # the batches out once this run succeeded (dicomflow.pipeline.handover.Settlement).
        local = spool is platform.spool
        queued = set(spool.validation_queue()) if local else set(ids)
        pending = [b for b in ids if b in queued]
        if not pending:
            log.info("batches %s: already validated by an earlier run", ", ".join(ids))
            return {"validation": {}}
        summary = _validate(platform, pending, the_rest, "background")
        run = RunBatches(spool, pending)
        DocumentWriter(platform).write_batches(
            run.batches, archived=True, validation=summary["validation"]
        )
        _remove_files(run.batches)
        if local:
            for batch in run.batches:
                spool.validation_done(batch.batch_id)
    return summary


#: Chooses the instances of a series to check, given those its record holds findings of.
Choice = Callable[[SeriesGroup, set[str]], list[Instance]]


def _validate(
    platform: Platform, batch_ids: Batches, choose: Choice, lane: str
) -> ValidationSummary:
    run = RunBatches(run_spool(platform, batch_ids), batch_ids)
    for project in run.projects:
        platform.objects.ensure_bucket(project)
    series = run.series
    uids = [g.series_instance_uid for g in series]
    stored = ValidationRecords(platform.engine).get_many(uids)
    so_far = _records_so_far(platform, uids, stored)
    results: dict[str, dict[str, Any]] = {}
    chosen: dict[str, list[Instance]] = {}
    for group in series:
        uid = group.series_instance_uid
        picked = choose(group, _checked_instances(so_far.get(uid)))
        if picked or uid not in so_far:
            chosen[uid] = picked
        else:
            # Nothing left to check (the first lane took every instance): the record and its
            # reports stay as they are.
            results[uid] = _summary(SeriesValidation.from_json(so_far[uid]))
    # Series side by side: a series of one instance is one short dciodvfy run.
    workers = max(1, platform.settings.validation.workers)
    with (
        Validator.from_settings(platform.settings) as validator,
        ThreadPoolExecutor(workers, thread_name_prefix="validate") as pool,
    ):
        outcomes = list(
            pool.map(
                lambda g: validate_series(g, validator, only=chosen[g.series_instance_uid]),
                [g for g in series if g.series_instance_uid in chosen],
            )
        )
    # Records only the object store held (earlier versions) are not read again under the locks.
    legacy = {uid: record for uid, record in so_far.items() if uid not in stored}
    for whole in _merge_and_report(platform, run, outcomes, legacy):
        results[whole.series_instance_uid] = _summary(whole)
    for outcome in outcomes:
        log.info(
            "series %s (%s lane): %d error(s), %d warning(s) in %d instance(s)",
            outcome.series_instance_uid,
            lane,
            outcome.errors,
            outcome.warnings,
            len(outcome.instances),
        )
    return {"validation": results}


def _merge_and_report(
    platform: Platform,
    run: RunBatches,
    outcomes: Sequence[SeriesValidation],
    legacy: dict[str, dict[str, Any]],
) -> list[SeriesValidation]:
    """Merge each outcome into its series' record; write the record and the series' reports.

    The series so far, each instance once (a resent instance is not counted again): what the
    documents show, whatever order the batches come in. ``legacy``: records of an earlier
    version's object store (:func:`_records_so_far`), for series the database has none of.
    """
    store = platform.objects
    details = {"batches": ", ".join(run.batch_ids)}
    modality = {g.series_instance_uid: g.modality or "-" for g in run.series}
    uids = [o.series_instance_uid for o in outcomes]
    with ValidationRecords(platform.engine).updating(uids) as update:
        # A record written meanwhile by another run holds the legacy one already.
        earlier = {**legacy, **update.found}
        wholes = []
        for outcome in outcomes:
            stored = earlier.get(outcome.series_instance_uid)
            whole = (
                outcome
                if stored is None
                else SeriesValidation.from_json(stored).merged_with(outcome)
            )
            update.put(whole.series_instance_uid, whole.to_json())
            wholes.append(whole)

        def report(whole: SeriesValidation) -> None:
            uid = whole.series_instance_uid
            page = render_report_html(whole, details={**details, "modality": modality[uid]})
            for project in run.projects_of(uid):
                store.put_bytes(project, report_key(uid), page.encode(), "text/html; charset=utf-8")

        # Under the series' locks, so that a report is never older than its record.
        with ThreadPoolExecutor(REPORT_WRITERS, thread_name_prefix="reports") as pool:
            list(pool.map(report, wholes))
    return wholes


def _records_so_far(
    platform: Platform, series_uids: Sequence[str], found: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The series' validation records: ``found`` in the platform database, or older ones.

    Earlier versions kept them in the object store (``validation/<uid>.json`` in the admin
    bucket); such a record is read from there for a series whose document shows a
    validation, and moves to the database with the series' next one.
    """
    missing = [uid for uid in series_uids if uid not in found]
    if not missing:
        return found
    records = dict(found)
    documents = platform.index.get_many(ADMIN_PROJECT, missing)
    for uid in missing:
        if not (documents.get(uid) or {}).get("validation"):
            continue
        try:
            records[uid] = json.loads(platform.objects.get_bytes(ADMIN_PROJECT, record_key(uid)))
        except ObjectNotFoundError:
            continue
    return records


def _checked_instances(record: dict[str, Any] | None) -> set[str]:
    """SOP Instance UIDs a validation record holds findings of."""
    instances = (record or {}).get("instances") or []
    return {str(i["sop_instance_uid"]) for i in instances if i.get("sop_instance_uid")}


def _summary(whole: SeriesValidation) -> dict[str, Any]:
    """What the series' documents keep of its validation (see ``build_series_document``)."""
    return {**whole.summary(), "report_key": report_key(whole.series_instance_uid)}


def announce_batch(platform: Platform, batch_id: str) -> IndexSummary:
    """Make a just-closed batch's series searchable at once, before any processing.

    The documents say ``pacs_state: storing`` until :func:`index_series` confirms that the
    PACS holds the batch.
    """
    written = DocumentWriter(platform).write_batch(
        SpooledBatch(platform.spool, batch_id), archived=False
    )
    log.info("batch %s: %d series searchable on arrival", batch_id, len(written))
    return {"indexed": written}


def index_series(
    platform: Platform,
    batch_ids: Batches,
    thumbnails: dict[str, str | None] | None = None,
    validation: dict[str, dict[str, Any]] | None = None,
) -> IndexSummary:
    """Index the series (projects and ``admin``) as the PACS holds them, with their results.

    Runs once the PACS holds the instances and the thumbnails and the first validation lane are
    done: the documents then say ``pacs_state: stored``, with the thumbnails' keys and the
    validation, each series' documents written once.
    """
    run = RunBatches(run_spool(platform, batch_ids), batch_ids)
    written = DocumentWriter(platform).write_batches(
        run.batches, archived=True, thumbnails=thumbnails, validation=validation
    )
    return {"indexed": sorted(written)}


def finish(platform: Platform, batch_ids: Batches) -> FinishSummary:
    """Mark the batches done; remove their instance files unless the background lane needs them.

    It needs those of a batch with an instance the first lane did not check
    (:func:`~dicomflow.pipeline.batch.left_for_the_lane`). The manifests stay for the record.
    """
    spool = run_spool(platform, batch_ids)
    run = RunBatches(spool, batch_ids)
    lane = set(left_for_the_lane(run)) if platform.settings.validation.background else set()
    kept = sum(len(b.entries) for b in run.batches if b.batch_id in lane)
    checked = [b for b in run.batches if b.batch_id not in lane]
    if spool is not platform.spool:
        # A worker's copy from the hand-over: the receiver's dispatcher marks the batches done
        # in its spool once Airflow records this run as succeeded (handover.Settlement).
        return {"removed_files": _remove_files(checked), "kept_for_validation": kept}
    for batch in run.batches:
        # Queued first, then done: a crash between the two leaves files to sweep, never a
        # batch that a re-run cannot read nor one the background lane forgets.
        if batch.batch_id in lane:
            spool.queue_validation(batch.batch_id)
        spool.mark_done(batch.batch_id)
    return {"removed_files": _remove_files(checked), "kept_for_validation": kept}


def _remove_files(batches: Sequence[SpooledBatch]) -> int:
    return sum(batch.remove_instance_files() for batch in batches)
