"""Reading the JSON side files of an import with errors that point at the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dicomflow.nifti.errors import MalformedJsonError, MissingFileError

__all__ = ["JsonDocument", "read_json_object"]


class JsonDocument:
    """A parsed JSON object together with its text, to locate keys for messages.

    Parameters
    ----------
    path : pathlib.Path
        File the object was read from.
    text : str
        The file's text.
    data : dict
        The parsed top-level object.
    """

    def __init__(self, path: Path, text: str, data: dict[str, Any]) -> None:
        self.path = path
        self.text = text
        self.data = data

    def line_of(self, *keys: str) -> int | None:
        """1-based line where the nested key path ``keys`` first appears, if found.

        JSON keeps no positions, so this searches the text for each quoted key
        in turn, starting after the previous one: good enough to point a user
        at the right place, and ``None`` rather than a wrong line when lost.
        """
        pos = 0
        for key in keys:
            found = self.text.find(json.dumps(key), pos)
            if found < 0:
                found = self.text.find(f'"{key}"', pos)
            if found < 0:
                return None
            pos = found + 1
        return self.text.count("\n", 0, pos - 1) + 1 if keys else None


def read_json_object(path: Path) -> JsonDocument:
    """Read a JSON file whose top level must be an object.

    Parameters
    ----------
    path : pathlib.Path
        File to read.

    Returns
    -------
    JsonDocument
        The parsed object with its text.

    Raises
    ------
    MissingFileError
        If the file does not exist.
    MalformedJsonError
        If it is not UTF-8, not JSON (the message gives line and column), or
        its top level is not an object.
    """
    if not path.is_file():
        raise MissingFileError("file not found", path=path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedJsonError(f"not UTF-8 text ({exc.reason})", path=path) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedJsonError(
            f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno
        ) from exc
    if not isinstance(data, dict):
        raise MalformedJsonError(
            f"top level must be a JSON object, found {type(data).__name__}", path=path, line=1
        )
    return JsonDocument(path, text, data)
