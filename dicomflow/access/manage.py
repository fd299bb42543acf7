"""Managing people: accounts, memberships, tokens, projects; every change in the audit trail.

The CLI (an administrator's shell on the platform's host) and the pages (after asking
:data:`~dicomflow.access.policy.POLICY`) both change accounts through :class:`AccessManager`,
so the rules below hold whichever way a change is made:

* the last active administrator cannot be disabled, deleted or demoted;
* the ``admin`` project has no members (it is the administrators');
* a password has at least :data:`~dicomflow.access.passwords.MIN_PASSWORD_LENGTH` characters;
* a new password or a disabled account ends the account's browser sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from dicomflow.access.audit import Audit, AuditAction
from dicomflow.access.passwords import PasswordHashing, check_strength
from dicomflow.access.policy import Role
from dicomflow.access.tokens import digest, new_token, shown_prefix
from dicomflow.config import AuthSettings
from dicomflow.db.accounts import AccountStore, UnknownUserError, validate_user_name
from dicomflow.db.audit import AuditStore
from dicomflow.db.credentials import CredentialStore, TokenInfo
from dicomflow.db.projects import ADMIN_PROJECT, ProjectStore, validate_project_name

__all__ = ["AccessManager", "AccessRuleError", "NewToken"]

#: Longest token name.
MAX_TOKEN_NAME = 64


class AccessRuleError(ValueError):
    """A change the rules refuse; the message says why and what to do instead."""


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``secret`` is shown once and never again."""

    secret: str
    info: TokenInfo


class AccessManager:
    """Changes accounts, memberships, tokens and projects, and records who did it.

    Parameters
    ----------
    engine
        An engine on the platform database.
    settings
        ``auth.*`` (password hashing).
    """

    def __init__(self, engine: Engine, settings: AuthSettings) -> None:
        self.accounts = AccountStore(engine)
        self.credentials = CredentialStore(engine)
        self.projects = ProjectStore(engine)
        self.audit = Audit(AuditStore(engine))
        self.hashing = PasswordHashing(settings)

    # -- accounts -----------------------------------------------------------------------------

    def create_user(
        self,
        actor: str,
        name: str,
        password: str | None,
        *,
        admin: bool = False,
        address: str = "",
    ) -> bool:
        """Create an account; ``False`` when the name is taken.

        Parameters
        ----------
        password
            ``None``: an account that cannot sign in with a password (tokens only).
        """
        validate_user_name(name)
        hashed = self.hashing.hash(check_strength(password)) if password is not None else None
        created = self.accounts.create(name, hashed, is_admin=admin)
        if created:
            self.audit.record(
                actor,
                AuditAction.USER_CREATE,
                target=name,
                address=address,
                detail="administrator" if admin else "",
            )
        return created

    def set_password(self, actor: str, name: str, password: str, *, address: str = "") -> None:
        """Set a new password (the account's browser sessions end)."""
        hashed = self.hashing.hash(check_strength(password))
        self.accounts.set_password_hash(name, hashed)
        self.audit.record(actor, AuditAction.USER_PASSWORD, target=name, address=address)

    def set_disabled(self, actor: str, name: str, disabled: bool, *, address: str = "") -> None:
        """Disable or enable an account."""
        if disabled:
            self._keep_an_admin(name, "disable")
        self.accounts.set_disabled(name, disabled)
        action = AuditAction.USER_DISABLE if disabled else AuditAction.USER_ENABLE
        self.audit.record(actor, action, target=name, address=address)

    def set_admin(self, actor: str, name: str, admin: bool, *, address: str = "") -> None:
        """Make an account a platform administrator, or take that away."""
        if not admin:
            self._keep_an_admin(name, "demote")
        self.accounts.set_admin(name, admin)
        self.audit.record(
            actor,
            AuditAction.USER_ADMIN,
            target=name,
            address=address,
            detail="administrator" if admin else "not administrator",
        )

    def delete_user(self, actor: str, name: str, *, address: str = "") -> None:
        """Delete an account with its memberships, sessions and tokens (the trail stays)."""
        self._keep_an_admin(name, "delete")
        self.accounts.delete(name)
        self.audit.record(actor, AuditAction.USER_DELETE, target=name, address=address)

    def _keep_an_admin(self, name: str, verb: str) -> None:
        admins = self.accounts.active_admins()
        if admins == [name]:  # the CLI's account has no password: it does not count
            raise AccessRuleError(
                f"cannot {verb} {name!r}: it is the last active administrator "
                "(make another account an administrator first: `dicomflow user create NAME "
                "--admin`)"
            )

    # -- memberships --------------------------------------------------------------------------

    def set_member(
        self, actor: str, project: str, user: str, role: Role, *, address: str = ""
    ) -> bool:
        """Give ``user`` ``role`` in ``project``; ``True`` when he was no member before."""
        if project == ADMIN_PROJECT:
            raise AccessRuleError(
                "the admin project holds every series and has no members: make the user an "
                "administrator instead (`dicomflow user create NAME --admin`)"
            )
        added = self.accounts.set_member(project, user, role.value)
        self.audit.record(
            actor,
            AuditAction.MEMBER_SET,
            project=project,
            target=user,
            detail=role.value,
            address=address,
        )
        return added

    def remove_member(self, actor: str, project: str, user: str, *, address: str = "") -> bool:
        """End a membership; ``False`` when there was none."""
        removed = self.accounts.remove_member(project, user)
        if removed:
            self.audit.record(
                actor, AuditAction.MEMBER_REMOVE, project=project, target=user, address=address
            )
        return removed

    # -- tokens -------------------------------------------------------------------------------

    def create_token(
        self,
        actor: str,
        user: str,
        name: str,
        *,
        expires_days: float | None = None,
        address: str = "",
    ) -> NewToken:
        """Create a personal API token of ``user``; its secret is in the answer only."""
        name = name.strip()
        if not name or len(name) > MAX_TOKEN_NAME:
            raise AccessRuleError(
                f"a token needs a name of 1 to {MAX_TOKEN_NAME} characters (what it is for)"
            )
        if expires_days is not None and expires_days <= 0:
            raise AccessRuleError("a token's lifetime must be positive (days)")
        if not self.credentials.user_exists(user):
            raise UnknownUserError(f"user {user!r} does not exist")
        secret = new_token()
        expires = (
            datetime.now(UTC) + timedelta(days=expires_days) if expires_days is not None else None
        )
        info = self.credentials.add_token(user, name, shown_prefix(secret), digest(secret), expires)
        self.audit.record(
            actor,
            AuditAction.TOKEN_CREATE,
            target=f"{user}: token {info.id}",
            detail=name,
            address=address,
        )
        return NewToken(secret, info)

    def revoke_token(
        self, actor: str, token_id: int, *, owner: str | None = None, address: str = ""
    ) -> bool:
        """Revoke a token; ``False`` when it was revoked before.

        Parameters
        ----------
        owner
            When given, only a token of this user may be revoked (a user's own page).
        """
        info = self.credentials.token(token_id)
        if owner is not None and info.user != owner:
            # Somebody else's token: answered as a token that does not exist.
            from dicomflow.db.credentials import UnknownTokenError

            raise UnknownTokenError(f"there is no token {token_id}")
        revoked = self.credentials.revoke_token(token_id)
        if revoked:
            self.audit.record(
                actor,
                AuditAction.TOKEN_REVOKE,
                target=f"{info.user}: token {token_id}",
                detail=info.name,
                address=address,
            )
        return revoked

    # -- projects -----------------------------------------------------------------------------

    def create_project(
        self,
        actor: str,
        name: str,
        description: str = "",
        *,
        owner: str | None = None,
        address: str = "",
    ) -> bool:
        """Create a project (and make ``owner`` its owner); ``False`` when it existed."""
        validate_project_name(name)
        if owner is not None and not self.credentials.user_exists(owner):
            raise UnknownUserError(f"user {owner!r} does not exist (create the account first)")
        created = self.projects.create_project(name, description)
        if created:
            self.audit.record(
                actor, AuditAction.PROJECT_CREATE, project=name, address=address, detail=description
            )
        if owner is not None:
            self.set_member(actor, name, owner, Role.OWNER, address=address)
        return created

    def delete_project(self, actor: str, name: str, *, address: str = "") -> bool:
        """Delete a project's records (memberships, datasets, mappings, sender rules).

        The caller removed its index copy and bucket first
        (:func:`dicomflow.catalog.remove_project_data`). ``False`` when it did not exist.
        """
        deleted = self.projects.delete_project(name)
        if deleted:
            self.audit.record(actor, AuditAction.PROJECT_DELETE, project=name, address=address)
        return deleted
