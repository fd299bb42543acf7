"""The platform's login: the admin credentials, checked in constant time."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from dicomflow.config import Settings

_basic = HTTPBasic(realm="dicomflow")


def require_login(settings: Settings) -> Callable[[HTTPBasicCredentials], str]:
    """A FastAPI dependency that admits the admin user and returns the user name."""

    def check(credentials: HTTPBasicCredentials = Depends(_basic)) -> str:  # noqa: B008
        user_ok = secrets.compare_digest(
            credentials.username.encode(), settings.admin_user.encode()
        )
        password_ok = secrets.compare_digest(
            credentials.password.encode(), settings.admin_password.encode()
        )
        if not (user_ok and password_ok):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="wrong user name or password",
                headers={"WWW-Authenticate": 'Basic realm="dicomflow"'},
            )
        return credentials.username

    return check
