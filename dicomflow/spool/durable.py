"""Durable file operations: data and names survive a crash once these return.

A file is written under a temporary name in its final directory, flushed with ``fsync``,
renamed and the directory flushed, so a reader sees either nothing or the whole file. Batch
instance files, which count only once they are durable with their SHA-256 (in the manifest, or
beside the file), take a shorter way (:func:`adopt_file`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"
#: The extended attribute that keeps an adopted file's SHA-256 (32 bytes) with the file.
SHA256_XATTR = "user.dicomflow.sha256"
_COPY_CHUNK = 1 << 20
# Extended attributes: Linux (``os.setxattr``); elsewhere the hash is not kept with the file.
_HAS_XATTRS = hasattr(os, "setxattr") and hasattr(os, "getxattr")


def fsync_dir(path: Path) -> None:
    """Flush a directory so the names created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush the data of a file written by someone else (e.g. pynetdicom's temporary file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path) -> None:
    """Create a directory and make its name durable in the parent."""
    path.mkdir(parents=True, exist_ok=False)
    fsync_dir(path.parent)


def touch(path: Path) -> None:
    """Create an empty marker file and make its name durable (nothing if it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    fsync_dir(path.parent)


def remove(path: Path) -> None:
    """Remove a file, if it is there, and make its absence durable."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    tmp = path.with_name(TMP_PREFIX + path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json(path: Path, value: Any) -> None:
    """Write a JSON document atomically and durably."""
    write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def place_file(source: Path, path: Path, *, move: bool) -> None:
    """Put the file ``source`` at ``path`` atomically and durably.

    Parameters
    ----------
    source
        The complete file.
    path
        Its final name; a temporary name in the same directory is used on the way.
    move
        Take ``source`` away (a rename when on the same file system, else a copy and an
        unlink); when false, ``source`` is left untouched.
    """
    tmp = path.with_name(TMP_PREFIX + path.name)
    renamed = _move_or_copy(source, tmp, move=move)
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    if move and not renamed:
        source.unlink(missing_ok=True)


def _move_or_copy(source: Path, target: Path, *, move: bool) -> bool:
    """Rename ``source`` to ``target`` when moving within one file system, else copy it.

    Returns whether it was renamed (a copy leaves ``source`` for the caller to remove).
    """
    if move:
        try:
            os.replace(source, target)
            return True
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
    with open(source, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, _COPY_CHUNK)
    return False


def adopt_file(
    source: Path, path: Path, *, move: bool, sha256: Callable[[], bytes | None] | None = None
) -> bool:
    """Put the file ``source`` at ``path`` and flush it, under its final name at once.

    Only for a directory whose files count once they are recorded (a batch): until then a
    crash may leave the file partial or missing, and recovery removes every file it cannot
    vouch for, so the temporary name of :func:`place_file` (a second rename) is not needed.

    ``sha256`` gives the file's hash after the rename (a writer hashing in the background
    finishes meanwhile), and the hash is set as the file's :data:`SHA256_XATTR` before the
    flush, so the one flush makes the data and its hash durable together: that is the file's
    record, which recovery checks (:func:`recorded_sha256`) and from which it rebuilds a lost
    manifest line. Without a hash, or where the file system keeps no user extended
    attributes, the caller must record the file durably itself (a flushed manifest line).

    The directory is not flushed: on the journaling file systems the spool is meant for
    (ext4, XFS, btrfs) the flush of a renamed file also makes its new name durable (ext4 and
    XFS commit the journal up to the rename, btrfs logs the new name with the inode); ext4
    without a journal flushes the directory a new file is in at the file's first flush. A
    directory flush here cost one more device cache flush per instance (~15-20 % of the
    small-instance receive rate).

    Parameters
    ----------
    source
        The complete file.
    path
        Its final name.
    move
        Take ``source`` away (a rename when on the same file system, else a copy and an
        unlink); when false, ``source`` is left untouched.
    sha256
        Called once the file is under its final name: its SHA-256 (32 bytes) to keep with
        it, or ``None``.

    Returns
    -------
    bool
        Whether ``sha256`` is kept with the file (false when not given or not supported).

    Raises
    ------
    OSError
        When the disk refuses; a moved ``source`` is then put back where it was (best
        effort), so the caller can still keep it elsewhere. An error of ``sha256`` is
        raised after the same undoing.
    """
    renamed = False
    try:
        renamed = _move_or_copy(source, path, move=move)
        digest = sha256() if sha256 is not None else None
        kept = digest is not None and _keep_sha256(path, digest)
        fsync_file(path)
    except BaseException:
        with contextlib.suppress(OSError):
            if renamed:
                os.replace(path, source)
            else:
                path.unlink(missing_ok=True)
        raise
    if move and not renamed:
        source.unlink(missing_ok=True)
    return kept


def _keep_sha256(path: Path, sha256: bytes) -> bool:
    if not _HAS_XATTRS:
        return False
    try:
        os.setxattr(path, SHA256_XATTR, sha256)
    except OSError as exc:
        if exc.errno == errno.ENOTSUP:  # the same number as EOPNOTSUPP on Linux
            return False
        raise
    return True


def recorded_sha256(path: Path) -> bytes | None:
    """The SHA-256 :func:`adopt_file` kept with a file, if any."""
    if not _HAS_XATTRS:
        return None
    try:
        value = os.getxattr(path, SHA256_XATTR)
    except OSError as exc:
        # None only when there is no such attribute: on any other error (a failing disk)
        # recovery must stop rather than remove a file it could not read.
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise
    return value if len(value) == 32 else None


def give_back(path: Path, source: Path, *, move: bool) -> None:
    """Undo a successful :func:`adopt_file` (best effort), e.g. when recording it failed.

    A moved file goes back to ``source``, so the caller can still keep it elsewhere; a copy
    is removed. Either way no file the manifest lacks is left under a name the next
    instance will take.
    """
    with contextlib.suppress(OSError):
        if not move or not _move_or_copy(path, source, move=True):
            path.unlink(missing_ok=True)


class DurableLog:
    """An append-only file of JSON lines; :meth:`append` returns once the line is durable.

    Or, with ``flush=False``, once it is written: :meth:`flush` then makes it durable.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # The length of the complete lines: this object is the file's only writer.
        self._length = os.fstat(self._fd).st_size

    def append(self, record: dict[str, Any], *, flush: bool = True) -> None:
        """Append one record as a line and flush it (unless ``flush`` is false).

        Raises
        ------
        OSError
            When the line could not be written whole or flushed (e.g. a full disk). It is
            then cut off again (best effort), so a reader never counts it and the next line
            does not follow a torn one.
        """
        line = json_line(record)
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"only {written} of {len(line)} bytes written")
            if flush:
                os.fdatasync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._length)
            raise
        self._length += len(line)

    def flush(self) -> None:
        """Make every line appended so far durable."""
        os.fdatasync(self._fd)

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def json_line(record: dict[str, Any]) -> bytes:
    """One record as a line of a JSON-lines file."""
    return (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()


def read_json_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Read the complete lines of a JSON-lines file.

    Returns
    -------
    tuple
        The records and the byte length of the complete lines; a torn last line (a crash
        in the middle of an append) is not returned.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    records: list[dict[str, Any]] = []
    good = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            records.append(json.loads(line))
        except ValueError:
            break
        good += len(line)
    return records, good
