"""Who may do what on which project: the one place every door and page asks.

A request carries a :class:`Principal` (the user it acts for, with his roles per project);
:meth:`Policy.may` answers whether he may take an :class:`Action` on a project. The answer is
computed from the principal alone, so asking costs no database round trip: the roles were
read once, when the request was authenticated.

Roles
-----
* platform administrator: everything, on every project (``admin``, which holds every series,
  is theirs only), users, projects, the audit trail and Airflow;
* ``owner`` of a project: what an uploader may, plus its members and its deletion;
* ``uploader``: read, upload through the page or STOW-RS, start imports;
* ``viewer``: read (search, series, thumbnails, reports, import reports).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from dicomflow.db.projects import ADMIN_PROJECT

__all__ = [
    "POLICY",
    "AccessDeniedError",
    "Action",
    "Policy",
    "Principal",
    "Role",
]


class Role(StrEnum):
    """A user's role in one project."""

    OWNER = "owner"
    UPLOADER = "uploader"
    VIEWER = "viewer"

    @classmethod
    def parse(cls, value: str) -> Role:
        """The role named ``value``; ``ValueError`` naming the roles otherwise."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            names = ", ".join(r.value for r in cls)
            raise ValueError(f"role {value!r}: expected one of {names}") from None


class Action(StrEnum):
    """What a request does. Project actions need a project; platform actions do not."""

    # -- on a project
    READ = "read"
    UPLOAD = "upload"
    IMPORT = "import"
    MANAGE_MEMBERS = "manage-members"
    DELETE_PROJECT = "delete-project"
    # -- on the platform
    CREATE_PROJECT = "create-project"
    MANAGE_USERS = "manage-users"
    READ_AUDIT = "read-audit"
    USE_AIRFLOW = "use-airflow"

    @property
    def on_project(self) -> bool:
        """Whether the action is about one project."""
        return self in _PROJECT_ACTIONS


_PROJECT_ACTIONS = frozenset(
    {Action.READ, Action.UPLOAD, Action.IMPORT, Action.MANAGE_MEMBERS, Action.DELETE_PROJECT}
)
#: What each role allows, each a superset of the one below it.
GRANTS: Mapping[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.UPLOADER: frozenset({Action.READ, Action.UPLOAD, Action.IMPORT}),
    Role.OWNER: frozenset(_PROJECT_ACTIONS),
}


@dataclass(frozen=True)
class Principal:
    """The user a request acts for.

    Attributes
    ----------
    name
        The account name.
    is_admin
        A platform administrator.
    roles
        The user's role per project.
    via
        How the request proved it: ``session`` (a signed-in browser), ``token``, ``basic``
        (a password in HTTP Basic), ``shell`` (the CLI on the platform's host).
    csrf_token
        The session's CSRF token (``session`` only).
    """

    name: str
    is_admin: bool = False
    roles: Mapping[str, Role] = field(default_factory=dict)
    via: str = "session"
    csrf_token: str = ""

    def role(self, project: str) -> Role | None:
        """The user's role in ``project`` (``None``: no member)."""
        return self.roles.get(project)


class AccessDeniedError(PermissionError):
    """A principal may not take an action.

    Attributes
    ----------
    hidden
        The principal may not even see the project: answer as for one that does not exist,
        so a denial reveals nothing.
    """

    def __init__(self, message: str, *, hidden: bool) -> None:
        super().__init__(message)
        self.hidden = hidden


class Policy:
    """The access rules; :data:`POLICY` is the platform's one instance."""

    def may(self, principal: Principal, action: Action, project: str | None = None) -> bool:
        """Whether ``principal`` may take ``action`` (on ``project`` for a project action).

        Raises
        ------
        ValueError
            A project action without a project.
        """
        if principal.is_admin:
            return True
        if not action.on_project:
            return False
        if project is None:
            raise ValueError(f"action {action.value!r} needs a project")
        if project == ADMIN_PROJECT:
            # The admin project holds every series: administrators only.
            return False
        role = principal.role(project)
        return role is not None and action in GRANTS[role]

    def check(self, principal: Principal, action: Action, project: str | None = None) -> None:
        """Raise :class:`AccessDeniedError` unless :meth:`may` allows it.

        The error is ``hidden`` when the principal may not read the project: the caller then
        answers exactly as for a project that does not exist.
        """
        if self.may(principal, action, project):
            return
        if action.on_project and not self.may(principal, Action.READ, project):
            raise AccessDeniedError(f"project {project!r} does not exist", hidden=True)
        what = f"{action.value} in project {project!r}" if action.on_project else action.value
        raise AccessDeniedError(
            f"{principal.name} may not {what}"
            + ("" if not action.on_project else f" (role: {_role_name(principal, project)})"),
            hidden=False,
        )

    def visible(self, principal: Principal, projects: Iterable[str]) -> list[str]:
        """The projects of ``projects`` the principal may read, in the given order."""
        return [p for p in projects if self.may(principal, Action.READ, p)]

    def allowed(self, principal: Principal, action: Action, projects: Iterable[str]) -> list[str]:
        """The projects of ``projects`` where the principal may take ``action``."""
        return [p for p in projects if self.may(principal, action, p)]


def _role_name(principal: Principal, project: str | None) -> str:
    role = principal.role(project or "")
    return role.value if role else "none"


#: The platform's access rules.
POLICY = Policy()
