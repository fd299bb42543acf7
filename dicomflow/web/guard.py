"""The web service's side of the access policy: one answer for "no such project" and "not yours".

Every route that acts on a project calls :func:`require` with the request's principal. A user
who may not even read the project gets exactly what a project that does not exist gets (404,
same words), so a denial reveals nothing; a user who may read it but not do this gets 403.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException

from dicomflow.access.policy import POLICY, AccessDeniedError, Action, Principal
from dicomflow.db.projects import ADMIN_PROJECT

__all__ = ["require", "unknown_project"]


def unknown_project(project: str) -> str:
    """The one answer for a project that does not exist or is not the user's."""
    return f"project {project!r} does not exist"


def require(
    principal: Principal,
    action: Action,
    project: str,
    exists: Callable[[str], bool] | None = None,
) -> None:
    """Raise unless ``principal`` may take ``action`` on ``project`` (and it exists).

    Parameters
    ----------
    exists
        When given, also answer 404 for a project that does not exist (``admin`` always does).

    Raises
    ------
    HTTPException
        404 (not allowed to read, or no such project) or 403 (may read, not this).
    """
    try:
        POLICY.check(principal, action, project)
    except AccessDeniedError as exc:
        if exc.hidden:
            raise HTTPException(404, unknown_project(project)) from None
        raise HTTPException(403, str(exc)) from None
    if exists is not None and project != ADMIN_PROJECT and not exists(project):
        raise HTTPException(404, unknown_project(project))
