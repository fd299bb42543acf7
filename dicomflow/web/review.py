"""The review page: look at what uploads hold, choose the series, import them, verify.

Uploaded files are reviewed on the server right after the upload (headers only, see
``docs/importing.md`` for why not in the browser). The review is kept in the project's bucket;
the import that follows names it, so its selection and the subject flags are checked against
exactly what the user saw. A selection with flags that need an override is refused (409)
unless the override is ticked, and the override goes to the audit trail with the flags.

Access: reviewing, importing and retrying need the uploader role (or owner, administrator);
the logs need read access, as the import's state does.

Routes (mounted behind the login)::

    GET  /uploads/review                             the page
    GET  /uploads/review/static/{name}               its script and style
    POST /api/reviews                                review uploads (kept; id returned)
    POST /api/reviews/{project}/{review_id}/import   import a selection of a review
    GET  /api/imports/{project}/{run_id}/log.txt     an import's report as text
    GET  /api/imports/{project}/{run_id}/log.json    ... as JSON, with the four counts
    POST /api/imports/{project}/{run_id}/retry       run a failed import again
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from dicomflow.access.audit import Audit, AuditAction
from dicomflow.access.policy import POLICY, Action, Principal
from dicomflow.airflow_api.client import AirflowClient, AirflowError
from dicomflow.config import Settings
from dicomflow.db.projects import InvalidNameError, validate_dataset_name
from dicomflow.importer.importer import ImportRefusedError, normalize_extension
from dicomflow.importer.review import ExpectedSubject, SubjectMismatchError
from dicomflow.importer.selection import SelectionError, record_override, resolve_selection
from dicomflow.importer.upload_review import read_review, review_uploads, store_review
from dicomflow.importer.uploads import UPLOAD_IMPORT_DAG_ID, read_report, upload_area
from dicomflow.importer.verify import counts
from dicomflow.index.base import SeriesIndex, SeriesQuery
from dicomflow.spool.store import new_id
from dicomflow.storage.client import ObjectStore
from dicomflow.uploads.area import UnknownUploadError
from dicomflow.web.auth import client_address, principal_of
from dicomflow.web.guard import require
from dicomflow.web.layout import PageRenderer

__all__ = ["make_review_router"]

STATIC_DIR = Path(__file__).parent / "static" / "review"
_STATIC = {"review.js": "text/javascript", "review.css": "text/css"}
_RUN_PREFIX = "upload-import-"
_RUN_ID = re.compile(r"^[A-Za-z0-9._+:-]{1,200}$")
_user = Depends(principal_of)


class ProjectDirectory(Protocol):
    """What the page needs of :class:`~dicomflow.db.projects.ProjectStore`."""

    def exists(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...


class ReviewRequest(BaseModel):
    """Review these uploads of a project, against an expected subject."""

    project: str
    uploads: list[str] = Field(min_length=1)
    extension: str = ".dcm"
    expected_patient_id: str = ""
    expected_sex: str = ""
    expected_birth_date: str = ""
    #: A Patient ID the project already holds: its ID, sex and birth date are expected.
    project_patient: str = ""


class SelectionRequest(BaseModel):
    """Import these series of a review into a dataset."""

    dataset: str
    series: list[str] = Field(min_length=1)
    extension: str = ".dcm"
    override: bool = False
    delete_upload: bool = False


def make_review_router(
    settings: Settings,
    projects: ProjectDirectory,
    index: SeriesIndex,
    *,
    audit: Audit,
    store: ObjectStore | None = None,
    airflow: AirflowClient | None = None,
) -> APIRouter:
    """The review page and its API; mount it behind the platform's login.

    Parameters
    ----------
    settings
        Archive bounds, scratch directory, Airflow.
    projects
        Which projects exist.
    index
        What each project already holds (and its patients, for an expected subject).
    audit
        The audit trail (imports, overrides, retries).
    store, airflow
        Clients; defaults from ``settings``.
    """
    store = store or ObjectStore.from_settings(settings)
    area = upload_area(settings, store)
    airflow_client = airflow or AirflowClient.from_settings(settings)
    pages = PageRenderer(settings)
    router = APIRouter()

    def allowed(user: Principal, action: Action, project: str) -> None:
        require(user, action, project, projects.exists)

    def expected_subject(body: ReviewRequest) -> ExpectedSubject:
        if body.project_patient:
            found = index.search(body.project, SeriesQuery(patient_id=body.project_patient, size=1))
            if not found.items:
                raise HTTPException(
                    400,
                    f"project {body.project!r} holds no patient with Patient ID "
                    f"{body.project_patient!r}",
                )
            return ExpectedSubject.from_document(found.items[0])
        try:
            return ExpectedSubject(
                body.expected_patient_id, body.expected_sex, body.expected_birth_date
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    @router.get("/uploads/review", response_class=HTMLResponse, include_in_schema=False)
    def page(user: Principal = _user) -> HTMLResponse:
        targets = POLICY.allowed(user, Action.IMPORT, projects.names())
        return pages.render("uploads/review.html", current="uploads", user=user, projects=targets)

    @router.get("/uploads/review/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in _STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=_STATIC[name])

    @router.post("/api/reviews", status_code=201)
    async def review(body: ReviewRequest, user: Principal = _user) -> dict[str, Any]:
        await run_in_threadpool(allowed, user, Action.IMPORT, body.project)
        try:
            extension = normalize_extension(body.extension)
        except ImportRefusedError as exc:
            raise HTTPException(400, str(exc)) from None
        expected = await run_in_threadpool(expected_subject, body)

        def run() -> Any:
            return review_uploads(
                settings,
                area,
                body.project,
                body.uploads,
                extension=extension,
                expected=expected,
                held=lambda uid: index.get(body.project, uid) is not None,
            )

        try:
            result = await run_in_threadpool(run)
        except UnknownUploadError as exc:
            raise HTTPException(404, str(exc)) from None
        review_id = new_id()
        await run_in_threadpool(store_review, store, body.project, review_id, result)
        return {"review_id": review_id, "project": body.project, "review": result.as_dict()}

    @router.post("/api/reviews/{project}/{review_id}/import", status_code=201)
    async def import_selection(
        project: str,
        review_id: str,
        body: SelectionRequest,
        request: Request,
        user: Principal = _user,
    ) -> Any:
        await run_in_threadpool(allowed, user, Action.IMPORT, project)
        if not _RUN_ID.match(review_id):
            raise HTTPException(404, f"no review {review_id!r}")
        try:
            validate_dataset_name(body.dataset)
            extension = normalize_extension(body.extension)
        except (InvalidNameError, ImportRefusedError) as exc:
            raise HTTPException(400, str(exc)) from None
        kept = await run_in_threadpool(read_review, store, project, review_id)
        if kept is None:
            raise HTTPException(404, f"no review {review_id!r} in project {project!r}")
        try:
            # The page applied the references already, and the user may untick some.
            chosen, flags = resolve_selection(
                kept, body.series, references=False, override=body.override
            )
        except SelectionError as exc:
            raise HTTPException(400, str(exc)) from None
        except SubjectMismatchError as exc:
            return JSONResponse(
                {
                    "detail": str(exc),
                    "flags": [
                        {"series_uid": f.series_uid, "field": f.field, "message": f.message}
                        for f in exc.flags
                    ],
                },
                status_code=409,
            )
        run_id = f"{_RUN_PREFIX}{new_id()}"
        address = client_address(request)
        if flags:
            await run_in_threadpool(
                record_override, audit, user.name, project, run_id, flags, address=address
            )
        conf: dict[str, Any] = {
            "project": project,
            "dataset": body.dataset,
            "uploads": kept.inputs,
            "extension": extension,
            "delete_upload": body.delete_upload,
            "series": sorted(chosen),
            "overrides": [f.message for f in flags],
            "user": user.name,
        }
        await _trigger(run_id, conf)
        await run_in_threadpool(
            audit.record,
            user.name,
            AuditAction.IMPORT,
            project=project,
            target=run_id,
            detail=f"dicom {len(chosen)} series of review {review_id} as dataset {body.dataset}",
            address=address,
        )
        return {"run_id": run_id, "dag_id": UPLOAD_IMPORT_DAG_ID, "conf": conf}

    async def _trigger(run_id: str, conf: dict[str, Any]) -> None:
        try:
            await run_in_threadpool(
                airflow_client.trigger_dag_run, UPLOAD_IMPORT_DAG_ID, run_id, conf
            )
        except AirflowError as exc:
            raise HTTPException(503, f"the import could not be started: {exc}") from None

    async def _run_of(project: str, run_id: str) -> dict[str, Any]:
        if not _RUN_ID.match(run_id):
            raise HTTPException(404, f"no import run {run_id!r}")
        try:
            run = await run_in_threadpool(airflow_client.get_dag_run, UPLOAD_IMPORT_DAG_ID, run_id)
        except AirflowError as exc:
            raise HTTPException(503, f"Airflow cannot be asked: {exc}") from None
        # A run of another project is answered as one that does not exist.
        if run is None or (run.get("conf") or {}).get("project") != project:
            raise HTTPException(404, f"no import run {run_id!r}")
        return run

    async def _report(project: str, run_id: str) -> Any:
        await _run_of(project, run_id)
        report = await run_in_threadpool(read_report, store, project, run_id)
        if report is None:
            raise HTTPException(404, f"import run {run_id!r} has no report yet")
        return report

    @router.get("/api/imports/{project}/{run_id}/log.txt", response_class=PlainTextResponse)
    async def log_text(project: str, run_id: str, user: Principal = _user) -> PlainTextResponse:
        await run_in_threadpool(allowed, user, Action.READ, project)
        report = await _report(project, run_id)
        return PlainTextResponse(
            "\n".join(report.lines(max_ignored=1_000_000)) + "\n",
            headers={"Content-Disposition": f'attachment; filename="{run_id}.txt"'},
        )

    @router.get("/api/imports/{project}/{run_id}/log.json")
    async def log_json(project: str, run_id: str, user: Principal = _user) -> JSONResponse:
        await run_in_threadpool(allowed, user, Action.READ, project)
        report = await _report(project, run_id)
        data = report.as_dict()
        data["counts"] = counts(report)
        data["run_id"] = run_id
        return JSONResponse(
            data, headers={"Content-Disposition": f'attachment; filename="{run_id}.json"'}
        )

    @router.post("/api/imports/{project}/{run_id}/retry", status_code=201)
    async def retry(
        project: str, run_id: str, request: Request, user: Principal = _user
    ) -> dict[str, Any]:
        await run_in_threadpool(allowed, user, Action.IMPORT, project)
        run = await _run_of(project, run_id)
        if run.get("state") not in ("failed",):
            raise HTTPException(
                409, f"import run {run_id!r} is {run.get('state')}: only a failed one is retried"
            )
        conf = dict(run.get("conf") or {})
        conf["user"] = user.name
        new_run = f"{_RUN_PREFIX}{new_id()}"
        await _trigger(new_run, conf)
        await run_in_threadpool(
            audit.record,
            user.name,
            AuditAction.IMPORT,
            project=project,
            target=new_run,
            detail=f"retry of {run_id}",
            address=client_address(request),
        )
        return {"run_id": new_run, "retry_of": run_id, "dag_id": UPLOAD_IMPORT_DAG_ID}

    return router
