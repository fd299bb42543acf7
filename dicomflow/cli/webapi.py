"""The running web service's REST API, as the CLI's quick path for reading commands.

``dicomflow series list`` and ``series show`` are called in loops by scripts. Asked of the web
service, which holds its connections warm, they need only the standard library here: no
database driver, index, PACS or object-store client is loaded by the command. When the web
service does not answer, the commands do the work themselves (slower, same answer).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicomflow.config import Settings

__all__ = ["WebApiError", "WebServiceAway", "get_json"]

#: Seconds to wait for the web service before doing the work locally.
TIMEOUT = 10.0


class WebServiceAway(Exception):
    """The web service does not answer (not running, or not reachable)."""


class WebApiError(Exception):
    """The web service answered with an error; ``status`` and the detail it gave.

    Attributes
    ----------
    status
        The HTTP status.
    parameter
        The query parameter the answer names, when it names one.
    """

    def __init__(self, status: int, detail: str, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.parameter = parameter


def get_json(settings: Settings, path: str, params: dict[str, Any] | None = None) -> Any:
    """``GET`` a JSON answer of the platform's REST API, logged in as the admin user.

    Parameters
    ----------
    settings
        Where the web service is, and the login.
    path
        E.g. ``/api/series``.
    params
        Query parameters (lists repeat the parameter).

    Raises
    ------
    WebServiceAway
        When nothing answers (the caller then does the work itself).
    WebApiError
        When the service answers with an error.
    """
    query = urllib.parse.urlencode(params or {}, doseq=True)
    url = settings.web.base_url + path + (f"?{query}" if query else "")
    login = f"{settings.admin_user}:{settings.admin_password}".encode()
    request = urllib.request.Request(
        url,
        headers={
            "Accept": "application/json",
            "Authorization": "Basic " + base64.b64encode(login).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        detail = body.get("detail", exc.reason) if isinstance(body, dict) else exc.reason
        parameter = body.get("parameter") if isinstance(body, dict) else None
        raise WebApiError(exc.code, str(detail), parameter) from None
    except (urllib.error.URLError, OSError) as exc:
        raise WebServiceAway(f"{settings.web.base_url}: {exc}") from None
