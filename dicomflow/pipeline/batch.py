"""A spooled batch as the pipeline sees it: its record, its files grouped by series."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from dicomflow.config import Settings
from dicomflow.dicom.headers import HeaderScan, SeriesGroup, group_instances, group_series
from dicomflow.dicom.instance import Instance
from dicomflow.spool.records import BatchRecord
from dicomflow.spool.store import Spool
from dicomflow.validation.series import representative_instances

log = logging.getLogger(__name__)

#: The batch's headers grouped by series, for manifests without grouping facts.
SCAN_FILE = "series.json"


def scan_from_manifest(entries: Sequence[Instance]) -> HeaderScan | None:
    """Group a batch by series from its manifest alone, without reading a file.

    Returns
    -------
    HeaderScan or None
        ``None`` when an entry lacks the grouping facts (written by an older version, or a
        header the door could not judge): then the files must be read.
    """
    if any(e.number_of_frames is None for e in entries):
        return None
    return group_instances(entries)


@dataclass
class SpooledBatch:
    """One batch in the spool.

    Parameters
    ----------
    spool
        The spool that holds it.
    batch_id
        The batch, as in the DAG run's conf.
    """

    spool: Spool
    batch_id: str

    @classmethod
    def from_settings(cls, settings: Settings, batch_id: str) -> SpooledBatch:
        """The batch ``batch_id`` in the spool of ``settings``."""
        return cls(Spool.from_settings(settings), batch_id)

    @cached_property
    def record(self) -> BatchRecord:
        return self.spool.batch(self.batch_id)

    @cached_property
    def entries(self) -> list[Instance]:
        return self.spool.manifest(self.batch_id)

    @cached_property
    def directory(self) -> Path:
        return self.spool.batch_path(self.batch_id)

    @property
    def scan_path(self) -> Path:
        """Where :meth:`save_scan` keeps the grouped headers, next to the manifest."""
        return self.directory / SCAN_FILE

    @cached_property
    def scan(self) -> HeaderScan:
        """Headers only, grouped by series.

        From the manifest, where the doors record what grouping needs on arrival; for a batch
        whose manifest predates that, from the headers (read once, then kept next to it).
        """
        scan = scan_from_manifest(self.entries)
        if scan is not None:
            return scan
        try:
            return HeaderScan.from_json(json.loads(self.scan_path.read_text()), self.directory)
        except FileNotFoundError:
            pass
        except ValueError as exc:
            log.warning("batch %s: %s is unusable (%s)", self.batch_id, self.scan_path, exc)
        scan = group_series(e.path for e in self.entries)
        # A unique temporary name: two steps may save the same batch at once. No fsync: a
        # lost copy is only read again.
        fd, tmp = tempfile.mkstemp(prefix=".series-", dir=self.directory)
        with os.fdopen(fd, "w") as fh:
            json.dump(scan.to_json(self.directory), fh)
        os.replace(tmp, self.scan_path)
        return scan

    @property
    def series(self) -> list[SeriesGroup]:
        return list(self.scan.series)

    @property
    def projects(self) -> list[str]:
        """Where the batch's series are indexed: its project and ``admin``."""
        return sorted({self.record.project, "admin"})

    def remove_instance_files(self) -> int:
        """Remove the instance files still there (the manifest stays); return how many."""
        removed = 0
        for entry in self.entries:
            if entry.path.exists():
                entry.path.unlink()
                removed += 1
        return removed


class RunBatches:
    """The batches one DAG run processes together, and their series across batches.

    The dispatcher hands every batch that closed in the last moment to one run (many senders
    at once, or one sender's stream of small associations), so that the run's fixed costs are
    paid once. A series sent in two of them is one series here: stored, thumbnailed and
    validated once; each batch is still recorded, mapped and finished on its own.

    Parameters
    ----------
    spool
        The spool that holds them.
    batch_ids
        The batches, as in the run's conf (one or more).
    """

    def __init__(self, spool: Spool, batch_ids: Sequence[str] | str) -> None:
        ids = [batch_ids] if isinstance(batch_ids, str) else list(batch_ids)
        if not ids:
            raise ValueError("a run needs at least one batch")
        self.spool = spool
        self.batch_ids = list(dict.fromkeys(ids))

    @cached_property
    def batches(self) -> list[SpooledBatch]:
        """The spooled batches, in the run's order."""
        return [SpooledBatch(self.spool, batch_id) for batch_id in self.batch_ids]

    @cached_property
    def scan(self) -> HeaderScan:
        """Every batch's instances grouped by series (an instance in two batches, once)."""
        merged = group_instances(i for b in self.batches for g in b.series for i in g.instances)
        merged.rejected = [r for b in self.batches for r in b.scan.rejected] + [
            r for r in merged.rejected if r.duplicate_of is None
        ]
        return merged

    @property
    def series(self) -> list[SeriesGroup]:
        """The series of the run."""
        return list(self.scan.series)

    @cached_property
    def _projects_by_series(self) -> dict[str, list[str]]:
        found: dict[str, set[str]] = {}
        for batch in self.batches:
            for group in batch.series:
                found.setdefault(group.series_instance_uid, set()).update(batch.projects)
        return {uid: sorted(projects) for uid, projects in found.items()}

    def projects_of(self, series_uid: str) -> list[str]:
        """Where a series' objects go: the projects of the batches that hold it, and admin."""
        return self._projects_by_series.get(series_uid, ["admin"])

    @property
    def projects(self) -> list[str]:
        """Every project of the run's batches, and admin."""
        return sorted({p for b in self.batches for p in b.projects})

    def batch_of(self, instance: Instance) -> SpooledBatch:
        """The batch an instance file is in."""
        name = instance.path.parent.name
        return next((b for b in self.batches if b.batch_id == name), self.batches[0])


def left_for_the_lane(run: RunBatches) -> list[str]:
    """The run's batches that hold an instance the first validation lane did not check.

    The first lane checks each series' representative set, chosen from the series as the run
    groups it (:func:`~dicomflow.validation.series.representative_instances`). A batch whose
    every instance was among them (series of up to three instances: CR, DX, mammography,
    most SR and SEG) has nothing left for the background lane, and needs no run of it.
    """
    checked = {i.sop_instance_uid for g in run.series for i in representative_instances(g)}
    return [
        batch.batch_id
        for batch in run.batches
        if any(i.sop_instance_uid not in checked for g in batch.series for i in g.instances)
    ]
