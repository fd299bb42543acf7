"""The Series pages: search with facets, and one series in detail (tags, validation, PACS).

The pages are templates in the shared layout (:mod:`dicomflow.web.layout`) plus a small
script that reads the REST API
(:mod:`dicomflow.web.search`, :mod:`dicomflow.web.series_files`); this router adds the one
call they need that the API did not have: a series' tags made readable and its links into the
PACS. Every value from a DICOM header reaches the page as JSON and is put into it as text,
never as markup.

Routes (mounted behind the login)::

    GET /series                        the search page
    GET /series/static/{name}          its script and style
    GET /series/{uid}?project=         one series (the page; its data comes from the call below)
    GET /api/series/{uid}/details?project=
                                       document, readable tags, PACS links
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool

from dicomflow.access.policy import Action, Principal
from dicomflow.config import Settings
from dicomflow.db.projects import ADMIN_PROJECT
from dicomflow.dicom.document import is_dicom_field
from dicomflow.dicom.fields import readable_tags
from dicomflow.index.base import STUDY_UID, SeriesIndex
from dicomflow.pacs.client import DicomWebClient, PacsError, orthanc_series_id
from dicomflow.web.auth import principal_of
from dicomflow.web.guard import require
from dicomflow.web.layout import PageRenderer

__all__ = ["make_series_page_router", "pacs_links"]

_user = Depends(principal_of)

STATIC_DIR = Path(__file__).parent / "static" / "series"
_STATIC = {
    "common.js": "text/javascript",
    "series.js": "text/javascript",
    "detail.js": "text/javascript",
    "series.css": "text/css",
}
# Platform fields too internal for the page's summary table (the first four: documents of
# versions before the series' records were kept).
_HIDDEN_PLATFORM_FIELDS = frozenset(
    {
        "sop_instance_uids",
        "instance_numbers",
        "instance_counts",
        "archived_batch_ids",
        "schema_version",
        "header_notes",
    }
)


class ProjectLookup(Protocol):
    """What the router needs of :class:`~dicomflow.db.projects.ProjectStore`."""

    def exists(self, name: str) -> bool: ...


def pacs_links(settings: Settings, study_uid: str, series_uid: str) -> dict[str, Any]:
    """Where a browser finds the series in the PACS.

    Returns
    -------
    dict
        ``dicomweb_url`` (always), ``viewer_url`` (Orthanc's explorer, only for the managed
        Orthanc and only when Orthanc knows the series), ``orthanc_id`` and, when the lookup
        failed, ``error``.
    """
    pacs = DicomWebClient.from_settings(settings, attempts=1)
    links: dict[str, Any] = {
        "dicomweb_url": pacs.series_url(study_uid, series_uid),
        "viewer_url": None,
        "orthanc_id": None,
    }
    pacs.close()
    try:
        orthanc_id = orthanc_series_id(settings, series_uid)
    except PacsError as exc:
        links["error"] = str(exc)
        return links
    if orthanc_id is not None:
        links["orthanc_id"] = orthanc_id
        links["viewer_url"] = (
            f"{settings.pacs.orthanc_url}/app/explorer.html#series?uuid={orthanc_id}"
        )
    return links


def make_series_page_router(
    settings: Settings, index: SeriesIndex, projects: ProjectLookup
) -> APIRouter:
    """The Series pages and their details call; mount it behind the platform's login.

    Parameters
    ----------
    settings
        The PACS addresses (links into it), the login, the navigation's addresses.
    index
        The series index.
    projects
        Which projects exist.
    """
    router = APIRouter()
    pages = PageRenderer(settings)

    @router.get("/series", response_class=HTMLResponse, include_in_schema=False)
    def search_page(user: Principal = _user) -> HTMLResponse:
        return pages.render("series/index.html", current="series", user=user)

    @router.get("/series/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in _STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=_STATIC[name])

    @router.get("/series/{uid}", response_class=HTMLResponse, include_in_schema=False)
    def detail_page(uid: str, user: Principal = _user) -> HTMLResponse:
        # The page is the same for every series: its script reads the UID from the address.
        return pages.render("series/detail.html", current="series", user=user)

    def details(uid: str, project: str, principal: Principal) -> dict[str, Any]:
        require(principal, Action.READ, project, projects.exists)
        doc = index.get(project, uid)
        if doc is None:
            raise HTTPException(404, f"series {uid} is not in project {project!r}")
        platform = {
            k: v
            for k, v in sorted(doc.items())
            if not is_dicom_field(k) and k not in _HIDDEN_PLATFORM_FIELDS
        }
        return {
            "project": project,
            "series_uid": uid,
            "document": doc,
            "platform": platform,
            "tags": [row.as_dict() for row in readable_tags(doc)],
            "pacs": pacs_links(settings, str(doc.get(STUDY_UID, "")), uid),
        }

    @router.get("/api/series/{uid}/details", summary="A series' tags (readable) and PACS links")
    async def get_details(
        uid: str, project: str = Query(ADMIN_PROJECT), user: Principal = _user
    ) -> dict[str, Any]:
        return await run_in_threadpool(details, uid, project, user)

    return router
