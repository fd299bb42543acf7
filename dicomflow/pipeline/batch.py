"""A spooled batch as the pipeline sees it: its record, its files grouped by series."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from dicomflow.config import Settings
from dicomflow.dicom.headers import HeaderScan, SeriesGroup, group_series
from dicomflow.spool.records import BatchRecord, ManifestEntry
from dicomflow.spool.store import Spool

THUMBNAIL_PREFIX = "thumbnails"
REPORT_PREFIX = "validation"


def thumbnail_key(series_uid: str) -> str:
    """Object key of a series' thumbnail (the same in the project and admin buckets)."""
    return f"{THUMBNAIL_PREFIX}/{series_uid}.png"


def report_key(series_uid: str) -> str:
    """Object key of a series' validation report, next to its thumbnail."""
    return f"{REPORT_PREFIX}/{series_uid}.html"


@dataclass
class SpooledBatch:
    """One batch in the spool.

    Parameters
    ----------
    settings
        The platform settings.
    batch_id
        The batch, as in the DAG run's conf.
    """

    settings: Settings
    batch_id: str

    @cached_property
    def spool(self) -> Spool:
        return Spool.from_settings(self.settings)

    @cached_property
    def record(self) -> BatchRecord:
        return self.spool.batch(self.batch_id)

    @cached_property
    def entries(self) -> list[ManifestEntry]:
        return self.spool.manifest(self.batch_id)

    @cached_property
    def directory(self) -> Path:
        return self.spool.batch_path(self.batch_id)

    @cached_property
    def scan(self) -> HeaderScan:
        """Headers only, grouped by series."""
        return group_series(self.directory / e.file for e in self.entries)

    @property
    def series(self) -> list[SeriesGroup]:
        return list(self.scan.series)

    @property
    def projects(self) -> list[str]:
        """Where the batch's series are indexed: its project and ``admin``."""
        return sorted({self.record.project, "admin"})
