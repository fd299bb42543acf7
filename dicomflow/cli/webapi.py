"""The running web service's REST API, as the CLI's quick path for reading commands.

``dicomflow series list`` and ``series show`` are called in loops by scripts. Asked of the web
service, which holds its connections warm, they need only the standard library here: no
database driver, index, PACS or object-store client is loaded by the command. When the web
service does not answer, the commands do the work themselves (slower, same answer).

The command authenticates with the API token of the platform's CLI account
(``dicomflow-cli``, an administrator without a password): the stack generates it into
``<data_dir>/secrets.json`` (``web.cli_token``), where the command reads it, and the web
service registers its hash at its first start. Whoever runs the command on this host can read
that file, and with it the database's own credentials, so the token adds no power: it only lets
the quick path work whatever password the administrators choose. Without the token, or when
the service refuses it (revoked, account disabled), the command does the work itself.
"""

from __future__ import annotations

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
#: Where the CLI's token is kept in secrets.json (see dicomflow.access.bootstrap).
_TOKEN_SECRET = "web.cli_token"
_TOKEN_PREFIX = "dft_"


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


def _token(settings: Settings) -> str | None:
    """The CLI account's token from secrets.json, or ``None``."""
    try:
        stored = json.loads(settings.secrets_file.read_text())
    except (OSError, ValueError):
        return None
    secret = stored.get(_TOKEN_SECRET) if isinstance(stored, dict) else None
    return _TOKEN_PREFIX + secret if isinstance(secret, str) and secret else None


def get_json(settings: Settings, path: str, params: dict[str, Any] | None = None) -> Any:
    """``GET`` a JSON answer of the platform's REST API, as the CLI's service account.

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
        When nothing answers, or the service does not accept the CLI's token (the caller
        then does the work itself).
    WebApiError
        When the service answers with an error.
    """
    token = _token(settings)
    if token is None:
        raise WebServiceAway(f"no CLI token in {settings.secrets_file}")
    query = urllib.parse.urlencode(params or {}, doseq=True)
    url = settings.web.base_url + path + (f"?{query}" if query else "")
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "Authorization": f"Bearer {token}"}
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
        if exc.code in (401, 429):
            raise WebServiceAway(
                f"{settings.web.base_url} refused the CLI's token: {detail}"
            ) from None
        raise WebApiError(exc.code, str(detail), parameter) from None
    except (urllib.error.URLError, OSError) as exc:
        raise WebServiceAway(f"{settings.web.base_url}: {exc}") from None
