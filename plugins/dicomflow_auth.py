"""Airflow's sign-in with platform accounts: platform administrators only.

The stack sets ``AIRFLOW__CORE__AUTH_MANAGER`` to :class:`PlatformAuthManager`. It is
Airflow's simple auth manager (same login page, same JWT, same roles) whose token endpoints
check the user name and password against the platform database instead of a password file:

* a platform **administrator** signs in with his platform account (no second password to
  keep) and gets Airflow's ADMIN role; the attempt goes through the platform's throttling and
  into its audit trail, like a sign-in to the pages;
* every other account is refused: users start imports from the platform's pages, which check
  their role in the project before the web service triggers the DAG;
* the platform's own login (``airflow.username``, its password generated into
  secrets.json) stays in the simple auth manager's password file: the web service and the
  dispatcher start DAG runs with it.

A signed-in administrator who is disabled, deleted or no longer an administrator loses
Airflow within :data:`RECHECK_SECONDS`, whatever his token's lifetime.

This module lives with the Airflow plugins because it imports Airflow; the core package
(``dicomflow``) does not.
"""

from __future__ import annotations

import hmac
import threading
import time
from functools import cache
from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.simple.datamodels.login import LoginBody, LoginResponse
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.api_fastapi.auth.managers.simple.utils import parse_login_body
from airflow.api_fastapi.common.router import AirflowRouter
from airflow.configuration import conf
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.routing import APIRoute

from dicomflow.access.authenticate import Authenticator
from dicomflow.access.policy import POLICY, Action
from dicomflow.config import load_settings
from dicomflow.db.session import make_engine

#: Seconds a signed-in administrator's account is trusted before it is read again.
RECHECK_SECONDS = 30.0


@cache
def _authenticator() -> Authenticator:
    settings = load_settings(create_secrets=False)
    return Authenticator(make_engine(settings.platform_db_url), settings.auth)


def _service_user(username: str, password: str) -> SimpleAuthManagerUser | None:
    """The platform's own login, from the simple auth manager's users and password file."""
    passwords = SimpleAuthManager.get_passwords()
    for user in SimpleAuthManager.get_users():
        if user.username == username and hmac.compare_digest(
            passwords.get(username, "").encode(), password.encode()
        ):
            return user
    return None


def authenticate(body: LoginBody, address: str) -> SimpleAuthManagerUser:
    """The Airflow user of a user name and password, or an HTTP error.

    Raises
    ------
    HTTPException
        401 for a wrong password or an account that is no administrator, 429 while throttled.
    """
    if not body.username or not body.password:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Username and password must be provided")
    service = _service_user(body.username, body.password)
    if service is not None:
        return service
    result = _authenticator().check_password(
        body.username, body.password, address, door="airflow", via="airflow"
    )
    if result.refusal is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            result.message,
            headers={"Retry-After": str(result.refusal.retry_after)},
        )
    if result.principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid credentials")
    if not POLICY.may(result.principal, Action.USE_AIRFLOW):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Airflow is for platform administrators: start imports from the platform's pages",
        )
    return SimpleAuthManagerUser(username=result.principal.name, role="ADMIN")


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


login_router = AirflowRouter(tags=["PlatformAuthManagerLogin"])


@login_router.post("/token", status_code=status.HTTP_201_CREATED)
def create_token(
    request: Request,
    body: LoginBody = Depends(parse_login_body),  # noqa: B008
) -> LoginResponse:
    """Sign in with a platform administrator's account (or the platform's own login)."""
    user = authenticate(body, _address(request))
    return LoginResponse(access_token=get_auth_manager().generate_jwt(user=user))


@login_router.post("/token/cli", status_code=status.HTTP_201_CREATED)
def create_token_cli(request: Request, body: LoginBody) -> LoginResponse:
    """Sign in for Airflow's command line (longer-lived token, same rules)."""
    user = authenticate(body, _address(request))
    return LoginResponse(
        access_token=get_auth_manager().generate_jwt(
            user=user,
            expiration_time_in_seconds=conf.getint("api_auth", "jwt_cli_expiration_time"),
        )
    )


class PlatformAuthManager(SimpleAuthManager):
    """The simple auth manager, signing in platform administrators with their accounts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    def get_fastapi_app(self) -> FastAPI | None:
        """The simple auth manager's app (login page) with our token endpoints first."""
        app = super().get_fastapi_app()
        if app is None:  # pragma: no cover - the simple auth manager always has one
            return None
        ours = [r for r in login_router.routes if isinstance(r, APIRoute)]
        app.router.routes[:0] = ours
        return app

    def deserialize_user(self, token: dict[str, Any]) -> SimpleAuthManagerUser:
        """The user of a token, as long as his platform account is an active administrator."""
        user = super().deserialize_user(token)
        if user.username in {u.username for u in self.get_users()}:
            return user  # the platform's own login
        now = time.monotonic()
        with self._lock:
            checked = self._checked.get(user.username, float("-inf"))
        if now - checked < RECHECK_SECONDS:
            return user
        principal = _authenticator().principal_of(user.username, via="airflow")
        if principal is None or not POLICY.may(principal, Action.USE_AIRFLOW):
            raise ValueError(f"{user.username} is no active platform administrator any more")
        with self._lock:
            self._checked[user.username] = now
        return user
