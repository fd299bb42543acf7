"""The platform's web service: pages and REST API behind one login."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.engine import Engine

from dicomflow.config import Settings, load_settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import create_schema, make_engine
from dicomflow.web.auth import require_login


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
    projects = ProjectStore(engine)
    app = FastAPI(title="dicomflow", version="0.1.0")
    login = Depends(require_login(settings))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for router in _routers(settings, engine, projects):
        app.include_router(router, dependencies=[login])
    return app


def _routers(settings: Settings, engine: Engine, projects: ProjectStore) -> list[APIRouter]:
    """The doors: home page and layout, STOW-RS into the spool, uploads, search, series pages."""
    from dicomflow.index import open_index
    from dicomflow.intake.admission import KNOWN_PROJECTS_FILE, Admission
    from dicomflow.spool.store import Spool
    from dicomflow.web.home import make_home_router
    from dicomflow.web.layout import make_layout_router
    from dicomflow.web.search import make_search_router
    from dicomflow.web.series_files import make_series_files_router
    from dicomflow.web.series_page import make_series_page_router
    from dicomflow.web.stow import make_stow_router
    from dicomflow.web.uploads import make_uploads_router

    index = open_index(settings, engine=engine)
    spool = Spool.from_settings(settings)
    admission = Admission(projects, spool.root / KNOWN_PROJECTS_FILE)
    return [
        make_layout_router(),
        make_home_router(settings, index, projects),
        make_stow_router(spool, admission),
        make_uploads_router(settings, projects),
        make_search_router(index, projects),
        make_series_files_router(settings),
        make_series_page_router(settings, index, projects),
    ]
