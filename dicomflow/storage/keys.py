"""Object keys of what the platform keeps per series, the same in every project's bucket.

Derived from the Series Instance UID alone, so a re-run writes the same objects again
instead of new ones, and anyone holding a series UID can find its objects.
"""

from __future__ import annotations

__all__ = ["record_key", "report_key", "thumbnail_key"]

THUMBNAIL_PREFIX = "thumbnails"
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
