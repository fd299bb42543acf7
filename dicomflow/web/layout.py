"""The layout every page shares: one header, one navigation, one stylesheet.

The navigation is the list :data:`NAVIGATION`; the header (``templates/base.html``) and the
home page's list of areas are drawn from it, so a page added later (Activity, Projects, a
user's own page) is one :class:`NavEntry` here plus its template extending ``base.html``.
Pages are Jinja2 templates with autoescaping: a value put into a page is text, never markup.

Routes (mounted behind the login)::

    GET /static/{name}                 the shared stylesheet
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from dicomflow.config import Settings

__all__ = ["HOME", "NAVIGATION", "NavEntry", "PageRenderer", "make_layout_router"]

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static" / "layout"
_STATIC = {"app.css": "text/css"}
#: The ``current`` of the home page, which the brand link stands for (no navigation entry).
HOME = "home"


@dataclass(frozen=True)
class NavEntry:
    """One place in the navigation.

    Attributes
    ----------
    key
        What a page passes as ``current`` to be marked; also ``data-nav`` on the link.
    label
        The link's text.
    href
        The address, or a function of the settings for one configured elsewhere (Airflow).
    description
        What a user finds there; the home page lists it under the link.
    new_tab
        Another application (its own login and navigation): opened in a new tab.
    """

    key: str
    label: str
    href: str | Callable[[Settings], str]
    description: str
    new_tab: bool = False

    def url(self, settings: Settings) -> str:
        """The address with the settings applied."""
        return self.href if isinstance(self.href, str) else self.href(settings)


#: Every page's navigation, in order.
NAVIGATION: tuple[NavEntry, ...] = (
    NavEntry(
        "series",
        "Series",
        "/series",
        "Search every received series by any tag; thumbnails, validation reports and links "
        "into the PACS.",
    ),
    NavEntry(
        "uploads",
        "Data Upload",
        "/uploads",
        "Upload files and folders from the browser (resumable) and import them into a project.",
    ),
    NavEntry(
        "airflow",
        "Airflow",
        lambda settings: settings.airflow.base_url,
        "The pipeline's runs: processing of received batches and imports, with their logs.",
        new_tab=True,
    ),
    NavEntry(
        "api",
        "API",
        "/docs",
        "The REST API, documented and callable from the browser (OpenAPI).",
    ),
)


@dataclass(frozen=True)
class NavLink:
    """A navigation entry as one page draws it."""

    key: str
    label: str
    url: str
    description: str
    new_tab: bool
    current: bool


class PageRenderer:
    """Renders a page's template inside the shared layout.

    Parameters
    ----------
    settings
        Addresses configured elsewhere (Airflow) that the navigation links to.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def navigation(self, current: str) -> list[NavLink]:
        """The navigation with ``current`` marked.

        Raises
        ------
        ValueError
            When ``current`` is neither :data:`HOME` nor a key of :data:`NAVIGATION`.
        """
        keys = [entry.key for entry in NAVIGATION]
        if current != HOME and current not in keys:
            raise ValueError(f"current page {current!r} is not in the navigation {keys}")
        return [
            NavLink(
                e.key, e.label, e.url(self._settings), e.description, e.new_tab, e.key == current
            )
            for e in NAVIGATION
        ]

    def render(self, template: str, *, current: str, user: str, **context: Any) -> HTMLResponse:
        """The page ``template`` (under ``templates/``) for a signed-in ``user``.

        Parameters
        ----------
        template
            Its path under ``templates/``; it extends ``base.html``.
        current
            The navigation key of the page (or :data:`HOME`), marked in the header.
        user
            Who is signed in, shown in the header.
        context
            The template's own values.
        """
        page = self._env.get_template(template).render(
            navigation=self.navigation(current), current=current, user=user, **context
        )
        return HTMLResponse(page)


def make_layout_router() -> APIRouter:
    """The shared stylesheet; mount it behind the platform's login like the pages."""
    router = APIRouter()

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in _STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=_STATIC[name])

    return router
