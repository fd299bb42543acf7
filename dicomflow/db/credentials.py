"""Sign-in sessions and API tokens in the platform database, kept as SHA-256 hashes only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dicomflow.db.models import Account, ApiToken, WebSession

__all__ = ["CredentialStore", "SessionRecord", "TokenInfo", "UnknownTokenError"]


class UnknownTokenError(LookupError):
    """A token id that does not exist (or is not the user's)."""


@dataclass(frozen=True)
class SessionRecord:
    """A browser session as read for a request."""

    user: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class TokenInfo:
    """An API token as listed (never the token itself)."""

    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Not revoked and not expired."""
        expired = self.expires_at is not None and self.expires_at <= datetime.now(UTC)
        return self.revoked_at is None and not expired


class CredentialStore:
    """Browser sessions and API tokens.

    Parameters
    ----------
    engine
        An engine on the platform database.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- sessions -----------------------------------------------------------------------------

    def add_session(
        self, id_hash: str, user: str, csrf_token: str, expires_at: datetime, address: str
    ) -> None:
        """Record a new session."""
        with Session(self._engine) as session, session.begin():
            session.add(
                WebSession(
                    id_hash=id_hash,
                    user_name=user,
                    csrf_token=csrf_token,
                    expires_at=expires_at,
                    last_seen_at=datetime.now(UTC),
                    address=address[:64],
                )
            )

    def session(self, id_hash: str) -> SessionRecord | None:
        """The session with this hash, or ``None``."""
        with Session(self._engine) as session:
            row = session.get(WebSession, id_hash)
            if row is None:
                return None
            return SessionRecord(
                row.user_name, row.csrf_token, row.created_at, row.expires_at, row.last_seen_at
            )

    def touch_session(self, id_hash: str, at: datetime) -> None:
        """Note that the session was used at ``at``."""
        with Session(self._engine) as session, session.begin():
            session.execute(
                update(WebSession).where(WebSession.id_hash == id_hash).values(last_seen_at=at)
            )

    def end_session(self, id_hash: str) -> None:
        """Forget a session (sign-out, expiry)."""
        with Session(self._engine) as session, session.begin():
            session.execute(delete(WebSession).where(WebSession.id_hash == id_hash))

    def end_expired_sessions(self, now: datetime, idle: timedelta) -> int:
        """Forget every session past its end or idle too long; return how many."""
        with Session(self._engine) as session, session.begin():
            result = session.execute(
                delete(WebSession).where(
                    (WebSession.expires_at <= now) | (WebSession.last_seen_at <= now - idle)
                )
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- tokens -------------------------------------------------------------------------------

    def add_token(
        self, user: str, name: str, prefix: str, token_hash: str, expires_at: datetime | None
    ) -> TokenInfo:
        """Record a new token of ``user``."""
        with Session(self._engine) as session, session.begin():
            row = ApiToken(
                user_name=user,
                name=name,
                prefix=prefix,
                token_hash=token_hash,
                expires_at=expires_at,
                created_at=datetime.now(UTC),
            )
            session.add(row)
            session.flush()
            return _token_info(row)

    def token_user(self, token_hash: str, now: datetime) -> tuple[int, str] | None:
        """``(token id, user)`` of an active token with this hash, or ``None``."""
        with Session(self._engine) as session:
            row = session.execute(
                select(ApiToken.id, ApiToken.user_name).where(
                    ApiToken.token_hash == token_hash,
                    ApiToken.revoked_at.is_(None),
                    (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
                )
            ).first()
            return (row[0], row[1]) if row else None

    def touch_token(self, token_id: int, at: datetime) -> None:
        """Note that the token was used at ``at``."""
        with Session(self._engine) as session, session.begin():
            session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=at))

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        """Tokens of one user (or everyone's), newest first."""
        stmt = select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        if user is not None:
            stmt = stmt.where(ApiToken.user_name == user)
        with Session(self._engine) as session:
            return [_token_info(t) for t in session.scalars(stmt)]

    def token(self, token_id: int) -> TokenInfo:
        """One token by id.

        Raises
        ------
        UnknownTokenError
            When there is no such token.
        """
        with Session(self._engine) as session:
            row = session.get(ApiToken, token_id)
            if row is None:
                raise UnknownTokenError(f"there is no token {token_id}")
            return _token_info(row)

    def revoke_token(self, token_id: int) -> bool:
        """Revoke a token; ``False`` when it was revoked before.

        Raises
        ------
        UnknownTokenError
            When there is no such token.
        """
        with Session(self._engine) as session, session.begin():
            row = session.get(ApiToken, token_id)
            if row is None:
                raise UnknownTokenError(f"there is no token {token_id}")
            if row.revoked_at is not None:
                return False
            row.revoked_at = datetime.now(UTC)
            return True

    def user_exists(self, user: str) -> bool:
        """Whether the account exists (tokens are created for existing users only)."""
        with Session(self._engine) as session:
            return session.get(Account, user) is not None


def _token_info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        row.id,
        row.user_name,
        row.name,
        row.prefix,
        row.created_at,
        row.expires_at,
        row.last_used_at,
        row.revoked_at,
    )
