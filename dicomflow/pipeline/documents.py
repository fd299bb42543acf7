"""The one writer of series documents.

Whatever writes the index (a batch indexed on arrival, the DAG's index and validation steps, a
rebuild) goes through :class:`DocumentWriter`: under a lock per series it records the batch's
part of the series in the platform database (:class:`~dicomflow.db.series.SeriesRecords`),
reads the series' facts back, and stores the documents
:func:`~dicomflow.dicom.document.series_document` computes from them, in ``admin`` and in
every project of the series. Nothing merges documents, so every backend holds what this
module computed, and a document is the same whatever order its batches came in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from dicomflow.db.projects import ADMIN_PROJECT
from dicomflow.db.series import BatchOrigin, SeriesRecords
from dicomflow.db.session import advisory_lock
from dicomflow.dicom.document import dicom_fields, header_fields, series_document
from dicomflow.dicom.headers import SeriesGroup
from dicomflow.dicom.instance import Instance
from dicomflow.pipeline.batch import SpooledBatch
from dicomflow.platform import Platform

__all__ = ["DocumentWriter", "batch_origin"]

log = logging.getLogger(__name__)

#: Series of one batch written at once (each takes two of the engine's pooled connections).
WRITERS = 4

#: Reads the DICOM fields of a series (and notes on values it could not index as typed).
HeaderReader = Callable[[], tuple[dict[str, Any], list[str]]]


def batch_origin(batch: SpooledBatch) -> BatchOrigin:
    """Where a spooled batch's instances went and who sent them."""
    record = batch.record
    return BatchOrigin(
        batch_id=batch.batch_id,
        project=record.project,
        dataset=record.dataset,
        received_at=datetime.fromisoformat(record.created_at),
        calling_ae=record.origin.calling_ae,
        called_ae=record.origin.called_ae,
        sender=record.origin.peer,
    )


class DocumentWriter:
    """Records what series received and writes their documents.

    Parameters
    ----------
    platform
        The process's connections (platform database and index).
    """

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.records = SeriesRecords(platform.engine)

    def write_batch(
        self,
        batch: SpooledBatch,
        *,
        archived: bool,
        thumbnails: Mapping[str, str | None] | None = None,
        validation: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Record a batch's series and write their documents; return the series written.

        Parameters
        ----------
        batch
            The spooled batch.
        archived
            The PACS holds the batch's instances (a document says ``stored`` once every
            batch of its series is).
        thumbnails
            Per series, the thumbnail's object key (a series without one keeps its own).
        validation
            Per series, the validation of the whole series so far (a series without one
            keeps its own).
        """
        origin = batch_origin(batch)

        def write(group: SeriesGroup) -> None:
            uid = group.series_instance_uid
            self.write_series(
                uid,
                read_header=lambda: header_fields(group),
                origin=origin,
                instances=group.instances,
                archived=archived,
                thumbnail_key=(thumbnails or {}).get(uid),
                validation=(validation or {}).get(uid),
            )

        series = batch.series
        if len(series) == 1:
            write(series[0])
        else:
            # Each series under its own lock, side by side: a write is a dozen short database
            # round trips, and a batch of many small series (CR, DX, mammography) spent most
            # of its document time waiting on them one series after another.
            with ThreadPoolExecutor(WRITERS, thread_name_prefix="documents") as pool:
                list(pool.map(write, series))
        return [g.series_instance_uid for g in series]

    def write_series(
        self,
        series_uid: str,
        *,
        read_header: HeaderReader,
        origin: BatchOrigin | None = None,
        instances: Sequence[Instance] = (),
        archived: bool = False,
        thumbnail_key: str | None = None,
        validation: Mapping[str, Any] | None = None,
        fresh_header: bool = False,
    ) -> dict[str, Any]:
        """Record one batch's part of a series (if any) and rewrite the series' documents.

        Parameters
        ----------
        series_uid
            The series.
        read_header
            Gives the DICOM fields from the batch's representative header (its lowest
            Instance Number). Called when no document is stored, when the batch holds the
            series' lowest Instance Number and is written for the first time, or with
            ``fresh_header``: so the document shows the header of the series' first
            instance, whatever order its batches came in.
        origin, instances, archived
            The batch's part of the series to record first; ``None`` records nothing.
        thumbnail_key, validation
            New values; ``None`` keeps the stored ones.
        fresh_header
            Read the header even when a document is stored (a rebuild).

        Returns
        -------
        dict
            The admin document written.

        Raises
        ------
        ValueError
            When nothing is recorded of the series and nothing is to be recorded.
        """
        index = self.platform.index
        with advisory_lock(self.platform.engine, f"series:{series_uid}"):
            stored = index.get(ADMIN_PROJECT, series_uid)
            recorded = self.records.batches(series_uid)
            if stored is not None and not recorded:
                # A document of an older version carries the lists the records now hold.
                self.records.adopt_document(stored)
            # The batch was written before (on arrival; the DAG's steps write it again): if it
            # holds the first instance now it did then, and the stored header is its own.
            # Reading it again cost ~10 ms per series and write, most of a single-instance
            # series' document work.
            again = origin is not None and origin.batch_id in recorded
            if origin is not None:
                self.records.record(series_uid, origin, instances, archived=archived)
            facts = self.records.facts(series_uid)
            if facts is None:
                raise ValueError(f"nothing is recorded of series {series_uid}")
            kept = dicom_fields(stored) if stored is not None else {}
            numbers = [i.instance_number for i in instances if i.instance_number is not None]
            holds_first = bool(numbers) and min(numbers) <= min(facts.instance_numbers)
            if kept and not fresh_header and (again or not holds_first):
                fields, notes = kept, list((stored or {}).get("header_notes") or [])
            else:
                fields, notes = read_header()
            thumbnail = thumbnail_key or (stored or {}).get("thumbnail_key")
            checked = _fuller_validation(validation, (stored or {}).get("validation"))

            def document(project: str | None) -> dict[str, Any]:
                return series_document(
                    fields,
                    facts,
                    project=project,
                    thumbnail_key=thumbnail,
                    validation=checked,
                    notes=notes,
                )

            admin = document(None)
            index.put(ADMIN_PROJECT, [admin])
            for project in facts.projects:
                if project != ADMIN_PROJECT:
                    index.put(project, [document(project)])
        return admin


def _fuller_validation(
    new: Mapping[str, Any] | None, stored: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """Of a step's validation summary and the stored one, the one that covers more instances.

    Each summary is the series' validation record as merged (under the series' validation
    lock) when its run checked its instances, and the record only grows; but the documents
    are written later, under the series' own lock, so two runs' summaries can arrive in the
    other order. With 50 senders splitting series between their batches, three documents
    kept 96 of 100 instances checked although the record held all 100. A tie goes to the new
    one: a resent instance's findings replace its earlier ones in the record.
    """
    if new is None or stored is None:
        return new if new is not None else stored
    if int(stored.get("instances_checked") or 0) > int(new.get("instances_checked") or 0):
        return stored
    return new
