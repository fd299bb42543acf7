"""The platform's web service: pages, REST API and the STOW-RS door, behind the sign-in.

Every route but ``/healthz``, the sign-in page and the shared stylesheet needs a signed-in
session, an API token or HTTP Basic (see :mod:`dicomflow.web.auth`); what a user may do on a
project is asked of :data:`dicomflow.access.policy.POLICY`. ``/docs`` and ``/openapi.json``
are behind the sign-in too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.engine import Engine

from dicomflow.access.authenticate import Authenticator
from dicomflow.access.bootstrap import ensure_accounts
from dicomflow.config import Settings, load_settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import create_schema, make_engine
from dicomflow.web.auth import WebAuth, install_auth, make_auth_router, principal_of
from dicomflow.web.layout import PageRenderer, make_layout_router


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the web application.

    Parameters
    ----------
    settings
        The platform settings; loaded from the configuration when omitted (uvicorn's factory).
    """
    settings = settings or load_settings(create_secrets=False)
    engine = make_engine(settings.platform_db_url)
    # The service may start on a database an older version set up.
    create_schema(engine)
    ensure_accounts(engine, settings)
    projects = ProjectStore(engine)
    # The API's description and its browser page are behind the sign-in (added below).
    app = FastAPI(
        title="dicomflow", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None
    )
    auth = WebAuth(settings, Authenticator(engine, settings.auth))
    install_auth(app, auth)
    pages = PageRenderer(settings)
    login = Depends(principal_of)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(make_layout_router())
    app.include_router(make_auth_router(auth, pages))
    app.include_router(_api_docs(app), dependencies=[login])
    for router in _routers(settings, engine, projects, auth):
        app.include_router(router, dependencies=[login])
    return app


def _api_docs(app: FastAPI) -> APIRouter:
    """``/openapi.json`` and the Swagger page, for signed-in users only."""
    router = APIRouter()

    @router.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="dicomflow: REST API")

    return router


def _routers(
    settings: Settings, engine: Engine, projects: ProjectStore, auth: WebAuth
) -> list[APIRouter]:
    """The doors: home page, STOW-RS into the spool, uploads, search, series, people."""
    from dicomflow.index import open_index
    from dicomflow.intake.admission import KNOWN_PROJECTS_FILE, Admission
    from dicomflow.spool.store import Spool
    from dicomflow.web.home import make_home_router
    from dicomflow.web.people import make_people_router
    from dicomflow.web.search import make_search_router
    from dicomflow.web.series_files import make_series_files_router
    from dicomflow.web.series_page import make_series_page_router
    from dicomflow.web.stow import make_stow_router
    from dicomflow.web.uploads import make_uploads_router

    index = open_index(settings, engine=engine)
    spool = Spool.from_settings(settings)
    admission = Admission(projects, spool.root / KNOWN_PROJECTS_FILE)
    audit = auth.authenticator.audit
    routers: list[Any] = [
        make_home_router(settings, index, projects),
        make_stow_router(spool, admission, audit),
        make_uploads_router(settings, projects, audit=audit),
        make_search_router(index, projects),
        make_series_files_router(settings, projects),
        make_series_page_router(settings, index, projects),
        make_people_router(settings, engine, index),
    ]
    return routers
