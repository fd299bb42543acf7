"""Checks of DICOM unique identifiers (PS3.5 section 9.1)."""

from __future__ import annotations

import re

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
MAX_UID_LENGTH = 64


def uid_problem(value: object, keyword: str) -> str | None:
    """Say what is wrong with a UID value, or return ``None`` when it is valid.

    Parameters
    ----------
    value
        The element value as read by pydicom (``None`` when the element is absent).
    keyword
        The element keyword, used in the message, e.g. ``"SeriesInstanceUID"``.

    Returns
    -------
    str or None
        A sentence naming the element and the problem, fit for a C-STORE Error Comment.
    """
    if value is None:
        return f"{keyword} is missing"
    text = str(value).rstrip("\x00 ")
    if not text:
        return f"{keyword} is empty"
    if len(text) > MAX_UID_LENGTH:
        return f"{keyword} is {len(text)} characters long (at most {MAX_UID_LENGTH})"
    if not _UID_RE.match(text):
        return f"{keyword} {text!r} is not a valid UID (digits and dots, no leading zeros)"
    return None
