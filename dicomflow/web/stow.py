"""STOW-RS door: ``POST /dicomweb/projects/{project}/studies`` into the spool.

The request body (``multipart/related; type="application/dicom"``) is streamed to a file in
the spool's ``incoming`` area, each part is cut out into its own file and goes through the
platform's intake (:mod:`dicomflow.intake`), as a DIMSE C-STORE does. One request is one
sender session: its instances land in one batch (more when the batch limits are reached),
closed at the end, from where the dispatcher hands it to Airflow.

Only an uploader (or owner) of the project, or an administrator, may store; for anybody else
a project he may not read answers 404 as one that does not exist, and one he may only read
403. Every request that stores is in the audit trail (user, project, counts, address).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from dicomflow.access.audit import Audit, AuditAction
from dicomflow.access.policy import Action, Principal
from dicomflow.db.projects import normalize_ae_name
from dicomflow.intake.admission import (
    Admission,
    AdmissionRefusedError,
    Destination,
    ProjectLookupError,
)
from dicomflow.intake.checks import InstanceRejectedError, StoreStatus
from dicomflow.intake.session import IntakeSession
from dicomflow.spool.records import CloseReason, Door, Origin
from dicomflow.spool.store import Spool
from dicomflow.web.auth import client_address, principal_of
from dicomflow.web.guard import require

__all__ = ["DICOM_JSON", "StowOutcome", "make_stow_router", "split_multipart"]

DICOM_JSON = "application/dicom+json"
_BOUNDARY_RE = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_TYPE_RE = re.compile(r'type="?([^";]+)"?', re.IGNORECASE)


@dataclass(frozen=True)
class StowOutcome:
    """What happened to one part."""

    sop_class_uid: str
    sop_instance_uid: str
    failure: StoreStatus | None = None
    reason: str = ""


def split_multipart(path: Path, boundary: str) -> list[tuple[dict[str, str], int, int]]:
    """Locate the parts of a multipart body stored in ``path`` without reading it into memory.

    Returns
    -------
    list
        ``(headers, start, end)`` per part: lowercase header names, byte offsets of the body.

    Raises
    ------
    ValueError
        When the body is not a well-formed multipart body with that boundary.
    """
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[tuple[dict[str, str], int, int]] = []
    if path.stat().st_size == 0:
        raise ValueError("empty request body")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as body:
        pos = body.find(delimiter)
        if pos < 0:
            raise ValueError("the multipart boundary does not occur in the body")
        while True:
            pos += len(delimiter)
            if body[pos : pos + 2] == b"--":
                return parts
            line_end = body.find(b"\r\n", pos)
            if line_end < 0:
                raise ValueError("truncated multipart body")
            header_end = body.find(b"\r\n\r\n", line_end)
            if header_end < 0:
                raise ValueError("truncated multipart part headers")
            headers: dict[str, str] = {}
            for raw in body[line_end + 2 : header_end].split(b"\r\n"):
                name, _, value = raw.decode("latin-1").partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            start = header_end + 4
            nxt = body.find(b"\r\n" + delimiter, start)
            if nxt < 0:
                raise ValueError("multipart body has no closing boundary")
            parts.append((headers, start, nxt))
            pos = nxt + 2


def _element(vr: str, value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]}


def stow_response(outcomes: list[StowOutcome]) -> dict[str, Any]:
    """The DICOM JSON STOW-RS response (PS3.18 10.5.3)."""
    body: dict[str, Any] = {}
    stored = [o for o in outcomes if o.failure is None]
    failed = [o for o in outcomes if o.failure is not None]
    if stored:
        body["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": _element("UI", o.sop_class_uid),
                    "00081155": _element("UI", o.sop_instance_uid),
                }
                for o in stored
            ],
        }
    if failed:
        items = []
        for o in failed:
            item: dict[str, Any] = {"00081197": _element("US", int(o.failure or 0))}
            if o.sop_class_uid:
                item["00081150"] = _element("UI", o.sop_class_uid)
            if o.sop_instance_uid:
                item["00081155"] = _element("UI", o.sop_instance_uid)
            # Error Comment: why, in words (not in PS3.18's table, but harmless and useful).
            item["00000902"] = _element("LO", o.reason[:64])
            items.append(item)
        body["00081198"] = {"vr": "SQ", "Value": items}
    return body


def make_stow_router(spool: Spool, admission: Admission, audit: Audit) -> APIRouter:
    """A router with the STOW-RS endpoint; mount it behind authentication.

    Parameters
    ----------
    spool
        Where instances go (the receiver's spool).
    admission
        Which projects exist and which dataset names are valid.
    audit
        The audit trail (written when the database is there; logged otherwise).
    """
    router = APIRouter()

    @router.post("/dicomweb/projects/{project}/studies")
    async def store_instances(
        project: str,
        request: Request,
        dataset: str | None = Query(default=None, description="dataset of the instances"),
        x_dicomflow_dataset: str | None = Header(default=None),
        principal: Principal = Depends(principal_of),  # noqa: B008
    ) -> JSONResponse:
        # Access first, on the name as admission reads it ("KP-Name" is project "name"): a
        # project the user may not read answers like one that does not exist.
        require(principal, Action.UPLOAD, normalize_ae_name(project))
        dataset_name = (dataset or x_dicomflow_dataset or "").strip()
        if not dataset_name:
            raise HTTPException(
                400, "name the dataset: query parameter 'dataset' or header X-Dicomflow-Dataset"
            )
        try:
            destination = await run_in_threadpool(admission.destination, project, dataset_name)
        except AdmissionRefusedError as exc:
            raise HTTPException(404 if exc.unknown_project else 400, str(exc)) from None
        except ProjectLookupError as exc:
            raise HTTPException(503, str(exc)) from None
        # Routed elsewhere (an unknown project sent to admin): the user must be allowed there.
        require(principal, Action.UPLOAD, destination.project)
        content_type = request.headers.get("content-type", "")
        boundary = _BOUNDARY_RE.search(content_type)
        if not content_type.lower().startswith("multipart/related") or boundary is None:
            raise HTTPException(
                415,
                'expected Content-Type: multipart/related; type="application/dicom"; boundary=...',
            )
        part_type = _TYPE_RE.search(content_type)
        if part_type and part_type.group(1).lower() != "application/dicom":
            raise HTTPException(
                415, f"only application/dicom parts are accepted, not {part_type.group(1)!r}"
            )
        fd, tmp_name = tempfile.mkstemp(prefix="stow-", dir=spool.incoming_dir)
        body_path = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in request.stream():
                    fh.write(chunk)
            client = request.client
            origin = Origin(
                Door.STOW, f"{client.host}:{client.port}" if client else "-", "", project
            )
            outcomes = await run_in_threadpool(
                _store_parts, spool, destination, origin, body_path, boundary.group(1)
            )
        finally:
            body_path.unlink(missing_ok=True)
        failed = sum(1 for o in outcomes if o.failure is not None)
        if not outcomes:
            raise HTTPException(400, "the request holds no parts")
        await run_in_threadpool(
            lambda: audit.record(
                principal.name,
                AuditAction.STOW,
                project=destination.project,
                target=destination.dataset,
                detail=f"{len(outcomes) - failed} stored, {failed} refused",
                address=client_address(request),
                outcome="ok" if failed < len(outcomes) else "failed",
                required=False,
            )
        )
        status = 200 if failed == 0 else 202 if failed < len(outcomes) else 409
        return JSONResponse(stow_response(outcomes), status_code=status, media_type=DICOM_JSON)

    return router


def _store_parts(
    spool: Spool, destination: Destination, origin: Origin, body_path: Path, boundary: str
) -> list[StowOutcome]:
    try:
        parts = split_multipart(body_path, boundary)
    except ValueError as exc:
        raise HTTPException(400, f"malformed multipart body: {exc}") from None
    intake = IntakeSession(spool, destination, origin)
    outcomes: list[StowOutcome] = []
    try:
        with open(body_path, "rb") as body:
            for headers, start, end in parts:
                part_type = headers.get("content-type", "application/dicom").split(";")[0].strip()
                fd, part_name = tempfile.mkstemp(prefix="part-", dir=spool.incoming_dir)
                part_path = Path(part_name)
                with os.fdopen(fd, "wb") as out:
                    body.seek(start)
                    remaining = end - start
                    while remaining:
                        chunk = body.read(min(remaining, 1 << 20))
                        if not chunk:
                            break
                        out.write(chunk)
                        remaining -= len(chunk)
                try:
                    if part_type.lower() != "application/dicom":
                        reason = f"part of type {part_type!r} is not application/dicom"
                        intake.reject(part_path, reason, move=True)
                        outcomes.append(StowOutcome("", "", StoreStatus.CANNOT_UNDERSTAND, reason))
                        continue
                    entry = intake.store(part_path, move=True)
                    outcomes.append(StowOutcome(entry.sop_class_uid, entry.sop_instance_uid))
                except InstanceRejectedError as exc:
                    outcomes.append(
                        StowOutcome(exc.sop_class_uid, exc.sop_instance_uid, exc.status, exc.reason)
                    )
                finally:
                    with contextlib.suppress(OSError):
                        part_path.unlink(missing_ok=True)
    finally:
        intake.close(CloseReason.REQUEST_END)
    return outcomes
