"""Deterministic UIDs, so that converting the same input again gives the same UIDs.

Re-running an import must not create duplicates downstream (the platform keys
series, object names and mappings by UID), so every generated UID is a hash of
what identifies the object: the import namespace, the case, the source files'
contents and the object's role.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydicom.uid import UID, generate_uid

__all__ = ["derive_uid", "file_digest"]


def derive_uid(prefix: str, *parts: str) -> UID:
    """UID under ``prefix`` determined by ``parts`` (same parts, same UID).

    Parameters
    ----------
    prefix : str
        Organisation root ending with ``"."``.
    *parts : str
        What identifies the object; order matters.

    Returns
    -------
    pydicom.uid.UID
        A valid UID of at most 64 characters.
    """
    return generate_uid(prefix=prefix, entropy_srcs=["dicomflow.nifti", *parts])


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex (identifies input content for UIDs)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
