"""The one client of the PACS: DICOMweb STOW-RS, QIDO-RS and WADO-RS over HTTP."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dicomflow.config import Settings

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
# Ask for instances as stored, whatever their transfer syntax: no transcoding on the way out.
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_REFERENCED_SOP_SEQUENCE = "00081199"
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_SOP_INSTANCE_UID = "00080018"
_STUDY_INSTANCE_UID = "0020000D"


class PacsError(RuntimeError):
    """The PACS answered with an error."""


class PacsUnavailableError(PacsError):
    """The PACS could not be reached (after retries)."""


@dataclass
class StoreResult:
    """What a STOW-RS exchange did with each instance, by SOP Instance UID."""

    stored: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)

    def merge(self, other: StoreResult) -> None:
        """Add another request's outcome."""
        self.stored |= other.stored
        for uid, reason in other.failed.items():
            if uid not in self.stored:
                self.failed[uid] = reason
        for uid in other.stored:
            self.failed.pop(uid, None)


def _tag_values(item: dict[str, Any], tag: str) -> list[Any]:
    return list(item.get(tag, {}).get("Value", []))


def study_uid_of(record: dict[str, Any]) -> str | None:
    """The Study Instance UID of a QIDO-RS record, if it has one."""
    values = _tag_values(record, _STUDY_INSTANCE_UID)
    return str(values[0]) if values else None


def parse_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The parts of a ``multipart/related`` body, headers stripped."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise PacsError(f"multipart response without a boundary: {content_type!r}")
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        _head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        # Each part ends with the CRLF that precedes the next delimiter.
        parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


class DicomWebClient:
    """A DICOMweb PACS (Orthanc locally; dcm4chee, cloud DICOM stores in production).

    Parameters
    ----------
    base_url
        The DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.
    username, password
        HTTP basic credentials (empty user name: none).
    timeout
        Seconds for one HTTP exchange.
    attempts
        Tries of a request that fails for the network or a 5xx answer, with backoff between.
    """

    def __init__(
        self,
        base_url: str,
        username: str = "",
        password: str = "",
        *,
        timeout: float = 120.0,
        attempts: int = 3,
        backoff: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._attempts = attempts
        self._backoff = backoff
        self._http = httpx.Client(
            auth=(username, password) if username else None,
            timeout=timeout,
            limits=httpx.Limits(max_connections=8),
        )

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> DicomWebClient:
        """The PACS the settings describe (``options``: ``timeout``, ``attempts``, ``backoff``)."""
        pacs = settings.pacs
        return cls(pacs.base_url, pacs.username, pacs.password, **options)

    def close(self) -> None:
        """Release the connections."""
        self._http.close()

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        body: Callable[[], Iterator[bytes]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; ``body`` builds a fresh streamed body for each attempt."""
        url = f"{self.base_url}{path}"
        last: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            if body is not None:
                kwargs["content"] = body()
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                last = exc
            else:
                if response.status_code < 500:
                    return response
                last = PacsError(f"HTTP {response.status_code}: {response.text[:300]}")
            if attempt < self._attempts:
                delay = self._backoff * 2 ** (attempt - 1)
                log.warning("PACS %s %s failed (%s); retry in %.1f s", method, url, last, delay)
                time.sleep(delay)
        raise PacsUnavailableError(
            f"the PACS at {self.base_url} did not answer {method} {path} after "
            f"{self._attempts} attempts: {last}"
        )

    def store(self, files: Sequence[Path]) -> StoreResult:
        """Store instances in one STOW-RS request and read each one's outcome from the answer.

        Raises
        ------
        PacsUnavailableError
            When the PACS cannot be reached after the retries.
        """
        boundary = f"dicomflow-{secrets.token_hex(12)}"
        size = (
            sum(len(self._part_header(boundary)) + p.stat().st_size + 2 for p in files)
            + len(boundary)
            + 6
        )

        def body() -> Iterator[bytes]:
            for path in files:
                yield self._part_header(boundary)
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        yield chunk
                yield b"\r\n"
            yield f"--{boundary}--\r\n".encode()

        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": DICOM_JSON,
            "Content-Length": str(size),
        }
        try:
            response = self._request("POST", "/studies", body, headers=headers)
        except PacsUnavailableError as exc:
            raise PacsUnavailableError(
                f"STOW-RS of {len(files)} instance(s) failed: {exc}"
            ) from exc.__cause__
        return self._store_result(response)

    @staticmethod
    def _part_header(boundary: str) -> bytes:
        return f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()

    @staticmethod
    def _store_result(response: httpx.Response) -> StoreResult:
        result = StoreResult()
        if response.status_code not in (200, 202, 409) or not response.content:
            raise PacsError(f"STOW-RS answered HTTP {response.status_code}: {response.text[:300]}")
        data = response.json()
        items = data if isinstance(data, list) else [data]
        for item in items:
            for ref in _tag_values(item, _REFERENCED_SOP_SEQUENCE):
                uids = _tag_values(ref, _REFERENCED_SOP_INSTANCE_UID)
                if uids:
                    result.stored.add(str(uids[0]))
            for failed in _tag_values(item, _FAILED_SOP_SEQUENCE):
                uids = _tag_values(failed, _REFERENCED_SOP_INSTANCE_UID)
                reason = _tag_values(failed, _FAILURE_REASON)
                if uids:
                    result.failed[str(uids[0])] = f"failure reason {reason[0] if reason else '?'}"
        return result

    def series_instances(self, study_uid: str, series_uid: str) -> list[str]:
        """SOP Instance UIDs the PACS holds for a series (QIDO-RS); empty if none."""
        response = self._request(
            "GET",
            f"/studies/{study_uid}/series/{series_uid}/instances",
            params={"includefield": _SOP_INSTANCE_UID},
            headers={"Accept": DICOM_JSON},
        )
        if response.status_code in (204, 404) or not response.content:
            return []
        if response.status_code != 200:
            raise PacsError(f"QIDO-RS answered HTTP {response.status_code}: {response.text[:300]}")
        return [str(_tag_values(item, _SOP_INSTANCE_UID)[0]) for item in response.json()]

    def find_series(self, series_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS ``GET /series?SeriesInstanceUID=``: the PACS's series record(s), DICOM JSON.

        Empty if the PACS does not hold the series. The Study Instance UID of a series is in
        each record's ``0020000D`` element (see :func:`study_uid_of`).
        """
        response = self._request(
            "GET",
            "/series",
            params={"SeriesInstanceUID": series_uid, "includefield": _STUDY_INSTANCE_UID},
            headers={"Accept": DICOM_JSON},
        )
        if response.status_code in (204, 404) or not response.content:
            return []
        if response.status_code != 200:
            raise PacsError(f"QIDO-RS answered HTTP {response.status_code}: {response.text[:300]}")
        return [item for item in response.json() if isinstance(item, dict)]

    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """The headers of every instance of a series as DICOM JSON, without pixels (WADO-RS).

        Bulk data (pixel data, large binary elements) comes as ``BulkDataURI`` references, not
        bytes, so this is a cheap way to read a whole series' headers. Empty if the PACS does
        not hold the series.
        """
        response = self._request(
            "GET",
            f"/studies/{study_uid}/series/{series_uid}/metadata",
            headers={"Accept": DICOM_JSON},
        )
        if response.status_code in (204, 404) or not response.content:
            return []
        if response.status_code != 200:
            raise PacsError(
                f"WADO-RS metadata answered HTTP {response.status_code}: {response.text[:300]}"
            )
        items = response.json()
        if not isinstance(items, list):
            raise PacsError(f"WADO-RS metadata of series {series_uid} is not a JSON list")
        return [item for item in items if isinstance(item, dict)]

    def series_url(self, study_uid: str, series_uid: str) -> str:
        """The DICOMweb (WADO-RS) address of a series."""
        return f"{self.base_url}/studies/{study_uid}/series/{series_uid}"

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """One instance as the PACS holds it (WADO-RS)."""
        parts = self._retrieve(f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}")
        if len(parts) != 1:
            raise PacsError(f"WADO-RS of instance {sop_uid} gave {len(parts)} parts, not 1")
        return parts[0]

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[bytes]:
        """Every instance of a series as the PACS holds them (WADO-RS)."""
        return self._retrieve(f"/studies/{study_uid}/series/{series_uid}")

    def _retrieve(self, path: str) -> list[bytes]:
        response = self._request("GET", path, headers={"Accept": ACCEPT_DICOM})
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise PacsError(f"WADO-RS answered HTTP {response.status_code}: {response.text[:300]}")
        return parse_multipart(response.content, response.headers.get("content-type", ""))

    def ping(self) -> bool:
        """Whether the PACS answers a QIDO-RS query."""
        try:
            response = self._http.get(
                f"{self.base_url}/studies", params={"limit": 1}, headers={"Accept": DICOM_JSON}
            )
        except httpx.TransportError:
            return False
        return response.status_code in (200, 204)


def orthanc_series_id(settings: Settings, series_uid: str, *, timeout: float = 10.0) -> str | None:
    """Orthanc's own id of a series (for links into its explorer), or ``None``.

    Orthanc-specific (its REST ``POST /tools/lookup``), so only for the platform's managed
    Orthanc (``pacs.managed``); any other PACS answers ``None`` without being asked.

    Raises
    ------
    PacsUnavailableError
        When the managed Orthanc cannot be reached.
    """
    pacs = settings.pacs
    if not pacs.managed:
        return None
    auth = (pacs.username, pacs.password) if pacs.username else None
    try:
        response = httpx.post(
            f"{pacs.orthanc_url}/tools/lookup", content=series_uid, auth=auth, timeout=timeout
        )
    except httpx.TransportError as exc:
        raise PacsUnavailableError(f"Orthanc at {pacs.orthanc_url} did not answer: {exc}") from exc
    if response.status_code != 200:
        raise PacsError(f"Orthanc lookup answered HTTP {response.status_code}")
    for item in response.json():
        if isinstance(item, dict) and item.get("Type") == "Series" and item.get("ID"):
            return str(item["ID"])
    return None


def delete_series(
    settings: Settings, study_uid: str, series_uid: str, *, timeout: float = 60.0
) -> int:
    """Remove a series from the PACS; return how many instances it held (0: it held none).

    The managed Orthanc is asked through its REST API (``DELETE /series/{id}``): its DICOMweb
    plugin has no delete. Any other PACS is sent a DICOMweb ``DELETE`` of the series resource,
    which PACS that allow deletion over DICOMweb accept.

    Raises
    ------
    PacsUnavailableError
        When the PACS cannot be reached.
    PacsError
        When it refuses (the message says what to do).
    """
    pacs = settings.pacs
    auth = (pacs.username, pacs.password) if pacs.username else None
    with DicomWebClient.from_settings(settings, attempts=1) as client:
        held = len(client.series_instances(study_uid, series_uid))
    if pacs.managed:
        orthanc_id = orthanc_series_id(settings, series_uid, timeout=timeout)
        if orthanc_id is None:
            return 0
        url = f"{pacs.orthanc_url}/series/{orthanc_id}"
    else:
        url = f"{pacs.base_url.rstrip('/')}/studies/{study_uid}/series/{series_uid}"
    try:
        response = httpx.delete(url, auth=auth, timeout=timeout)
    except httpx.TransportError as exc:
        raise PacsUnavailableError(f"the PACS at {url} did not answer DELETE: {exc}") from exc
    if response.status_code in (200, 202, 204, 404):
        return held
    raise PacsError(
        f"the PACS refused to delete series {series_uid} (HTTP {response.status_code} from "
        f"{url}: {response.text[:200]}); remove it in the PACS by hand, then delete it again"
    )
