"""Limits of browser uploads: a refused upload names the limit and its configured value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from dicomflow.config import UploadSettings


class UploadLimit(StrEnum):
    """The configuration key of each limit."""

    MAX_FILE_BYTES = "uploads.max_file_bytes"
    MAX_UPLOAD_BYTES = "uploads.max_upload_bytes"
    MAX_FILES = "uploads.max_files"


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
        super().__init__(
            f"{what}: {actual} is more than the configured limit {limit.value} = {configured}"
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
