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
