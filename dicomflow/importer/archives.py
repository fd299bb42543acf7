"""Safe unpacking of zip archives: no paths outside the archive, bounded size and entry count.

Archives are read entry by entry into scratch files, never extracted by name: an entry's name
is only used in the report, and a name that is absolute or climbs with ``..`` (zip slip)
refuses the whole archive before anything is unpacked. Entry count and declared size are
checked first; the bytes actually written are counted too, since declared sizes can lie.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dicomflow.importer.report import FailureKind

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_COPY_CHUNK = 1 << 20


class ArchiveError(Exception):
    """An archive that cannot be (or must not be) unpacked.

    Attributes
    ----------
    kind
        What is wrong.
    """

    def __init__(self, message: str, kind: FailureKind) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class UnpackBudget:
    """Bounds shared by an archive and the archives nested in it.

    Attributes
    ----------
    max_bytes
        ``uploads.max_unpacked_bytes``.
    max_entries
        ``uploads.max_archive_entries``.
    used_bytes
        Bytes unpacked so far.
    """

    max_bytes: int
    max_entries: int
    used_bytes: int = 0


def is_zip(path: Path) -> bool:
    """Whether the file starts like a zip archive (whatever its name)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in _ZIP_MAGIC
    except OSError:
        return False


def unsafe_member_reason(name: str) -> str | None:
    """Why an entry name must not be trusted (absolute, drive letter, ``..``), or ``None``."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/"):
        return "absolute path"
    if len(normalized) >= 2 and normalized[1] == ":":
        return "drive letter"
    if ".." in PurePosixPath(normalized).parts:
        return "'..' climbs out of the archive"
    if "\x00" in normalized:
        return "NUL byte in the name"
    return None


def unpack_zip(
    path: Path, name: str, scratch: Path, budget: UnpackBudget
) -> Iterator[tuple[Path, str, int]]:
    """Unpack a zip archive one entry at a time.

    Parameters
    ----------
    path
        The archive.
    name
        Its name in reports; entries are named ``<name>!<entry>``.
    scratch
        A directory for the unpacked files (the caller takes each away or deletes it).
    budget
        The size and entry bounds, shared with nested archives.

    Yields
    ------
    tuple
        ``(file, entry name, compressed size)`` per regular entry; the file is removed when
        the caller resumes the generator and it still exists.

    Raises
    ------
    ArchiveError
        When the archive is corrupt, holds an unsafe entry name, or passes a bound; bounds
        and names are checked before the first entry is unpacked.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ArchiveError(
            f"{name}: not a readable zip archive: {exc}", FailureKind.CORRUPT_ARCHIVE
        ) from None
    with archive:
        entries = archive.infolist()
        if len(entries) > budget.max_entries:
            raise ArchiveError(
                f"{name}: {len(entries)} entries, more than uploads.max_archive_entries = "
                f"{budget.max_entries}; refused before unpacking",
                FailureKind.ARCHIVE_TOO_LARGE,
            )
        for entry in entries:
            reason = unsafe_member_reason(entry.filename)
            if reason:
                raise ArchiveError(
                    f"{name}: entry {entry.filename!r}: {reason} (zip slip); archive refused",
                    FailureKind.UNSAFE_ARCHIVE,
                )
        declared = sum(e.file_size for e in entries)
        if budget.used_bytes + declared > budget.max_bytes:
            raise ArchiveError(
                f"{name}: unpacks to {declared} bytes, more than uploads.max_unpacked_bytes = "
                f"{budget.max_bytes}; refused before unpacking",
                FailureKind.ARCHIVE_TOO_LARGE,
            )
        for number, entry in enumerate(entries):
            if entry.is_dir():
                continue
            target = scratch / f"entry-{number:07d}"
            try:
                _copy_entry(archive, entry, target, name, budget)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            try:
                yield target, f"{name}!{entry.filename}", entry.compress_size
            finally:
                target.unlink(missing_ok=True)


def _copy_entry(
    archive: zipfile.ZipFile,
    entry: zipfile.ZipInfo,
    target: Path,
    name: str,
    budget: UnpackBudget,
) -> None:
    try:
        with archive.open(entry) as src, open(target, "wb") as dst:
            while chunk := src.read(_COPY_CHUNK):
                budget.used_bytes += len(chunk)
                if budget.used_bytes > budget.max_bytes:
                    raise ArchiveError(
                        f"{name}: entry {entry.filename!r} passes uploads.max_unpacked_bytes = "
                        f"{budget.max_bytes} (its declared size was {entry.file_size}); "
                        "unpacking stopped",
                        FailureKind.ARCHIVE_TOO_LARGE,
                    )
                dst.write(chunk)
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        # CRC mismatch, truncated data, unknown compression, encryption: all unreadable.
        raise ArchiveError(
            f"{name}: entry {entry.filename!r}: {type(exc).__name__}: {exc}",
            FailureKind.CORRUPT_ARCHIVE,
        ) from None
