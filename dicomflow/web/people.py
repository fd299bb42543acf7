"""The pages about people: Projects (members), Users, the user's own page (tokens), Audit.

Server-rendered pages with plain forms (each carrying the session's CSRF token); every change
goes through :class:`~dicomflow.access.manage.AccessManager` after asking the access policy,
so the same rules hold as for the CLI, and every change is in the audit trail.

Routes (mounted behind the login)::

    GET  /projects                            the projects the user may read, his role in each;
                                              members for owners; create for administrators
    POST /projects                            create a project (administrators)
    POST /projects/{project}/members          add a member or change his role (owners)
    POST /projects/{project}/members/remove   end a membership (owners)
    POST /projects/{project}/delete           delete the project (owners; one holding series:
                                              administrators)
    GET  /api/projects/{project}/members      the members (owners)
    GET  /users                               every account (administrators)
    POST /users                               create an account
    POST /users/{name}/password|disable|enable|admin|delete
    GET  /account                             the user's own page: roles, password, API tokens
    POST /account/password                    change one's password (the current one needed)
    POST /account/tokens                      create a token (shown once, on the answer only)
    POST /account/tokens/{id}/revoke          revoke one's token
    GET  /audit                               the audit trail (administrators)
    GET  /api/audit                           the same as JSON
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from dicomflow.access.audit import parse_since
from dicomflow.access.manage import AccessManager, AccessRuleError
from dicomflow.access.passwords import MIN_PASSWORD_LENGTH, WeakPasswordError
from dicomflow.access.policy import POLICY, Action, Principal, Role
from dicomflow.config import Settings
from dicomflow.db.accounts import InvalidUserNameError, UnknownUserError
from dicomflow.db.audit import AuditStore
from dicomflow.db.credentials import UnknownTokenError
from dicomflow.db.projects import ADMIN_PROJECT, InvalidNameError
from dicomflow.index.base import SeriesIndex
from dicomflow.web.auth import client_address, principal_of
from dicomflow.web.guard import require
from dicomflow.web.layout import ACCOUNT, PageRenderer

__all__ = ["make_people_router"]

_user = Depends(principal_of)
#: What a refused change is answered with: (status, message) comes from the error.
_REFUSALS = (
    AccessRuleError,
    WeakPasswordError,
    InvalidUserNameError,
    InvalidNameError,
    UnknownUserError,
    UnknownTokenError,
    ValueError,
)


def make_people_router(settings: Settings, engine: Engine, index: SeriesIndex) -> APIRouter:
    """The Projects, Users, account and Audit pages; mount it behind the platform's login.

    Parameters
    ----------
    settings
        Password hashing, the navigation's addresses, the object store (project deletion).
    engine
        The platform database.
    index
        The series index (a deleted project's copy of its series is removed from it).
    """
    router = APIRouter()
    pages = PageRenderer(settings)
    manager = AccessManager(engine, settings.auth)
    audit_store = AuditStore(engine)

    def back(path: str, notice: str) -> RedirectResponse:
        return RedirectResponse(f"{path}?notice={quote(notice)}", status_code=303)

    async def change(
        request: Request, path: str, notice: str, page: Any, func: Any, *args: Any, **kw: Any
    ) -> Response:
        """Run a change; redirect with ``notice``, or show the page again with the refusal."""
        try:
            await run_in_threadpool(func, *args, address=client_address(request), **kw)
        except _REFUSALS as exc:
            status = 404 if isinstance(exc, (UnknownUserError, UnknownTokenError)) else 400
            return await run_in_threadpool(page, str(exc), status)
        return back(path, notice)

    # -- projects -----------------------------------------------------------------------------

    def projects_page(
        user: Principal, error: str = "", status: int = 200, notice: str = ""
    ) -> HTMLResponse:
        rows = []
        for info in manager.projects.all():
            if not POLICY.may(user, Action.READ, info.name):
                continue
            manages = POLICY.may(user, Action.MANAGE_MEMBERS, info.name)
            role = user.role(info.name)
            rows.append(
                {
                    "name": info.name,
                    "description": info.description,
                    "datasets": info.datasets,
                    "role": role.value if role else "administrator",
                    "manages": manages and info.name != ADMIN_PROJECT,
                    "deletes": POLICY.may(user, Action.DELETE_PROJECT, info.name)
                    and info.name != ADMIN_PROJECT,
                    "members": manager.accounts.members(info.name) if manages else [],
                }
            )
        return pages.render(
            "people/projects.html",
            current="projects",
            user=user,
            status_code=status,
            projects=rows,
            roles=[r.value for r in Role],
            can_create=POLICY.may(user, Action.CREATE_PROJECT),
            error=error,
            notice=notice,
        )

    @router.get("/projects", response_class=HTMLResponse, include_in_schema=False)
    def get_projects(user: Principal = _user, notice: str = "") -> HTMLResponse:
        return projects_page(user, notice=notice)

    @router.post("/projects", include_in_schema=False)
    async def create_project(
        request: Request,
        name: str = Form(...),
        description: str = Form(""),
        owner: str = Form(""),
        user: Principal = _user,
    ) -> Response:
        require_platform(user, Action.CREATE_PROJECT)
        name = name.strip()
        return await change(
            request,
            "/projects",
            f"project {name} created",
            lambda e, s: projects_page(user, e, s),
            manager.create_project,
            user.name,
            name,
            description.strip(),
            owner=owner.strip() or None,
        )

    @router.post("/projects/{project}/members", include_in_schema=False)
    async def set_member(
        project: str,
        request: Request,
        member: str = Form(...),
        role: str = Form(...),
        user: Principal = _user,
    ) -> Response:
        await run_in_threadpool(
            require, user, Action.MANAGE_MEMBERS, project, manager.projects.exists
        )
        try:
            parsed = Role.parse(role)
        except ValueError as exc:
            return await run_in_threadpool(projects_page, user, str(exc), 400)
        return await change(
            request,
            "/projects",
            f"{member.strip()} is {parsed.value} of {project}",
            lambda e, s: projects_page(user, e, s),
            manager.set_member,
            user.name,
            project,
            member.strip(),
            parsed,
        )

    @router.post("/projects/{project}/members/remove", include_in_schema=False)
    async def remove_member(
        project: str, request: Request, member: str = Form(...), user: Principal = _user
    ) -> Response:
        await run_in_threadpool(
            require, user, Action.MANAGE_MEMBERS, project, manager.projects.exists
        )
        return await change(
            request,
            "/projects",
            f"{member} is no longer a member of {project}",
            lambda e, s: projects_page(user, e, s),
            manager.remove_member,
            user.name,
            project,
            member,
        )

    @router.post("/projects/{project}/delete", include_in_schema=False)
    async def delete_project(
        project: str, request: Request, confirm: str = Form(""), user: Principal = _user
    ) -> Response:
        await run_in_threadpool(
            require, user, Action.DELETE_PROJECT, project, manager.projects.exists
        )
        if project == ADMIN_PROJECT:
            return await run_in_threadpool(
                projects_page, user, "the admin project cannot be deleted", 400
            )
        if confirm.strip() != project:
            return await run_in_threadpool(
                projects_page, user, f"type the project's name ({project}) to delete it", 400
            )
        series = await run_in_threadpool(manager.projects.series_of, project)
        if series and not user.is_admin:
            return await run_in_threadpool(
                projects_page,
                user,
                f"project {project} holds {len(series)} series: only an administrator can "
                "delete it (its series stay in the PACS)",
                403,
            )
        from dicomflow.catalog import remove_project_data
        from dicomflow.storage.client import ObjectStore

        await run_in_threadpool(
            remove_project_data, index, ObjectStore.from_settings(settings), project, series
        )
        await run_in_threadpool(
            lambda: manager.delete_project(user.name, project, address=client_address(request))
        )
        return back("/projects", f"project {project} deleted")

    @router.get("/api/projects/{project}/members", summary="Members of a project (owners)")
    def members(project: str, user: Principal = _user) -> list[dict[str, Any]]:
        require(user, Action.MANAGE_MEMBERS, project, manager.projects.exists)
        return [
            {
                "user": m.user,
                "role": m.role,
                "since": m.created_at.isoformat(),
                "disabled": m.disabled,
            }
            for m in manager.accounts.members(project)
        ]

    # -- users (administrators) ---------------------------------------------------------------

    def require_platform(user: Principal, action: Action) -> None:
        if not POLICY.may(user, action):
            raise HTTPException(403, f"only platform administrators may {action.value}")

    def users_page(
        user: Principal, error: str = "", status: int = 200, notice: str = ""
    ) -> HTMLResponse:
        return pages.render(
            "people/users.html",
            current="users",
            user=user,
            status_code=status,
            accounts=manager.accounts.all(),
            min_password=MIN_PASSWORD_LENGTH,
            error=error,
            notice=notice,
        )

    @router.get("/users", response_class=HTMLResponse, include_in_schema=False)
    def get_users(user: Principal = _user, notice: str = "") -> HTMLResponse:
        require_platform(user, Action.MANAGE_USERS)
        return users_page(user, notice=notice)

    @router.post("/users", include_in_schema=False)
    async def create_user(
        request: Request,
        name: str = Form(...),
        password: str = Form(...),
        admin: str = Form(""),
        user: Principal = _user,
    ) -> Response:
        require_platform(user, Action.MANAGE_USERS)
        name = name.strip()

        def create(address: str) -> None:
            if not manager.create_user(
                user.name, name, password, admin=bool(admin), address=address
            ):
                raise AccessRuleError(f"user {name!r} exists already")

        return await change(
            request, "/users", f"user {name} created", lambda e, s: users_page(user, e, s), create
        )

    @router.post("/users/{name}/{what}", include_in_schema=False)
    async def change_user(
        name: str,
        what: str,
        request: Request,
        password: str = Form(""),
        admin: str = Form(""),
        user: Principal = _user,
    ) -> Response:
        require_platform(user, Action.MANAGE_USERS)
        page = lambda e, s: users_page(user, e, s)  # noqa: E731
        actions: dict[str, tuple[Any, tuple[Any, ...], str]] = {
            "password": (
                manager.set_password,
                (user.name, name, password),
                f"new password for {name}; their sessions ended",
            ),
            "disable": (manager.set_disabled, (user.name, name, True), f"{name} disabled"),
            "enable": (manager.set_disabled, (user.name, name, False), f"{name} enabled"),
            "admin": (
                manager.set_admin,
                (user.name, name, admin == "on"),
                f"{name} is {'an' if admin == 'on' else 'no'} administrator",
            ),
            "delete": (manager.delete_user, (user.name, name), f"{name} deleted"),
        }
        if what not in actions:
            raise HTTPException(404, f"no such change {what!r}")
        func, args, notice = actions[what]
        return await change(request, "/users", notice, page, func, *args)

    # -- the user's own page ------------------------------------------------------------------

    def account_page(
        user: Principal,
        error: str = "",
        status: int = 200,
        notice: str = "",
        new_token: str = "",
    ) -> HTMLResponse:
        return pages.render(
            "people/account.html",
            current=ACCOUNT,
            user=user,
            status_code=status,
            roles=sorted((p, r.value) for p, r in user.roles.items()),
            tokens=manager.credentials.tokens(user.name),
            min_password=MIN_PASSWORD_LENGTH,
            error=error,
            notice=notice,
            new_token=new_token,
            web_url=str(settings.web.base_url),
        )

    @router.get("/account", response_class=HTMLResponse, include_in_schema=False)
    def get_account(user: Principal = _user, notice: str = "") -> HTMLResponse:
        return account_page(user, notice=notice)

    @router.post("/account/password", include_in_schema=False)
    async def own_password(
        request: Request,
        current: str = Form(...),
        password: str = Form(...),
        user: Principal = _user,
    ) -> Response:
        address = client_address(request)
        checked = await run_in_threadpool(
            lambda: manager_auth(request).check_password(
                user.name, current, address, door="web: password change"
            )
        )
        if checked.principal is None:
            status = 429 if checked.refusal else 403
            return await run_in_threadpool(
                account_page, user, f"the current password is wrong ({checked.message})", status
            )
        return await change(
            request,
            "/signin",
            "password changed: sign in again",
            lambda e, s: account_page(user, e, s),
            manager.set_password,
            user.name,
            user.name,
            password,
        )

    @router.post("/account/tokens", include_in_schema=False)
    async def create_token(
        request: Request,
        name: str = Form(...),
        expires_days: str = Form(""),
        user: Principal = _user,
    ) -> Response:
        try:
            days = float(expires_days) if expires_days.strip() else None
            token = await run_in_threadpool(
                lambda: manager.create_token(
                    user.name, user.name, name, expires_days=days, address=client_address(request)
                )
            )
        except (AccessRuleError, ValueError) as exc:
            return await run_in_threadpool(account_page, user, str(exc), 400)
        # Shown on this answer only: the database keeps its hash.
        return await run_in_threadpool(
            lambda: account_page(
                user, notice=f"token {token.info.id} created", new_token=token.secret
            )
        )

    @router.post("/account/tokens/{token_id}/revoke", include_in_schema=False)
    async def revoke_token(token_id: int, request: Request, user: Principal = _user) -> Response:
        return await change(
            request,
            "/account",
            f"token {token_id} revoked",
            lambda e, s: account_page(user, e, s),
            manager.revoke_token,
            user.name,
            token_id,
            owner=user.name,
        )

    def manager_auth(request: Request) -> Any:
        return request.app.state.auth.authenticator

    # -- the audit trail (administrators) -----------------------------------------------------

    def audit_events(
        actor: str, project: str, since: str, action: str
    ) -> tuple[list[dict[str, object]], str]:
        when = None
        if since.strip():
            try:
                when = parse_since(since.strip())
            except ValueError as exc:
                return [], str(exc)
        rows = audit_store.query(
            actor=actor.strip() or None,
            project=project.strip() or None,
            since=when,
            action=action.strip() or None,
            limit=500,
        )
        return [r.as_dict() for r in rows], ""

    @router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(
        user: Principal = _user,
        actor: str = Query(""),
        project: str = Query(""),
        since: str = Query(""),
        action: str = Query(""),
    ) -> HTMLResponse:
        require_platform(user, Action.READ_AUDIT)
        events, error = audit_events(actor, project, since, action)
        return pages.render(
            "people/audit.html",
            current="audit",
            user=user,
            events=events,
            error=error,
            status_code=400 if error else 200,
            filters={"actor": actor, "project": project, "since": since, "action": action},
        )

    @router.get("/api/audit", summary="The audit trail (administrators)")
    def audit_api(
        user: Principal = _user,
        actor: str = Query(""),
        project: str = Query(""),
        since: str = Query("", description="ISO date or time, or a duration: 30m, 12h, 7d"),
        action: str = Query(""),
    ) -> list[dict[str, object]]:
        require_platform(user, Action.READ_AUDIT)
        events, error = audit_events(actor, project, since, action)
        if error:
            raise HTTPException(400, error)
        return events

    return router
