"""Who a request is, for every route of the web service.

A request proves who it is in one of three ways:

* a **session cookie** (``dicomflow_session``) from the sign-in page: HttpOnly, SameSite=Lax,
  Secure behind TLS, ending after ``auth.session_hours`` or ``auth.idle_minutes`` idle, or at
  sign-out. Every state-changing request of a session (not GET/HEAD/OPTIONS) must carry the
  session's CSRF token, as the header ``X-CSRF-Token`` (the pages' scripts) or the form field
  ``csrf_token`` (the pages' forms); pages find it in ``<meta name="csrf-token">``;
* a personal **API token**: ``Authorization: Bearer dft_...``;
* **HTTP Basic** for scripts and DICOMweb clients (``auth.basic``): a user name with the
  account's password or one of its tokens. The service never answers with a Basic challenge,
  so a browser never remembers Basic credentials and a page of another site cannot make it
  send them: that is why requests with a token or Basic need no CSRF token.

:func:`principal_of` is the FastAPI dependency every router uses; its answer goes to
:data:`dicomflow.access.policy.POLICY`. A page asked for without a session redirects to the
sign-in page; an API call answers 401.

Routes (not behind the login)::

    GET  /signin                       the sign-in page
    POST /signin                       sign in (form: username, password, next)
    POST /signout                      sign out (form: csrf_token)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from dicomflow.access.authenticate import Authenticator
from dicomflow.access.policy import AccessDeniedError, Principal
from dicomflow.config import Settings
from dicomflow.web.layout import CSRF_FIELD

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SignInRequiredError",
    "WebAuth",
    "client_address",
    "install_auth",
    "make_auth_router",
    "principal_of",
]

LOGGER = logging.getLogger(__name__)
SESSION_COOKIE = "dicomflow_session"
#: The sign-in form's own CSRF cookie (double submit): no session exists yet to hold a token.
SIGNIN_COOKIE = "dicomflow_signin"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
#: Answered with a 401: a bearer challenge, which no browser answers with a login dialog.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dicomflow"'}


class SignInRequiredError(Exception):
    """The request carries no valid credentials.

    Attributes
    ----------
    ended
        A session cookie came with it, but its session has ended (expired, signed out).
    """

    def __init__(self, message: str, *, ended: bool = False) -> None:
        super().__init__(message)
        self.ended = ended


class WebAuth:
    """The web service's authentication: kept in ``app.state.auth``.

    Parameters
    ----------
    settings
        ``auth.*`` and ``web.*``.
    authenticator
        Checks credentials against the platform database.
    """

    def __init__(self, settings: Settings, authenticator: Authenticator) -> None:
        self.settings = settings
        self.authenticator = authenticator

    def secure(self, request: Request) -> bool:
        """Whether cookies get the Secure flag for this request."""
        mode = self.settings.auth.secure_cookies
        # uvicorn sets the scheme from X-Forwarded-Proto of a trusted proxy.
        return mode == "always" or (mode == "auto" and request.url.scheme == "https")

    def set_session_cookie(self, response: Response, request: Request, secret: str) -> None:
        """Hand the browser its session cookie."""
        response.set_cookie(
            SESSION_COOKIE,
            secret,
            max_age=int(self.settings.auth.session_hours * 3600),
            path="/",
            secure=self.secure(request),
            httponly=True,
            samesite="lax",
        )


def client_address(request: Request) -> str:
    """The address a request came from (a trusted proxy's X-Forwarded-For, through uvicorn)."""
    return request.client.host if request.client else ""


def _auth(request: Request) -> WebAuth:
    auth: WebAuth = request.app.state.auth
    return auth


async def principal_of(request: Request) -> Principal:
    """The FastAPI dependency: who the request is for.

    Raises
    ------
    SignInRequiredError
        No credentials, or credentials that are not (or no longer) valid.
    HTTPException
        403 for a session's state-changing request without its CSRF token; 429 while sign-ins
        of the account or address are throttled.
    """
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    auth = _auth(request)
    header = request.headers.get("authorization")
    try:
        if header:
            principal = await _from_header(auth, request, header)
        else:
            principal = await _from_cookie(auth, request)
    except SQLAlchemyError as exc:
        LOGGER.warning("cannot authenticate: the platform database does not answer: %s", exc)
        raise HTTPException(
            503, "the platform database does not answer: sign-in is unavailable, try again soon"
        ) from None
    request.state.principal = principal
    return principal


async def _from_header(auth: WebAuth, request: Request, header: str) -> Principal:
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    authenticator = auth.authenticator
    if scheme == "bearer":
        principal = await run_in_threadpool(authenticator.from_token, value)
        if principal is None:
            raise SignInRequiredError("the API token is not valid (unknown, expired or revoked)")
        return principal
    if scheme == "basic":
        if not auth.settings.auth.basic:
            raise SignInRequiredError(
                "HTTP Basic is turned off (auth.basic): send a token as Authorization: Bearer"
            )
        try:
            name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise SignInRequiredError("malformed HTTP Basic credentials") from None
        result = await run_in_threadpool(
            authenticator.basic, name, password, client_address(request)
        )
        if result.refusal is not None:
            raise HTTPException(
                429, result.message, headers={"Retry-After": str(result.refusal.retry_after)}
            )
        if result.principal is None:
            raise SignInRequiredError(result.message)
        return result.principal
    raise SignInRequiredError(
        f"unsupported authorization scheme {scheme!r}: use Bearer with an API token"
    )


async def _from_cookie(auth: WebAuth, request: Request) -> Principal:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        raise SignInRequiredError("sign in first (or send an API token as Authorization: Bearer)")
    principal = await run_in_threadpool(auth.authenticator.from_session, secret)
    if principal is None:
        raise SignInRequiredError("your session has ended: sign in again", ended=True)
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, principal)
    return principal


async def _check_csrf(request: Request, principal: Principal) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.headers.get("content-type", "").startswith(_FORMS):
        form = await request.form()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else ""
    if not sent or not hmac.compare_digest(sent, principal.csrf_token):
        raise HTTPException(
            403,
            "missing or wrong CSRF token: reload the page and try again "
            f"(scripts: send the page's token as {CSRF_HEADER}, or use an API token)",
        )


def _wants_page(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/dicomweb/")) or path == "/openapi.json":
        return False
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def _safe_next(target: str | None) -> str:
    """A local address to return to after signing in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def install_auth(app: FastAPI, auth: WebAuth) -> None:
    """Keep ``auth`` in the app and answer unauthenticated and denied requests."""
    app.state.auth = auth

    @app.exception_handler(SignInRequiredError)
    async def sign_in_required(request: Request, exc: SignInRequiredError) -> Response:
        response: Response
        if _wants_page(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)
        else:
            response = JSONResponse({"detail": str(exc)}, status_code=401, headers=CHALLENGE)
        if exc.ended:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(AccessDeniedError)
    async def access_denied(request: Request, exc: AccessDeniedError) -> Response:
        # Hidden: exactly what a project that does not exist gets (see the routers).
        return JSONResponse({"detail": str(exc)}, status_code=404 if exc.hidden else 403)


def make_auth_router(auth: WebAuth, pages: Any) -> APIRouter:
    """The sign-in page, sign-in and sign-out; mounted without the login.

    Parameters
    ----------
    auth
        The service's authentication.
    pages
        The :class:`~dicomflow.web.layout.PageRenderer`.
    """
    router = APIRouter()

    def signin_page(
        request: Request,
        next_url: str,
        error: str = "",
        status_code: int = 200,
        username: str = "",
        retry_after: int | None = None,
    ) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        response = pages.render(
            "signin.html",
            current=None,
            user=None,
            status_code=status_code,
            next_url=_safe_next(next_url),
            error=error,
            username=username,
            signin_token=token,
        )
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        response.set_cookie(
            SIGNIN_COOKIE,
            token,
            max_age=3600,
            path="/signin",
            secure=auth.secure(request),
            httponly=True,
            samesite="strict",
        )
        return response

    @router.get("/signin", response_class=HTMLResponse, include_in_schema=False)
    def signin_form(request: Request, next: str = "/") -> HTMLResponse:
        return signin_page(request, next)

    @router.post("/signin", response_class=HTMLResponse, include_in_schema=False)
    async def signin(request: Request) -> Response:
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        next_url = _safe_next(values.get("next"))
        username = values.get("username", "").strip()
        sent, kept = values.get("signin_token", ""), request.cookies.get(SIGNIN_COOKIE, "")
        if not sent or not kept or not hmac.compare_digest(sent, kept):
            return signin_page(
                request, next_url, "the sign-in form expired: please try again", 403, username
            )
        address = client_address(request)
        try:
            result = await run_in_threadpool(
                auth.authenticator.check_password, username, values.get("password", ""), address
            )
            if result.principal is not None:
                session = await run_in_threadpool(
                    auth.authenticator.start_session, result.principal, address
                )
        except SQLAlchemyError as exc:
            LOGGER.warning("sign-in unavailable: the platform database does not answer: %s", exc)
            return signin_page(
                request,
                next_url,
                "sign-in is unavailable: the platform database does not answer; try again soon",
                503,
                username,
            )
        if result.principal is None:
            if result.refusal is not None:
                return signin_page(
                    request, next_url, result.message, 429, username, result.refusal.retry_after
                )
            return signin_page(request, next_url, result.message, 401, username)
        response = RedirectResponse(next_url, status_code=303)
        auth.set_session_cookie(response, request, session.secret)
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    @router.post("/signout", include_in_schema=False)
    async def signout(
        request: Request,
        principal: Principal = Depends(principal_of),  # noqa: B008
    ) -> Response:
        secret = request.cookies.get(SESSION_COOKIE)
        if secret:
            await run_in_threadpool(auth.authenticator.end_session, secret)
        from dicomflow.access.audit import AuditAction

        await run_in_threadpool(
            auth.authenticator.audit.record,
            principal.name,
            AuditAction.SIGN_OUT,
            address=client_address(request),
        )
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router
