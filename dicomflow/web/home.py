"""The home page: what the platform holds, where each area is, and how to send DICOM to it.

Routes (mounted behind the login)::

    GET /                              the page
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from dicomflow.access.policy import POLICY, Action, Principal
from dicomflow.config import Settings
from dicomflow.db.projects import ADMIN_PROJECT, ProjectInfo
from dicomflow.index.base import SeriesIndex, SeriesIndexError, SeriesQuery
from dicomflow.web.auth import principal_of
from dicomflow.web.layout import HOME, PageRenderer

__all__ = ["ProjectRow", "make_home_router", "receiver_address"]

LOGGER = logging.getLogger(__name__)
_user = Depends(principal_of)
#: Bind addresses that accept connections on every interface of the host.
_ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})
#: Bind addresses that accept connections from this host only.
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class ProjectList(Protocol):
    """What the page needs of :class:`~dicomflow.db.projects.ProjectStore`."""

    def all(self) -> list[ProjectInfo]: ...


@dataclass(frozen=True)
class ProjectRow:
    """A project as the home page lists it; ``series`` is ``None`` when the index did not answer."""

    name: str
    description: str
    datasets: int
    series: int | None
    role: str = ""


def receiver_address(settings: Settings, page_host: str) -> tuple[str, str | None]:
    """Where a sender reaches the DICOM receiver, and a note when only this host can.

    Parameters
    ----------
    settings
        ``receiver.host`` (the bind address).
    page_host
        The host name the browser used for this page: the address to show when the receiver
        listens on every interface.
    """
    bind = settings.receiver.host.strip()
    if bind in _ANY_ADDRESS:
        return page_host, None
    if bind in _LOOPBACK:
        return bind, (
            f"The receiver listens on {bind}, this machine only: set receiver.host to 0.0.0.0 "
            "to accept senders on the network."
        )
    return bind, None


def make_home_router(settings: Settings, index: SeriesIndex, projects: ProjectList) -> APIRouter:
    """The home page; mount it behind the platform's login.

    Parameters
    ----------
    settings
        The receiver's address, the PACS and the navigation's addresses.
    index
        Series counts per project (one facet query, the one the Series page makes too).
    projects
        The projects and their dataset counts.
    """
    router = APIRouter()
    pages = PageRenderer(settings)

    def project_rows(user: Principal) -> tuple[list[ProjectRow], str | None]:
        # The projects this user may read, and no count of any other.
        listed = [p for p in projects.all() if POLICY.may(user, Action.READ, p.name)]
        try:
            result = index.search(ADMIN_PROJECT, SeriesQuery(size=1))
        except (SeriesIndexError, SQLAlchemyError) as exc:
            # The page still says where everything is when the index is down.
            LOGGER.warning("home page: series counts unavailable: %s", exc)
            rows = [
                ProjectRow(p.name, p.description, p.datasets, None, _role(user, p.name))
                for p in listed
            ]
            return rows, f"series counts are unavailable: the index did not answer ({exc})"
        per_project = result.facets.get("project", {})
        rows = [
            ProjectRow(
                p.name,
                p.description,
                p.datasets,
                result.total if p.name == ADMIN_PROJECT else per_project.get(p.name, 0),
                _role(user, p.name),
            )
            for p in listed
        ]
        return rows, None

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home(request: Request, user: Principal = _user) -> HTMLResponse:
        rows, index_error = await run_in_threadpool(project_rows, user)
        host, host_note = receiver_address(settings, request.url.hostname or "HOST")
        # The first project a user made reads better in the examples than admin.
        example = next((r.name for r in rows if r.name != ADMIN_PROJECT), ADMIN_PROJECT)
        # The PACS's own pages need its credentials, which administrators hold.
        pacs_url = (
            f"{settings.pacs.orthanc_url}/app/explorer.html"
            if settings.pacs.managed and user.is_admin
            else None
        )
        return pages.render(
            "home.html",
            current=HOME,
            user=user,
            areas=pages.navigation(HOME, user),
            projects=rows,
            index_error=index_error,
            total_series=next((r.series for r in rows if r.name == ADMIN_PROJECT), None),
            receiver=settings.receiver,
            receiver_host=host,
            receiver_note=host_note,
            example_project=example,
            web_url=str(request.base_url).rstrip("/"),
            pacs_url=pacs_url,
        )

    return router


def _role(user: Principal, project: str) -> str:
    role = user.role(project)
    return role.value if role else ("administrator" if user.is_admin else "")
