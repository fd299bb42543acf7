"""REST endpoints over the series index: search, projects, datasets, one series.

The router carries no authentication: whoever mounts it puts it behind the platform's login.
``project`` is a filter the caller chooses (default ``admin``, which sees every series); an
unknown query parameter or a malformed value answers 400 with the parameter named, so a typo
never silently widens a search.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from dicomflow.db.projects import ADMIN_PROJECT, ProjectStore
from dicomflow.index.base import QUERY_PARAMETERS, QueryError, SeriesIndex, SeriesQuery


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
        Every project with its description, creation time and number of datasets.
    ``GET /api/projects/{project}/datasets``
        The project's datasets with their number of series.
    """
    router = APIRouter()
    series_params = {"project", *QUERY_PARAMETERS}

    def project_of(params: dict[str, list[str]]) -> str:
        project = _single(params, "project", ADMIN_PROJECT)
        if project != ADMIN_PROJECT and not projects.exists(project):
            raise _HTTPProblem(404, f"project: {project!r} does not exist", "project")
        return project

    def search(request: Request) -> dict[str, Any]:
        params = _params(request, series_params)
        project = project_of(params)
        try:
            query = SeriesQuery.from_params(params)
        except QueryError as exc:
            raise _HTTPProblem(400, str(exc), exc.parameter) from None
        return {"project": project, **index.search(project, query).as_dict()}

    def one_series(uid: str, request: Request) -> dict[str, Any]:
        params = _params(request, {"project"})
        project = project_of(params)
        doc = index.get(project, uid)
        if doc is None:
            raise _HTTPProblem(404, f"series {uid} is not in project {project!r}")
        return doc

    def project_list(request: Request) -> list[dict[str, Any]]:
        _params(request, set())
        return [
            {
                "name": p.name,
                "description": p.description,
                "created_at": p.created_at.isoformat(),
                "datasets": p.datasets,
            }
            for p in projects.all()
        ]

    def dataset_list(project: str, request: Request) -> list[dict[str, Any]]:
        _params(request, set())
        if project != ADMIN_PROJECT and not projects.exists(project):
            raise _HTTPProblem(404, f"project: {project!r} does not exist", "project")
        counts = index.search(project, SeriesQuery(size=1)).facets.get("dataset", {})
        names = sorted(set(projects.datasets(project)) | set(counts))
        return [{"name": name, "series": counts.get(name, 0)} for name in names]

    # Blocking index calls run in the thread pool, errors become JSON answers.
    async def run(func: Any, *args: Any) -> Any:
        try:
            return await run_in_threadpool(func, *args)
        except _HTTPProblem as problem:
            return problem.response()

    @router.get("/api/series", summary="Search series")
    async def get_series(request: Request) -> Any:
        return await run(search, request)

    @router.get("/api/series/{uid}", summary="One series document")
    async def get_one_series(uid: str, request: Request) -> Any:
        return await run(one_series, uid, request)

    @router.get("/api/projects", summary="Projects")
    async def get_projects(request: Request) -> Any:
        return await run(project_list, request)

    @router.get("/api/projects/{project}/datasets", summary="Datasets of a project")
    async def get_datasets(project: str, request: Request) -> Any:
        return await run(dataset_list, project, request)

    return router
