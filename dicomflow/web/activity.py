"""The Activity page and its JSON: what came in and what became of it, newest first.

Routes (mounted behind the login)::

    GET /activity                  the page (refreshes itself every few seconds)
    GET /activity/static/{name}    its script
    GET /api/activity?project=&state=&limit=
                                   the items (:mod:`dicomflow.curation.activity`)
    GET /api/activity/badge        running and failed counts for the header's badge

Every answer is scoped to the projects the user may read (administrators: all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from dicomflow.access.policy import POLICY, Action, Principal
from dicomflow.config import Settings
from dicomflow.curation.activity import ActivityItem, activity, badge
from dicomflow.db.audit import AuditStore
from dicomflow.db.projects import ProjectStore
from dicomflow.spool.store import Spool
from dicomflow.storage.client import ObjectStore
from dicomflow.web.auth import principal_of
from dicomflow.web.guard import require
from dicomflow.web.layout import PageRenderer

__all__ = ["make_activity_router"]

_user = Depends(principal_of)
STATIC_DIR = Path(__file__).parent / "static" / "activity"
_STATIC = {"activity.js": "text/javascript"}
STATES = ("receiving", "queued", "processing", "done", "failed")


def make_activity_router(settings: Settings, engine: Engine, projects: ProjectStore) -> APIRouter:
    """The Activity page and its JSON; mount it behind the platform's login."""
    router = APIRouter()
    pages = PageRenderer(settings)
    spool = Spool.from_settings(settings)
    audit = AuditStore(engine)
    store = ObjectStore.from_settings(settings)

    def items(user: Principal, project: str | None, limit: int) -> list[ActivityItem]:
        if project is not None:
            require(user, Action.READ, project, projects.exists)
            scope: list[str] | None = [project]
        else:
            scope = None if user.is_admin else POLICY.visible(user, projects.names())
        return activity(settings, spool, audit, store, scope, limit=limit)

    @router.get("/activity", response_class=HTMLResponse, include_in_schema=False)
    def page(user: Principal = _user) -> HTMLResponse:
        return pages.render("activity/index.html", current="activity", user=user)

    @router.get("/activity/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in _STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=_STATIC[name])

    @router.get("/api/activity", summary="Batches, imports and watched-folder passes, newest first")
    async def list_activity(
        project: str | None = None,
        state: str | None = None,
        limit: int = Query(200, ge=1, le=1000),
        user: Principal = _user,
    ) -> dict[str, Any]:
        if state is not None and state not in STATES:
            raise HTTPException(400, f"state {state!r}: expected one of {', '.join(STATES)}")
        found = await run_in_threadpool(items, user, project, limit)
        chosen = [i for i in found if state is None or i.state == state]
        return {"items": [i.as_dict() for i in chosen], "counts": badge(found)}

    @router.get("/api/activity/badge", summary="Running and failed imports of your projects")
    async def activity_badge(user: Principal = _user) -> dict[str, int]:
        return badge(await run_in_threadpool(items, user, None, 1000))

    return router
