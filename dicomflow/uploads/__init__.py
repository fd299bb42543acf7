"""The uploads area: files users upload through the Data Upload page, per project."""

from dicomflow.uploads.area import (
    InvalidUploadPathError,
    UnknownUploadError,
    UploadArea,
    UploadEntry,
    UploadRecord,
    safe_relative_path,
)
from dicomflow.uploads.limits import UploadLimit, UploadLimitError, UploadLimits

__all__ = [
    "InvalidUploadPathError",
    "UnknownUploadError",
    "UploadArea",
    "UploadEntry",
    "UploadLimit",
    "UploadLimitError",
    "UploadLimits",
    "UploadRecord",
    "safe_relative_path",
]
