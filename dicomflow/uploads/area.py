"""The uploads area of the object store: what users uploaded, per project, until imported.

Layout in the project's bucket::

    uploads/<upload id>/<relative path>     the files, as uploaded (folders kept)
    upload-records/<upload id>.json         who, when, which files were announced

An upload is announced first (:meth:`UploadArea.create`, which checks the limits), then its
files arrive one by one (:meth:`UploadArea.put_file`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from dicomflow.spool.store import new_id, utc_now
from dicomflow.storage.client import ObjectNotFoundError, ObjectStore
from dicomflow.uploads.limits import UploadLimits

__all__ = [
    "InvalidUploadPathError",
    "UnknownUploadError",
    "UploadArea",
    "UploadEntry",
    "UploadRecord",
    "safe_relative_path",
]

UPLOADS_PREFIX = "uploads/"
RECORDS_PREFIX = "upload-records/"
_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{9}-[0-9a-f]{6}$")


class InvalidUploadPathError(ValueError):
    """A file path that is absolute, climbs with ``..`` or is empty."""


class UnknownUploadError(LookupError):
    """No such upload (or file of an upload) in the project's uploads area."""


def safe_relative_path(raw: str) -> str:
    """A browser's relative path as a clean POSIX path, or raise.

    Raises
    ------
    InvalidUploadPathError
        When it is empty, absolute, holds ``..``, control characters or a drive letter.
    """
    normalized = raw.replace("\\", "/").strip()
    parts = [p for p in PurePosixPath(normalized).parts if p not in ("", ".")]
    if (
        not parts
        or normalized.startswith("/")
        or ".." in parts
        or any(ord(c) < 32 for c in normalized)
        or (len(normalized) > 1 and normalized[1] == ":")
    ):
        raise InvalidUploadPathError(
            f"file path {raw!r} must be relative, without '..' or control characters"
        )
    return "/".join(parts)


def check_upload_id(upload_id: str) -> str:
    """Return ``upload_id`` if it has the form of an upload id, else raise UnknownUploadError."""
    if not _ID_RE.match(upload_id):
        raise UnknownUploadError(f"{upload_id!r} is not an upload id")
    return upload_id


@dataclass(frozen=True)
class UploadRecord:
    """An announced upload."""

    id: str
    project: str
    user: str
    created_at: str
    files: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping."""
        return asdict(self)


@dataclass(frozen=True)
class UploadEntry:
    """A file in the uploads area."""

    upload_id: str
    path: str
    size: int
    uploaded_at: str
    user: str

    @property
    def name(self) -> str:
        """``<upload id>/<path>``: how imports and deletions name it."""
        return f"{self.upload_id}/{self.path}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able mapping."""
        return {**asdict(self), "name": self.name}


class UploadArea:
    """Uploads in the object store, per project.

    Parameters
    ----------
    store
        The object store client.
    limits
        The configured limits.
    """

    def __init__(self, store: ObjectStore, limits: UploadLimits) -> None:
        self.store = store
        self.limits = limits

    @staticmethod
    def key(upload_id: str, path: str) -> str:
        """The object key of a file of an upload."""
        return f"{UPLOADS_PREFIX}{upload_id}/{path}"

    def create(self, project: str, user: str, files: Sequence[tuple[str, int]]) -> UploadRecord:
        """Announce an upload of ``(relative path, size)`` files, checking every limit.

        Raises
        ------
        UploadLimitError
            When a limit is passed (nothing is recorded).
        InvalidUploadPathError
            When a path is unsafe.
        """
        self.limits.check_upload(files)
        clean: dict[str, int] = {}
        for path, size in files:
            clean[safe_relative_path(path)] = int(size)
        record = UploadRecord(new_id(), project, user, utc_now(), clean)
        self.store.ensure_bucket(project)
        self.store.put_bytes(
            project,
            f"{RECORDS_PREFIX}{record.id}.json",
            json.dumps(record.as_dict()).encode(),
            "application/json",
        )
        return record

    def record(self, project: str, upload_id: str) -> UploadRecord:
        """An announced upload.

        Raises
        ------
        UnknownUploadError
            When the project has no such upload.
        """
        check_upload_id(upload_id)
        try:
            raw = self.store.get_bytes(project, f"{RECORDS_PREFIX}{upload_id}.json")
        except ObjectNotFoundError:
            raise UnknownUploadError(f"project {project!r} has no upload {upload_id!r}") from None
        return UploadRecord(**json.loads(raw))

    def put_file(self, project: str, upload_id: str, path: str, local: Path) -> str:
        """Store an uploaded file; return its key."""
        key = self.key(upload_id, safe_relative_path(path))
        self.store.put_file(project, key, local)
        return key

    def entries(self, project: str) -> list[UploadEntry]:
        """Every file in the project's uploads area, newest upload first."""
        users: dict[str, str] = {}
        for obj in self.store.list_objects(project, RECORDS_PREFIX):
            upload_id = obj.key[len(RECORDS_PREFIX) :].removesuffix(".json")
            try:
                users[upload_id] = self.record(project, upload_id).user
            except (UnknownUploadError, ValueError):
                users[upload_id] = ""
        found = []
        for obj in self.store.list_objects(project, UPLOADS_PREFIX):
            upload_id, _, path = obj.key[len(UPLOADS_PREFIX) :].partition("/")
            found.append(
                UploadEntry(
                    upload_id, path, obj.size, _iso(obj.last_modified), users.get(upload_id, "")
                )
            )
        found.sort(key=lambda e: (e.upload_id, e.path))
        found.sort(key=lambda e: e.upload_id, reverse=True)
        return found

    def select(self, project: str, names: Sequence[str]) -> list[UploadEntry]:
        """The files named: ``<upload id>`` (all its files) or ``<upload id>/<path>``.

        Raises
        ------
        UnknownUploadError
            When a name matches nothing (the message lists what exists) or none is given.
        """
        entries = self.entries(project)
        if not names:
            raise UnknownUploadError(
                "name the uploaded files to import: upload ids or <upload id>/<path> "
                f"(available in project {project!r}: {_available(entries)})"
            )
        chosen: dict[str, UploadEntry] = {}
        for raw in names:
            name = raw.strip().strip("/")
            matched = [e for e in entries if e.upload_id == name or e.name == name]
            if not matched:
                raise UnknownUploadError(
                    f"nothing named {raw!r} in the uploads area of project {project!r} "
                    f"(available: {_available(entries)})"
                )
            for entry in matched:
                chosen[entry.name] = entry
        return list(chosen.values())

    def download(self, project: str, entry: UploadEntry, folder: Path) -> Path:
        """Copy one uploaded file into ``folder/<upload id>/<path>``; return the local path."""
        target = folder / entry.upload_id / safe_relative_path(entry.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.store.download_file(project, self.key(entry.upload_id, entry.path), target)
        return target

    def delete(self, project: str, names: Sequence[str]) -> list[str]:
        """Delete files (``<upload id>/<path>``) or whole uploads (``<upload id>``).

        Returns
        -------
        list
            The names of the files deleted.
        """
        entries = self.select(project, names)
        self.store.remove(project, [self.key(e.upload_id, e.path) for e in entries])
        remaining = {e.upload_id for e in self.entries(project)}
        gone = {e.upload_id for e in entries} - remaining
        self.store.remove(project, [f"{RECORDS_PREFIX}{u}.json" for u in gone])
        return [e.name for e in entries]


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _available(entries: Sequence[UploadEntry]) -> str:
    ids = sorted({e.upload_id for e in entries}, reverse=True)
    if not ids:
        return "none"
    shown = ", ".join(ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
