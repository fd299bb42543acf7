"""The layout every page shares: one header, one navigation, one stylesheet.

The navigation is the list :data:`NAVIGATION`; the header (``templates/base.html``) and the
home page's list of areas are drawn from it, so a page added later (Activity, a dashboard) is
one :class:`NavEntry` here plus its template extending ``base.html``. Entries for
administrators only are left out for everyone else. The header carries the user menu (the
user's own page, sign-out) and the session's CSRF token for the pages' scripts and forms.
Pages are Jinja2 templates with autoescaping: a value put into a page is text, never markup.

Routes (not behind the login: the sign-in page uses the stylesheet too)::

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

from dicomflow.access.policy import Principal
from dicomflow.config import Settings

__all__ = ["ACCOUNT", "HOME", "NAVIGATION", "NavEntry", "PageRenderer", "make_layout_router"]

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static" / "layout"
_STATIC = {
    "app.css": "text/css",
    "activity-badge.js": "text/javascript",
    "page.js": "text/javascript",
}
#: The ``current`` of the home page, which the brand link stands for (no navigation entry).
HOME = "home"
#: The ``current`` of the user's own page (the user menu, no navigation entry).
ACCOUNT = "account"
#: The form field of the CSRF token (also in :mod:`dicomflow.web.auth`).
CSRF_FIELD = "csrf_token"


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
    admin_only
        Shown to platform administrators only.
    """

    key: str
    label: str
    href: str | Callable[[Settings], str]
    description: str
    new_tab: bool = False
    admin_only: bool = False

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
        "activity",
        "Activity",
        "/activity",
        "Every batch, upload, import and watched-folder pass of your projects, newest first: "
        "state, counts, rates, failures with their step, links to the series and the run.",
    ),
    NavEntry(
        "projects",
        "Projects",
        "/projects",
        "Your projects and your role in each; owners manage members here.",
    ),
    NavEntry(
        "users",
        "Users",
        "/users",
        "Accounts: create, disable, set passwords, make administrators.",
        admin_only=True,
    ),
    NavEntry(
        "audit",
        "Audit",
        "/audit",
        "Who uploaded, imported, deleted, changed a membership or a token, signed in; when and "
        "from where.",
        admin_only=True,
    ),
    NavEntry(
        "airflow",
        "Airflow",
        lambda settings: settings.airflow.base_url,
        "The pipeline's runs: processing of received batches and imports, with their logs "
        "(administrators, with their platform account).",
        new_tab=True,
        admin_only=True,
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

    def navigation(self, current: str | None, user: Principal | None = None) -> list[NavLink]:
        """The navigation with ``current`` marked, as ``user`` may see it.

        Parameters
        ----------
        current
            A key of :data:`NAVIGATION`, :data:`HOME`, ``account`` (the user's own page) or
            ``None`` (a page outside the navigation).
        user
            Entries for administrators only are left out for anybody else (``None``: all).

        Raises
        ------
        ValueError
            When ``current`` is none of those.
        """
        keys = [entry.key for entry in NAVIGATION]
        if current not in (HOME, ACCOUNT, None) and current not in keys:
            raise ValueError(f"current page {current!r} is not in the navigation {keys}")
        return [
            NavLink(
                e.key, e.label, e.url(self._settings), e.description, e.new_tab, e.key == current
            )
            for e in NAVIGATION
            if user is None or user.is_admin or not e.admin_only
        ]

    def render(
        self,
        template: str,
        *,
        current: str | None,
        user: Principal | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """The page ``template`` (under ``templates/``) for a signed-in ``user``.

        Parameters
        ----------
        template
            Its path under ``templates/``; it extends ``base.html``.
        current
            The navigation key of the page (or :data:`HOME`), marked in the header.
        user
            Who is signed in (name and menu in the header, the session's CSRF token);
            ``None`` on the sign-in page (no navigation).
        status_code
            The answer's HTTP status.
        context
            The template's own values.
        """
        page = self._env.get_template(template).render(
            navigation=self.navigation(current, user) if user is not None else [],
            current=current,
            user=user.name if user is not None else None,
            is_admin=bool(user and user.is_admin),
            csrf_token=user.csrf_token if user is not None else "",
            csrf_field=CSRF_FIELD,
            **context,
        )
        return HTMLResponse(page, status_code=status_code)


def make_layout_router() -> APIRouter:
    """The shared stylesheet (public: the sign-in page needs it, and it holds no data)."""
    router = APIRouter()

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in _STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=_STATIC[name])

    return router
