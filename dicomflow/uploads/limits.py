"""Limits of browser uploads: a refused upload names the limit and its configured value.

Sizes are shown in the unit the setting uses: the configuration holds bytes, usually a whole
number of binary units (``107374182400`` is 100 GiB), so :func:`format_bytes` writes it that way,
never as a rounded decimal ("107.4 GB") that matches no value a user configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from dicomflow.config import UploadSettings

#: Binary units, largest first: a size is written in the largest one it is a multiple of.
_BINARY_UNITS: tuple[tuple[str, int], ...] = (
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
)


def _unit_of(size: int) -> tuple[str, int] | None:
    """The largest binary unit ``size`` is a whole (non-zero) multiple of."""
    for unit, factor in _BINARY_UNITS:
        if size >= factor and size % factor == 0:
            return unit, factor
    return None


def format_bytes(size: int) -> str:
    """A byte count exactly: in binary units when it is a multiple of one, else in bytes.

    >>> format_bytes(107374182400)
    '100 GiB'
    >>> format_bytes(1536 * 1024)
    '1536 KiB'
    >>> format_bytes(1000)
    '1000 bytes'
    """
    unit = _unit_of(size)
    if unit is not None:
        return f"{size // unit[1]} {unit[0]}"
    return "1 byte" if size == 1 else f"{size} bytes"


def format_bytes_like(size: int, limit: int) -> str:
    """``size`` exactly, and about in the unit of ``limit`` when it needs bytes of its own.

    So an upload's size reads next to the limit it passed: ``128849018881 bytes (about
    120.0 GiB)`` against 100 GiB.
    """
    exact = format_bytes(size)
    unit = _unit_of(limit)
    if unit is None or _unit_of(size) is not None:
        return exact
    return f"{exact} (about {size / unit[1]:.1f} {unit[0]})"


class UploadLimit(StrEnum):
    """The configuration key of each limit."""

    MAX_FILE_BYTES = "uploads.max_file_bytes"
    MAX_UPLOAD_BYTES = "uploads.max_upload_bytes"
    MAX_FILES = "uploads.max_files"

    def show(self, value: int) -> str:
        """A configured value in the limit's unit (bytes or a number of files)."""
        return str(value) if self is UploadLimit.MAX_FILES else format_bytes(value)


class UploadLimitError(ValueError):
    """An upload over a configured limit.

    Attributes
    ----------
    limit
        Which limit.
    configured
        Its configured value.
    actual
        What the upload asked for.
    """

    def __init__(self, limit: UploadLimit, configured: int, actual: int, what: str) -> None:
        shown = (
            str(actual) if limit is UploadLimit.MAX_FILES else format_bytes_like(actual, configured)
        )
        super().__init__(
            f"{what}: {shown} is more than the configured limit {limit.value} = "
            f"{limit.show(configured)}"
        )
        self.limit = limit
        self.configured = configured
        self.actual = actual

    def as_dict(self) -> dict[str, object]:
        """A JSON-able description for the page."""
        return {
            "detail": str(self),
            "limit": self.limit.value,
            "configured": self.configured,
            "actual": self.actual,
        }


@dataclass(frozen=True)
class UploadLimits:
    """The limits in force (from ``settings.uploads``)."""

    max_file_bytes: int
    max_upload_bytes: int
    max_files: int

    @classmethod
    def from_settings(cls, uploads: UploadSettings) -> UploadLimits:
        """The configured limits."""
        return cls(uploads.max_file_bytes, uploads.max_upload_bytes, uploads.max_files)

    def labels(self) -> dict[str, str]:
        """Each limit as a page shows it (``"100 GiB"``), by its name here."""
        return {
            "max_file_bytes": UploadLimit.MAX_FILE_BYTES.show(self.max_file_bytes),
            "max_upload_bytes": UploadLimit.MAX_UPLOAD_BYTES.show(self.max_upload_bytes),
            "max_files": UploadLimit.MAX_FILES.show(self.max_files),
        }

    def check_file(self, name: str, size: int) -> None:
        """Refuse one file over ``max_file_bytes``."""
        if size > self.max_file_bytes:
            raise UploadLimitError(
                UploadLimit.MAX_FILE_BYTES, self.max_file_bytes, size, f"file {name!r} size"
            )

    def check_upload(self, files: Sequence[tuple[str, int]]) -> None:
        """Refuse an upload (``(name, size)`` per file) over any limit.

        Raises
        ------
        UploadLimitError
            Naming the first limit passed.
        """
        if len(files) > self.max_files:
            raise UploadLimitError(
                UploadLimit.MAX_FILES, self.max_files, len(files), "number of files"
            )
        for name, size in files:
            self.check_file(name, size)
        total = sum(size for _, size in files)
        if total > self.max_upload_bytes:
            raise UploadLimitError(
                UploadLimit.MAX_UPLOAD_BYTES, self.max_upload_bytes, total, "total size"
            )
