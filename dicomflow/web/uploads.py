"""The Data Upload page and its API: resumable uploads (tus), the uploads area, imports.

Browser files go to this service, never straight to the object store: the page speaks the
tus protocol (Uppy's Tus plugin, a maintained client that resumes after a network drop or a
page reload) to a tus server (``tuspyserver``) mounted here behind the platform's login. Its
chunks land in ``<data_dir>/uploads`` and each completed file is moved to the project's
uploads area in the object store. So the object store needs neither CORS nor exposure to
browsers, and every limit is enforced here before a byte is accepted.

Access: uploading (announcing, the tus requests, completing, listing and deleting uploads) and
starting imports need the uploader role (or owner, or administrator) in the project; reading
an import's state and report needs read access. A project the user may not read answers as
one that does not exist. The user who started an import is in its run's conf and in the audit
trail, with announced uploads and deleted ones.

Routes (mounted behind the login)::

    GET    /uploads                                   the page
    GET    /uploads/static/{name}                     its scripts and styles
    GET    /api/uploads/config                        limits, projects, the user
    POST   /api/uploads/{project}                     announce an upload (limits checked)
    GET    /api/uploads/{project}                     the project's uploads area
    POST   /api/uploads/{project}/{upload_id}/complete   check (and finish) an upload
    DELETE /api/uploads/{project}/{name}              delete an upload or one of its files
    POST|HEAD|PATCH|DELETE /api/uploads/tus/...       the tus server
    POST   /api/imports                               start import-dicoms-from-data-upload
                                                      (kind "nifti": import-niftis-from-...)
    GET    /api/imports/{project}/{run_id}            its state and report
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, field_validator
from tuspyserver import create_tus_router
from tuspyserver.storage.local import LocalFileStorage

from dicomflow.access.audit import Audit, AuditAction
from dicomflow.access.policy import POLICY, Action, Principal
from dicomflow.airflow_api.client import AirflowClient, AirflowError
from dicomflow.config import Settings
from dicomflow.db.projects import InvalidNameError, validate_dataset_name
from dicomflow.importer.importer import ImportRefusedError, normalize_extension
from dicomflow.importer.nifti import NIFTI_UPLOAD_IMPORT_DAG_ID, read_nifti_report
from dicomflow.importer.uploads import UPLOAD_IMPORT_DAG_ID, read_report
from dicomflow.nifti.options import SWITCHES
from dicomflow.spool.store import new_id
from dicomflow.storage.client import ObjectStore
from dicomflow.uploads.area import (
    InvalidUploadPathError,
    UnknownUploadError,
    UploadArea,
    safe_relative_path,
)
from dicomflow.uploads.limits import UploadLimitError, UploadLimits
from dicomflow.web.auth import client_address, principal_of
from dicomflow.web.guard import require
from dicomflow.web.layout import PageRenderer

__all__ = ["TUS_PREFIX", "make_uploads_router"]

LOGGER = logging.getLogger(__name__)
TUS_PREFIX = "/api/uploads/tus"
STATIC_DIR = Path(__file__).parent / "static" / "uploads"
_STATIC = {
    "uppy-bundle.js": "text/javascript",
    "uppy-bundle.css": "text/css",
    "uploads.js": "text/javascript",
    "uploads.css": "text/css",
}
#: Bytes per tus PATCH request from the page: the server holds one chunk in memory.
CHUNK_BYTES = 16 << 20
#: Run id prefixes of the imports the page starts, and their DAGs.
_DICOM_RUN_PREFIX = "upload-import-"
_NIFTI_RUN_PREFIX = "nifti-import-"
MODALITY_SWITCH = next(s for s in SWITCHES if s.name == "modality")
_user = Depends(principal_of)


class ProjectDirectory(Protocol):
    """What the page needs of :class:`~dicomflow.db.projects.ProjectStore`."""

    def exists(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...


class AnnouncedFile(BaseModel):
    """One file of an upload as the page announces it."""

    path: str = Field(min_length=1, max_length=4096)
    size: int = Field(ge=0)


class UploadAnnouncement(BaseModel):
    """The files of an upload, before any byte is sent."""

    files: list[AnnouncedFile] = Field(min_length=1)


class ImportRequest(BaseModel):
    """The page's "Import into project ... as dataset ..." form."""

    project: str
    dataset: str
    uploads: list[str] = Field(min_length=1)
    extension: str = ".dcm"
    delete_upload: bool = False
    #: ``nifti`` converts NIfTI folders (import-niftis-from-data-upload).
    kind: Literal["dicom", "nifti"] = "dicom"
    #: NIfTI: the modality of volumes that no tag gives (one of the switch's values).
    modality: str = Field(default_factory=lambda: MODALITY_SWITCH.default)

    @field_validator("modality")
    @classmethod
    def _known_modality(cls, value: str) -> str:
        return str(MODALITY_SWITCH.parse(value).value)


def make_uploads_router(
    settings: Settings,
    projects: ProjectDirectory,
    *,
    store: ObjectStore | None = None,
    airflow: AirflowClient | None = None,
    audit: Audit,
) -> APIRouter:
    """The Data Upload page and API; mount it behind the platform's login.

    Parameters
    ----------
    settings
        Limits, staging directory, Airflow.
    projects
        Which projects exist.
    store
        The object store client; default from ``settings``.
    airflow
        The Airflow client that starts imports; default from ``settings``.
    audit
        The audit trail.
    """
    store = store or ObjectStore.from_settings(settings)
    limits = UploadLimits.from_settings(settings.uploads)
    area = UploadArea(store, limits)
    airflow_client = airflow or AirflowClient.from_settings(settings)
    staging = settings.uploads_staging_dir
    staging.mkdir(parents=True, exist_ok=True)
    pages = PageRenderer(settings)
    router = APIRouter()

    def allowed(user: Principal, action: Action, project: str) -> str:
        """``project`` if the user may take ``action`` there, else 404 (hidden) or 403."""
        require(user, action, project, projects.exists)
        return project

    def record_event(
        user: Principal,
        request: Request,
        action: AuditAction,
        project: str,
        target: str,
        detail: str = "",
    ) -> None:
        audit.record(
            user.name,
            action,
            project=project,
            target=target,
            detail=detail,
            address=client_address(request),
        )

    # -- the page ---------------------------------------------------------------------------

    @router.get("/uploads", response_class=HTMLResponse, include_in_schema=False)
    def page(user: Principal = _user) -> HTMLResponse:
        # Controls only for a user who may upload somewhere (a viewer sees none).
        targets = POLICY.allowed(user, Action.UPLOAD, projects.names())
        return pages.render(
            "uploads/index.html", current="uploads", user=user, can_upload=bool(targets)
        )

    @router.get("/uploads/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in _STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=_STATIC[name])

    @router.get("/api/uploads/config")
    def config(user: Principal = _user) -> dict[str, Any]:
        return {
            "user": user.name,
            # The projects this user may upload into and import into.
            "projects": POLICY.allowed(user, Action.UPLOAD, projects.names()),
            "tus_endpoint": TUS_PREFIX + "/",
            "chunk_bytes": CHUNK_BYTES,
            "limits": {
                "max_file_bytes": limits.max_file_bytes,
                "max_upload_bytes": limits.max_upload_bytes,
                "max_files": limits.max_files,
                # As the page shows them: in the unit of the setting ("100 GiB").
                "labels": limits.labels(),
            },
            "import_dag": UPLOAD_IMPORT_DAG_ID,
            "nifti_import_dag": NIFTI_UPLOAD_IMPORT_DAG_ID,
            "nifti_switches": [
                {
                    "name": s.name,
                    "title": s.title,
                    "help": s.help,
                    "values": s.values,
                    "default": s.default,
                }
                for s in SWITCHES
            ],
            "airflow_url": settings.airflow.base_url,
        }

    # -- the uploads area -------------------------------------------------------------------

    @router.post("/api/uploads/{project}", status_code=201)
    async def announce(
        project: str,
        body: UploadAnnouncement,
        request: Request,
        user: Principal = _user,
    ) -> JSONResponse:
        await run_in_threadpool(allowed, user, Action.UPLOAD, project)
        files = [(f.path, f.size) for f in body.files]
        try:
            record = await run_in_threadpool(area.create, project, user.name, files)
        except UploadLimitError as exc:
            return JSONResponse(exc.as_dict(), status_code=413)
        except InvalidUploadPathError as exc:
            raise HTTPException(400, str(exc)) from None
        await run_in_threadpool(
            record_event,
            user,
            request,
            AuditAction.UPLOAD,
            project,
            record.id,
            f"{len(record.files)} file(s), {sum(record.files.values())} bytes announced",
        )
        return JSONResponse(
            {"upload_id": record.id, "project": project, "files": len(record.files)},
            status_code=201,
        )

    @router.get("/api/uploads/{project}")
    async def listing(project: str, user: Principal = _user) -> dict[str, Any]:
        await run_in_threadpool(allowed, user, Action.UPLOAD, project)
        entries = await run_in_threadpool(area.entries, project)
        return {
            "project": project,
            "entries": [e.as_dict() for e in entries],
            "total_bytes": sum(e.size for e in entries),
        }

    @router.post("/api/uploads/{project}/{upload_id}/complete")
    async def complete(project: str, upload_id: str, user: Principal = _user) -> dict[str, Any]:
        await run_in_threadpool(allowed, user, Action.UPLOAD, project)
        try:
            record = await run_in_threadpool(area.record, project, upload_id)
        except UnknownUploadError as exc:
            raise HTTPException(404, str(exc)) from None
        # A file whose last PATCH arrived but whose move to the object store failed is
        # still complete in the staging area: move it now.
        for uid, info in _staged(staging):
            meta = info.get("metadata") or {}
            ours = meta.get("upload_id") == upload_id and meta.get("project") == project
            if ours and info.get("size") is not None and info.get("offset") == info.get("size"):
                await _move_to_store(uid, meta)
        present = {
            e.path: e.size
            for e in await run_in_threadpool(area.entries, project)
            if e.upload_id == upload_id
        }
        missing = [p for p, size in record.files.items() if present.get(p) != size]
        return {"upload_id": upload_id, "complete": not missing, "missing": missing}

    @router.delete("/api/uploads/{project}/{name:path}")
    async def delete(
        project: str, name: str, request: Request, user: Principal = _user
    ) -> dict[str, Any]:
        await run_in_threadpool(allowed, user, Action.UPLOAD, project)
        try:
            deleted = await run_in_threadpool(area.delete, project, [name])
        except UnknownUploadError as exc:
            raise HTTPException(404, str(exc)) from None
        await run_in_threadpool(
            record_event,
            user,
            request,
            AuditAction.UPLOAD_DELETE,
            project,
            name,
            f"{len(deleted)} object(s)",
        )
        return {"deleted": deleted}

    # -- the tus server ---------------------------------------------------------------------

    async def pre_create(user: Principal, metadata: dict[str, str], info: dict[str, Any]) -> None:
        size = info.get("size")
        if size is None:
            # Deferred lengths and concatenation would bypass the limits.
            raise HTTPException(400, "Upload-Length is required")
        project = metadata.get("project", "")
        await run_in_threadpool(allowed, user, Action.UPLOAD, project)
        upload_id = metadata.get("upload_id", "")
        try:
            path = safe_relative_path(metadata.get("path") or metadata.get("filename") or "")
            limits.check_file(path, int(size))
            record = await run_in_threadpool(area.record, project, upload_id)
        except UploadLimitError as exc:
            raise HTTPException(413, str(exc)) from None
        except (InvalidUploadPathError, UnknownUploadError) as exc:
            raise HTTPException(400, f"{exc} (announce the upload first)") from None
        if record.files.get(path) != int(size):
            raise HTTPException(
                400,
                f"file {path!r} of {size} bytes was not announced in upload {upload_id!r}",
            )

    async def _move_to_store(uid: str, metadata: dict[str, str]) -> None:
        local = staging / uid
        path = metadata.get("path") or metadata.get("filename") or ""
        await run_in_threadpool(
            area.put_file, metadata["project"], metadata["upload_id"], path, local
        )
        for leftover in (local, staging / f"{uid}.info", staging / ".locks" / f"{uid}.lock"):
            leftover.unlink(missing_ok=True)
        LOGGER.info("upload %s: %s stored", metadata["upload_id"], path)

    async def on_complete(file_path: str, metadata: dict[str, str]) -> None:
        await _move_to_store(Path(file_path).name, metadata)

    async def pre_create_dep(user: Principal = _user) -> Any:
        """The creation hook, knowing the user (tus metadata names the project)."""

        async def hook(metadata: dict[str, str], info: dict[str, Any]) -> None:
            await pre_create(user, metadata, info)

        return hook

    async def tus_access(request: Request, user: Principal = _user) -> None:
        """Every request on an existing tus upload: the user may upload into its project."""
        uid = request.path_params.get("uuid")
        if not uid:
            return  # creation: checked by the hook, which sees the metadata
        info_path = staging / f"{Path(uid).name}.info"
        try:
            meta = json.loads(info_path.read_text()).get("metadata") or {}
        except (OSError, ValueError, AttributeError):
            return  # tus answers 404 for an unknown upload
        await run_in_threadpool(allowed, user, Action.UPLOAD, str(meta.get("project", "")))

    tus = create_tus_router(
        prefix=TUS_PREFIX,
        files_dir=str(staging),
        max_size=limits.max_file_bytes,
        auth=tus_access,  # type: ignore[arg-type]
        days_to_keep=settings.uploads.resume_days,
        # tuspyserver awaits the hooks when they are coroutines; its type hints say plain.
        on_upload_complete=on_complete,  # type: ignore[arg-type]
        pre_create_dep=pre_create_dep,  # type: ignore[arg-type]
        storage=LocalFileStorage(str(staging)),
        tags=["uploads (tus)"],
    )
    router.include_router(tus)

    # -- imports ----------------------------------------------------------------------------

    @router.post("/api/imports", status_code=201)
    async def start_import(
        body: ImportRequest, request: Request, user: Principal = _user
    ) -> dict[str, Any]:
        await run_in_threadpool(allowed, user, Action.IMPORT, body.project)
        try:
            validate_dataset_name(body.dataset)
            extension = normalize_extension(body.extension)
            await run_in_threadpool(area.select, body.project, body.uploads)
        except (InvalidNameError, ImportRefusedError) as exc:
            raise HTTPException(400, str(exc)) from None
        except UnknownUploadError as exc:
            raise HTTPException(404, str(exc)) from None
        conf: dict[str, Any] = {
            "project": body.project,
            "dataset": body.dataset,
            "uploads": body.uploads,
            "delete_upload": body.delete_upload,
            # Who started it (the run's conf is shown in Airflow; the trail has it too).
            "user": user.name,
        }
        if body.kind == "nifti":
            dag_id, run_id = NIFTI_UPLOAD_IMPORT_DAG_ID, f"{_NIFTI_RUN_PREFIX}{new_id()}"
            conf["modality"] = body.modality
        else:
            dag_id, run_id = UPLOAD_IMPORT_DAG_ID, f"{_DICOM_RUN_PREFIX}{new_id()}"
            conf["extension"] = extension
        try:
            await run_in_threadpool(airflow_client.trigger_dag_run, dag_id, run_id, conf)
        except AirflowError as exc:
            raise HTTPException(503, f"the import could not be started: {exc}") from None
        await run_in_threadpool(
            record_event,
            user,
            request,
            AuditAction.IMPORT,
            body.project,
            run_id,
            f"{body.kind} {', '.join(body.uploads)} as dataset {body.dataset}",
        )
        return {"run_id": run_id, "dag_id": dag_id, "conf": conf}

    @router.get("/api/imports/{project}/{run_id}")
    async def import_state(project: str, run_id: str, user: Principal = _user) -> dict[str, Any]:
        await run_in_threadpool(allowed, user, Action.READ, project)
        # The run id says which import the page started (and so how its report reads).
        nifti = run_id.startswith(_NIFTI_RUN_PREFIX)
        dag_id = NIFTI_UPLOAD_IMPORT_DAG_ID if nifti else UPLOAD_IMPORT_DAG_ID
        try:
            run = await run_in_threadpool(airflow_client.get_dag_run, dag_id, run_id)
        except AirflowError as exc:
            raise HTTPException(503, f"Airflow cannot be asked: {exc}") from None
        # A run of another project is answered as one that does not exist.
        if run is None or (run.get("conf") or {}).get("project") != project:
            raise HTTPException(404, f"no import run {run_id!r}")
        reader = read_nifti_report if nifti else read_report
        report = await run_in_threadpool(reader, store, project, run_id)
        return {
            "run_id": run_id,
            "state": run.get("state"),
            "report": report.as_dict() if report else None,
            "report_lines": report.lines() if report else [],
        }

    return router


def _staged(staging: Path) -> list[tuple[str, dict[str, Any]]]:
    """The tus uploads in the staging area: ``(tus id, info)``."""
    found = []
    for info_path in staging.glob("*.info"):
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict):
            found.append((info_path.stem, info))
    return found
