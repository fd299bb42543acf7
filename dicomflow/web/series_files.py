"""REST endpoints for a series' files: its thumbnail, its validation report, where its parts are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from dicomflow.access.policy import Action, Principal
from dicomflow.catalog import (
    SeriesNotFoundError,
    describe_series,
    thumbnail_png,
    validation_report,
)
from dicomflow.config import Settings
from dicomflow.db.projects import ADMIN_PROJECT
from dicomflow.storage.client import ObjectNotFoundError
from dicomflow.web.auth import principal_of
from dicomflow.web.guard import require

Fetch = Callable[[Settings, str, str], bytes]
_user = Depends(principal_of)


class ProjectLookup(Protocol):
    """What the router needs of :class:`~dicomflow.db.projects.ProjectStore`."""

    def exists(self, name: str) -> bool: ...


def make_series_files_router(settings: Settings, projects: ProjectLookup) -> APIRouter:
    """A router with ``/api/series/{uid}/thumbnail`` and ``/validation-report``.

    Mount it behind the platform's login; ``project`` scopes the lookup like the search API
    (the user must be allowed to read it; one he may not read answers as one that does not
    exist, and so does a series the project does not hold: nothing says it is elsewhere).
    """
    router = APIRouter()

    async def fetch(fetcher: Fetch, uid: str, project: str, what: str) -> bytes:
        try:
            return await run_in_threadpool(fetcher, settings, uid, project)
        except SeriesNotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except ObjectNotFoundError:
            raise HTTPException(status_code=404, detail=f"series {uid} has no {what}") from None

    @router.get("/api/series/{uid}/summary", summary="A series' document and where its parts are")
    async def summary(
        uid: str, project: str = Query(ADMIN_PROJECT), principal: Principal = _user
    ) -> dict[str, Any]:
        """The document, the PACS's instance count, and the thumbnail's and report's places.

        What ``dicomflow series show`` prints: a PACS or object store that does not answer is
        said in the answer, not an error.
        """
        await run_in_threadpool(require, principal, Action.READ, project, projects.exists)
        try:
            described: dict[str, Any] = await run_in_threadpool(
                describe_series, settings, uid, project
            )
        except SeriesNotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return described

    @router.get("/api/series/{uid}/thumbnail", summary="Thumbnail (PNG) of a series")
    async def thumbnail(
        uid: str, project: str = Query(ADMIN_PROJECT), principal: Principal = _user
    ) -> Response:
        await run_in_threadpool(require, principal, Action.READ, project, projects.exists)
        data = await fetch(thumbnail_png, uid, project, "thumbnail")
        return Response(data, media_type="image/png")

    @router.get("/api/series/{uid}/validation-report", summary="Validation report (HTML)")
    async def report(
        uid: str, project: str = Query(ADMIN_PROJECT), principal: Principal = _user
    ) -> Response:
        await run_in_threadpool(require, principal, Action.READ, project, projects.exists)
        data = await fetch(validation_report, uid, project, "validation report")
        return Response(data, media_type="text/html; charset=utf-8")

    return router
