"""Each series' validation findings so far, merged over both lanes and every batch.

The validation steps read a series' record, merge what they checked into it and write it
back, with the series' HTML report, while no other run does the same for that series: one
transaction holds the series' advisory locks from the read until the report is written, so
two batches of one series checked at once both end up in it. The records are JSON documents
(:meth:`dicomflow.validation.series.SeriesValidation.to_json`); this module does not read
them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from dicomflow.db.models import SeriesValidationRecord
from dicomflow.db.session import transaction_locks

__all__ = ["RecordUpdate", "ValidationRecords"]

# Rows per INSERT statement.
_CHUNK = 500


def lock_key(series_uid: str) -> str:
    """The advisory lock of a series' validation record."""
    return f"validation:{series_uid}"


@dataclass
class RecordUpdate:
    """The records read under the locks of :meth:`ValidationRecords.updating`, and the new ones.

    Attributes
    ----------
    found
        The stored record of each series that has one.
    written
        What :meth:`put` was given, written when the ``with`` block ends without an error.
    """

    found: dict[str, dict[str, Any]]
    written: dict[str, dict[str, Any]] = field(default_factory=dict)

    def put(self, series_uid: str, record: dict[str, Any]) -> None:
        """Keep ``record`` as the series' record."""
        self.written[series_uid] = record


class ValidationRecords:
    """The validation records of every series, in the platform database.

    Parameters
    ----------
    engine
        An engine on the platform database.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get_many(self, series_uids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The records of those series that have one."""
        with self._engine.connect() as conn:
            return _read(conn, series_uids)

    @contextmanager
    def updating(self, series_uids: Collection[str]) -> Iterator[RecordUpdate]:
        """Read the series' records under their locks; write the new ones at the end.

        The locks are held, and nothing is written, until the block ends: what the block
        writes elsewhere from the records (the reports) is written in the same order as the
        records. An error in the block writes nothing.
        """
        uids = sorted(set(series_uids))
        with self._engine.begin() as conn:
            transaction_locks(conn, [lock_key(uid) for uid in uids])
            update = RecordUpdate(_read(conn, uids))
            yield update
            now = datetime.now(UTC)
            rows = [
                {"series_uid": uid, "record": json.dumps(record), "updated_at": now}
                for uid, record in update.written.items()
            ]
            for start in range(0, len(rows), _CHUNK):
                stmt = insert(SeriesValidationRecord).values(rows[start : start + _CHUNK])
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["series_uid"],
                        set_={"record": stmt.excluded.record, "updated_at": now},
                    )
                )

    def forget(self, series_uid: str) -> None:
        """Drop a series' record (the series was deleted: a resend starts a new one)."""
        table = SeriesValidationRecord
        with self._engine.begin() as conn:
            conn.execute(delete(table).where(table.series_uid == series_uid))


def _read(conn: Connection, series_uids: Collection[str]) -> dict[str, dict[str, Any]]:
    if not series_uids:
        return {}
    rows = conn.execute(
        select(SeriesValidationRecord.series_uid, SeriesValidationRecord.record).where(
            SeriesValidationRecord.series_uid.in_(list(series_uids))
        )
    )
    return {uid: json.loads(record) for uid, record in rows}
