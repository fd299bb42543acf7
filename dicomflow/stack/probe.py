"""Health probes over HTTP with the standard library.

``dicomflow status`` asks every component at once and is called in scripts' loops; an HTTP
client library would cost more to import than the probes take.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any


def http_get(
    url: str, *, timeout: float = 2.0, auth: tuple[str, str] | None = None
) -> tuple[int, bytes] | None:
    """GET ``url``; its status and body, or ``None`` when nothing answered in time.

    Parameters
    ----------
    url
        An ``http://`` or ``https://`` URL.
    timeout
        Seconds to connect and to wait for the answer.
    auth
        User and password for basic authentication.
    """
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        # URLError, refused or reset connections, timeouts, a malformed status line.
        return None


def answers_ok(url: str, *, timeout: float = 2.0, auth: tuple[str, str] | None = None) -> bool:
    """Whether ``url`` answers 200."""
    got = http_get(url, timeout=timeout, auth=auth)
    return got is not None and got[0] == 200


def get_json(url: str, *, timeout: float = 2.0) -> Any | None:
    """The JSON body of a 200 answer from ``url``; ``None`` for anything else."""
    got = http_get(url, timeout=timeout)
    if got is None or got[0] != 200:
        return None
    try:
        return json.loads(got[1])
    except ValueError:
        return None
