"""Accounts and project memberships in the platform database.

Plain storage: names are validated here, but passwords arrive hashed and every rule about who
may do what lives in :mod:`dicomflow.access`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dicomflow.db.models import Account, Membership, Project, WebSession

__all__ = [
    "AccountInfo",
    "AccountStore",
    "InvalidUserNameError",
    "MemberInfo",
    "UnknownUserError",
    "validate_user_name",
]

# Letters, digits and . _ @ - : a login name that is safe in a URL, a log line and a header.
_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class InvalidUserNameError(ValueError):
    """A user name that breaks the naming rule."""


class UnknownUserError(LookupError):
    """An account that does not exist."""


def validate_user_name(name: str) -> str:
    """Return ``name`` if it is a valid user name, else raise :class:`InvalidUserNameError`."""
    if not _USER_RE.match(name or ""):
        raise InvalidUserNameError(
            f"user name {name!r} must be 1 to 64 characters: letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class AccountInfo:
    """An account as read from the database (with its roles per project)."""

    name: str
    password_hash: str | None
    is_admin: bool
    disabled: bool
    created_at: datetime
    password_changed_at: datetime | None
    roles: Mapping[str, str]


@dataclass(frozen=True)
class MemberInfo:
    """One member of a project."""

    user: str
    role: str
    created_at: datetime
    disabled: bool


class AccountStore:
    """Accounts and memberships.

    Parameters
    ----------
    engine
        An engine on the platform database.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- accounts -----------------------------------------------------------------------------

    def create(self, name: str, password_hash: str | None, *, is_admin: bool = False) -> bool:
        """Create an account; ``False`` when the name is taken (nothing changes)."""
        validate_user_name(name)
        stmt = insert(Account).values(
            name=name,
            password_hash=password_hash,
            is_admin=is_admin,
            disabled=False,
            password_changed_at=datetime.now(UTC) if password_hash else None,
        )
        with Session(self._engine) as session, session.begin():
            result = session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def get(self, name: str) -> AccountInfo | None:
        """The account and its roles (one round trip each), or ``None``."""
        with Session(self._engine) as session:
            account = session.get(Account, name)
            if account is None:
                return None
            rows = session.execute(
                select(Membership.project, Membership.role).where(Membership.user_name == name)
            )
            roles = {project: role for project, role in rows}
            return _info(account, roles)

    def all(self) -> list[AccountInfo]:
        """Every account with its roles, by name."""
        with Session(self._engine) as session:
            accounts = session.scalars(select(Account).order_by(Account.name)).all()
            roles: dict[str, dict[str, str]] = {}
            for user, project, role in session.execute(
                select(Membership.user_name, Membership.project, Membership.role)
            ):
                roles.setdefault(user, {})[project] = role
            return [_info(a, roles.get(a.name, {})) for a in accounts]

    def count(self, *, with_password: bool = False) -> int:
        """How many accounts exist (``with_password``: only those that can sign in)."""
        stmt = select(func.count()).select_from(Account)
        if with_password:
            stmt = stmt.where(Account.password_hash.is_not(None))
        with Session(self._engine) as session:
            return int(session.scalar(stmt) or 0)

    def active_admins(self) -> list[str]:
        """Names of the administrators who can sign in (not disabled, with a password)."""
        with Session(self._engine) as session:
            stmt = select(Account.name).where(
                Account.is_admin, ~Account.disabled, Account.password_hash.is_not(None)
            )
            return sorted(session.scalars(stmt))

    def set_password_hash(self, name: str, password_hash: str) -> None:
        """Replace the password hash and end the account's browser sessions.

        Raises
        ------
        UnknownUserError
            When the account does not exist.
        """
        with Session(self._engine) as session, session.begin():
            self._update(
                session, name, password_hash=password_hash, password_changed_at=datetime.now(UTC)
            )
            session.execute(delete(WebSession).where(WebSession.user_name == name))

    def rehash(self, name: str, old_hash: str, new_hash: str) -> None:
        """Store a stronger hash of the same password, unless it changed meanwhile."""
        with Session(self._engine) as session, session.begin():
            session.execute(
                update(Account)
                .where(Account.name == name, Account.password_hash == old_hash)
                .values(password_hash=new_hash)
            )

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (ending its sessions) or enable an account.

        Raises
        ------
        UnknownUserError
            When the account does not exist.
        """
        with Session(self._engine) as session, session.begin():
            self._update(session, name, disabled=disabled)
            if disabled:
                session.execute(delete(WebSession).where(WebSession.user_name == name))

    def set_admin(self, name: str, is_admin: bool) -> None:
        """Make an account a platform administrator or take that away."""
        with Session(self._engine) as session, session.begin():
            self._update(session, name, is_admin=is_admin)

    def delete(self, name: str) -> None:
        """Delete an account with its memberships, sessions and tokens.

        Raises
        ------
        UnknownUserError
            When the account does not exist.
        """
        with Session(self._engine) as session, session.begin():
            result = session.execute(delete(Account).where(Account.name == name))
            if not result.rowcount:  # type: ignore[attr-defined]
                raise UnknownUserError(f"user {name!r} does not exist")

    @staticmethod
    def _update(session: Session, name: str, **values: object) -> None:
        result = session.execute(update(Account).where(Account.name == name).values(**values))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise UnknownUserError(f"user {name!r} does not exist")

    # -- memberships --------------------------------------------------------------------------

    def set_member(self, project: str, user: str, role: str) -> bool:
        """Give ``user`` ``role`` in ``project``; ``True`` when the user was no member before.

        Raises
        ------
        UnknownUserError
            When the account or the project does not exist.
        """
        stmt = insert(Membership).values(project=project, user_name=user, role=role)
        stmt = stmt.on_conflict_do_update(
            index_elements=["project", "user_name"], set_={"role": role}
        )
        with Session(self._engine) as session, session.begin():
            if session.get(Account, user) is None:
                raise UnknownUserError(f"user {user!r} does not exist")
            if session.get(Project, project) is None:
                raise UnknownUserError(f"project {project!r} does not exist")
            before = session.get(Membership, (project, user))
            try:
                session.execute(stmt)
            except IntegrityError as exc:  # deleted between the checks and the insert
                raise UnknownUserError(f"user {user!r} or project {project!r} is gone") from exc
            return before is None

    def remove_member(self, project: str, user: str) -> bool:
        """End ``user``'s membership of ``project``; ``False`` when there was none."""
        with Session(self._engine) as session, session.begin():
            result = session.execute(
                delete(Membership).where(
                    Membership.project == project, Membership.user_name == user
                )
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def members(self, project: str) -> list[MemberInfo]:
        """The members of a project, by name."""
        with Session(self._engine) as session:
            rows = session.execute(
                select(
                    Membership.user_name, Membership.role, Membership.created_at, Account.disabled
                )
                .join(Account, Account.name == Membership.user_name)
                .where(Membership.project == project)
                .order_by(Membership.user_name)
            )
            return [MemberInfo(u, r, c, d) for u, r, c, d in rows]


def _info(account: Account, roles: Mapping[str, str]) -> AccountInfo:
    return AccountInfo(
        account.name,
        account.password_hash,
        account.is_admin,
        account.disabled,
        account.created_at,
        account.password_changed_at,
        dict(roles),
    )
