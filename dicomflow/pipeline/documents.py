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
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from dicomflow.db.projects import ADMIN_PROJECT
from dicomflow.db.series import BatchOrigin, SeriesRecords
from dicomflow.db.session import advisory_locks
from dicomflow.dicom.document import SeriesFacts, dicom_fields, header_fields, series_document
from dicomflow.dicom.headers import SeriesGroup
from dicomflow.dicom.instance import Instance
from dicomflow.pipeline.batch import SpooledBatch
from dicomflow.platform import Platform

__all__ = ["DocumentWriter", "batch_origin"]

log = logging.getLogger(__name__)

#: Series written under one set of locks. Session advisory locks take slots in PostgreSQL's
#: shared lock table (64 per connection by default): a batch of thousands of single-instance
#: series is written a few hundred at a time.
SERIES_PER_WRITE = 500

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


@dataclass(frozen=True)
class _Part:
    """One series' part of a write: what batches bring of it and the new values.

    ``pieces`` are the batches' instances of the series; ``lead`` (batch id, instances) is the
    piece with the lowest Instance Number (the first when none has one), whose header
    ``read_header`` reads.
    """

    series_uid: str
    read_header: HeaderReader
    pieces: Sequence[tuple[BatchOrigin, Sequence[Instance]]] = ()
    lead: tuple[str | None, Sequence[Instance]] = (None, ())
    thumbnail_key: str | None = None
    validation: Mapping[str, Any] | None = None
    fresh_header: bool = False


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
        """:meth:`write_batches` of one batch."""
        return self.write_batches(
            [batch], archived=archived, thumbnails=thumbnails, validation=validation
        )

    def write_batches(
        self,
        batches: Sequence[SpooledBatch],
        *,
        archived: bool,
        thumbnails: Mapping[str, str | None] | None = None,
        validation: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Record batches' series and write their documents; return the series written.

        Every series once, whatever the number of batches that brought it, and all of them
        together: one statement locks them, their facts are read in three queries and their
        documents written in one request per project. Written one series and one batch at a
        time, a batch of 300 single-instance series (CR, DX, mammography) made 16 database
        statements and two index requests per series, and a run of 14 one-instance batches
        of one series (a sender that opens an association per image) wrote its document 14
        times per step.

        Parameters
        ----------
        batches
            Spooled batches (those of one run).
        archived
            The PACS holds the batches' instances (a document says ``stored`` once every
            batch of its series is).
        thumbnails
            Per series, the thumbnail's object key (a series without one keeps its own).
        validation
            Per series, the validation of the whole series so far (a series without one
            keeps its own).
        """
        pieces: dict[str, list[tuple[BatchOrigin, SeriesGroup]]] = {}
        for batch in batches:
            origin = batch_origin(batch)
            for group in batch.series:
                pieces.setdefault(group.series_instance_uid, []).append((origin, group))
        parts = []
        for uid, brought in pieces.items():
            lead_origin, lead_group = min(
                brought, key=lambda piece: _lowest_number(piece[1].instances)
            )
            parts.append(
                _Part(
                    uid,
                    partial(header_fields, lead_group),
                    [(origin, group.instances) for origin, group in brought],
                    (lead_origin.batch_id, lead_group.instances),
                    (thumbnails or {}).get(uid),
                    (validation or {}).get(uid),
                )
            )
        for start in range(0, len(parts), SERIES_PER_WRITE):
            self._write(parts[start : start + SERIES_PER_WRITE], archived)
        return list(pieces)

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
        part = _Part(
            series_uid,
            read_header,
            [(origin, instances)] if origin is not None else [],
            (origin.batch_id if origin is not None else None, instances),
            thumbnail_key,
            validation,
            fresh_header,
        )
        return self._write([part], archived)[series_uid]

    def _write(self, parts: Sequence[_Part], archived: bool) -> dict[str, dict[str, Any]]:
        """Record the parts' pieces, then compute and store their documents.

        Returns the admin documents by series.
        """
        index = self.platform.index
        uids = [part.series_uid for part in parts]
        by_batch: dict[str, tuple[BatchOrigin, dict[str, Sequence[Instance]]]] = {}
        for part in parts:
            for origin, instances in part.pieces:
                by_batch.setdefault(origin.batch_id, (origin, {}))[1][part.series_uid] = instances
        with advisory_locks(self.platform.engine, [f"series:{uid}" for uid in uids]):
            stored = index.get_many(ADMIN_PROJECT, uids)
            recorded = self.records.batches_of(uids)
            for uid, document in stored.items():
                if uid not in recorded:
                    # A document of an older version carries the lists the records now hold.
                    self.records.adopt_document(document)
            for origin, brought in by_batch.values():
                self.records.record_many(origin, brought, archived=archived)
            facts = self.records.facts_of(uids)
            admins: dict[str, dict[str, Any]] = {}
            by_project: dict[str, list[dict[str, Any]]] = {}
            for part in parts:
                uid = part.series_uid
                if uid not in facts:
                    raise ValueError(f"nothing is recorded of series {uid}")
                # The lead batch was written before (on arrival; the DAG's steps write it
                # again): if it holds the first instance now it did then, and the stored
                # header is its own. Reading it again cost ~10 ms per series and write.
                again = part.lead[0] is not None and part.lead[0] in recorded.get(uid, ())
                written = _documents(part, facts[uid], stored.get(uid), again)
                admins[uid] = written.pop(ADMIN_PROJECT)
                for project, document in written.items():
                    by_project.setdefault(project, []).append(document)
            index.put(ADMIN_PROJECT, list(admins.values()))
            for project, documents in by_project.items():
                index.put(project, documents)
        return admins


def _lowest_number(instances: Sequence[Instance]) -> float:
    """The lowest Instance Number of ``instances`` (infinity when none has one)."""
    numbers = [i.instance_number for i in instances if i.instance_number is not None]
    return min(numbers, default=math.inf)


def _documents(
    part: _Part, facts: SeriesFacts, stored: Mapping[str, Any] | None, again: bool
) -> dict[str, dict[str, Any]]:
    """The series' documents by project (``admin`` too), from its facts and the new values."""
    kept = dicom_fields(stored) if stored is not None else {}
    lowest = _lowest_number(part.lead[1])
    holds_first = lowest < math.inf and lowest <= min(facts.instance_numbers)
    if kept and not part.fresh_header and (again or not holds_first):
        fields, notes = kept, list((stored or {}).get("header_notes") or [])
    else:
        fields, notes = part.read_header()
    thumbnail = part.thumbnail_key or (stored or {}).get("thumbnail_key")
    checked = _fuller_validation(part.validation, (stored or {}).get("validation"))
    return {
        project: series_document(
            fields,
            facts,
            project=None if project == ADMIN_PROJECT else project,
            thumbnail_key=thumbnail,
            validation=checked,
            notes=notes,
        )
        for project in (ADMIN_PROJECT, *(p for p in facts.projects if p != ADMIN_PROJECT))
    }


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
