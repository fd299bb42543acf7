"""REST endpoints over the series index: search, projects, datasets, one series.

Mounted behind the platform's sign-in; every route asks the access policy. ``project`` is the
project the caller reads through (default ``admin``, which sees every series, for
administrators; anyone else names one of his projects). A project the user may not read
answers exactly as one that does not exist, and a series read through a project is that
project's copy of its document (naming that project and its datasets only). An unknown query
parameter or a malformed value answers 400 with the parameter named, so a typo never silently
widens a search.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from dicomflow.access.policy import POLICY, AccessDeniedError, Action, Principal
from dicomflow.db.projects import ADMIN_PROJECT, ProjectStore
from dicomflow.index.base import QUERY_PARAMETERS, QueryError, SeriesIndex, SeriesQuery
from dicomflow.web.auth import principal_of
from dicomflow.web.guard import unknown_project

_user = Depends(principal_of)


class _HTTPProblem(Exception):
    def __init__(self, status: int, detail: str, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.parameter = parameter

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"detail": self.detail}
        if self.parameter is not None:
            body["parameter"] = self.parameter
        return JSONResponse(body, status_code=self.status)


def _params(request: Request, allowed: set[str]) -> dict[str, list[str]]:
    """Query parameters as lists; 400 for any name not in ``allowed``."""
    out: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise _HTTPProblem(
                400,
                f"{name}: unknown query parameter; known: {', '.join(sorted(allowed))}",
                name,
            )
        out.setdefault(name, []).append(value)
    return out


def _single(params: dict[str, list[str]], name: str, default: str) -> str:
    values = params.pop(name, [])
    if len(values) > 1:
        raise _HTTPProblem(400, f"{name}: given {len(values)} times, allowed once", name)
    return values[0].strip() if values and values[0].strip() else default


def make_search_router(index: SeriesIndex, projects: ProjectStore) -> APIRouter:
    """The search API on an index and the project store.

    Routes
    ------
    ``GET /api/series``
        Query parameters: ``project`` (default ``admin``) and those of
        :data:`dicomflow.index.base.QUERY_PARAMETERS`. Answers ``{total, page, size, items,
        facets}``.
    ``GET /api/series/{uid}?project=``
        One series document; 404 when the project does not hold it.
    ``GET /api/projects``
        The projects the user may read, with description, creation time, number of datasets
        and the user's role.
    ``GET /api/projects/{project}/datasets``
        The project's datasets with their number of series.
    """
    router = APIRouter()
    series_params = {"project", *QUERY_PARAMETERS}

    def readable(principal: Principal, project: str) -> str:
        # Not the user's and does not exist: the same answer, so a denial reveals nothing.
        if not POLICY.may(principal, Action.READ, project) or (
            project != ADMIN_PROJECT and not projects.exists(project)
        ):
            raise _HTTPProblem(404, unknown_project(project), "project")
        return project

    def project_of(params: dict[str, list[str]], principal: Principal) -> str:
        default = ADMIN_PROJECT if principal.is_admin else ""
        project = _single(params, "project", default)
        if not project:
            mine = ", ".join(sorted(principal.roles)) or "none"
            raise _HTTPProblem(
                400, f"project: name the project to read (your projects: {mine})", "project"
            )
        return readable(principal, project)

    def search(request: Request, principal: Principal) -> dict[str, Any]:
        params = _params(request, series_params)
        project = project_of(params, principal)
        try:
            query = SeriesQuery.from_params(params)
        except QueryError as exc:
            raise _HTTPProblem(400, str(exc), exc.parameter) from None
        return {"project": project, **index.search(project, query).as_dict()}

    def one_series(uid: str, request: Request, principal: Principal) -> dict[str, Any]:
        params = _params(request, {"project"})
        project = project_of(params, principal)
        doc = index.get(project, uid)
        if doc is None:
            raise _HTTPProblem(404, f"series {uid} is not in project {project!r}")
        return doc

    def project_list(request: Request, principal: Principal) -> list[dict[str, Any]]:
        _params(request, set())
        return [
            {
                "name": p.name,
                "description": p.description,
                "created_at": p.created_at.isoformat(),
                "datasets": p.datasets,
                "role": _role(principal, p.name),
            }
            for p in projects.all()
            if POLICY.may(principal, Action.READ, p.name)
        ]

    def dataset_list(project: str, request: Request, principal: Principal) -> list[dict[str, Any]]:
        _params(request, set())
        readable(principal, project)
        counts = index.search(project, SeriesQuery(size=1)).facets.get("dataset", {})
        names = sorted(set(projects.datasets(project)) | set(counts))
        return [{"name": name, "series": counts.get(name, 0)} for name in names]

    # Blocking index calls run in the thread pool, errors become JSON answers.
    async def run(func: Any, *args: Any) -> Any:
        try:
            return await run_in_threadpool(func, *args)
        except _HTTPProblem as problem:
            return problem.response()
        except AccessDeniedError as exc:
            return _HTTPProblem(404 if exc.hidden else 403, str(exc)).response()

    @router.get("/api/series", summary="Search series")
    async def get_series(request: Request, principal: Principal = _user) -> Any:
        return await run(search, request, principal)

    @router.get("/api/series/{uid}", summary="One series document")
    async def get_one_series(uid: str, request: Request, principal: Principal = _user) -> Any:
        return await run(one_series, uid, request, principal)

    @router.get("/api/projects", summary="Projects the user may read")
    async def get_projects(request: Request, principal: Principal = _user) -> Any:
        return await run(project_list, request, principal)

    @router.get("/api/projects/{project}/datasets", summary="Datasets of a project")
    async def get_datasets(project: str, request: Request, principal: Principal = _user) -> Any:
        return await run(dataset_list, project, request, principal)

    return router


def _role(principal: Principal, project: str) -> str:
    """The user's role in a project as the API names it (administrators: ``administrator``)."""
    role = principal.role(project)
    if role is not None:
        return role.value
    return "administrator" if principal.is_admin else ""
