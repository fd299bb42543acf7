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
from dicomflow.dicom.headers import (
    HeaderScan,
    InstanceInfo,
    SeriesGroup,
    group_instances,
    group_series,
)
from dicomflow.spool.records import BatchRecord, ManifestEntry
from dicomflow.spool.store import Spool

log = logging.getLogger(__name__)

THUMBNAIL_PREFIX = "thumbnails"
#: The batch's headers grouped by series, for manifests without grouping facts.
SCAN_FILE = "series.json"
REPORT_PREFIX = "validation"


def thumbnail_key(series_uid: str) -> str:
    """Object key of a series' thumbnail (the same in the project and admin buckets)."""
    return f"{THUMBNAIL_PREFIX}/{series_uid}.png"


def report_key(series_uid: str) -> str:
    """Object key of a series' validation report, next to its thumbnail."""
    return f"{REPORT_PREFIX}/{series_uid}.html"


def record_key(series_uid: str) -> str:
    """Object key of a series' validation findings (JSON), merged batch by batch."""
    return f"{REPORT_PREFIX}/{series_uid}.json"


def scan_from_manifest(entries: Sequence[ManifestEntry], directory: Path) -> HeaderScan | None:
    """Group a batch by series from its manifest alone, without reading a file.

    Returns
    -------
    HeaderScan or None
        ``None`` when an entry lacks the grouping facts (written by an older version, or a
        header the door could not judge): then the files must be read.
    """
    items = []
    for e in entries:
        if e.number_of_frames is None:
            return None
        info = InstanceInfo(
            sop_instance_uid=e.sop_instance_uid,
            instance_number=e.instance_number,
            path=directory / e.file,
            size=e.size,
            sop_class_uid=e.sop_class_uid,
            number_of_frames=e.number_of_frames,
            image_position=_triple(e.image_position),
            image_orientation=_sextuple(e.image_orientation),
        )
        items.append((info, e.series_instance_uid, e.study_instance_uid, e.modality))
    return group_instances(items)


def _triple(values: Sequence[float] | None) -> tuple[float, float, float] | None:
    return (values[0], values[1], values[2]) if values and len(values) == 3 else None


def _sextuple(
    values: Sequence[float] | None,
) -> tuple[float, float, float, float, float, float] | None:
    if not values or len(values) != 6:
        return None
    return (values[0], values[1], values[2], values[3], values[4], values[5])


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
    def entries(self) -> list[ManifestEntry]:
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
        scan = scan_from_manifest(self.entries, self.directory)
        if scan is not None:
            return scan
        try:
            return HeaderScan.from_json(json.loads(self.scan_path.read_text()), self.directory)
        except FileNotFoundError:
            pass
        except ValueError as exc:
            log.warning("batch %s: %s is unusable (%s)", self.batch_id, self.scan_path, exc)
        scan = group_series(self.directory / e.file for e in self.entries)
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
