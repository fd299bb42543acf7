"""The accounts a platform starts with: the first administrator and the CLI's service account.

Both are made once, when missing, by the web service at its start and by ``dicomflow up``;
nothing here ever changes an existing account (a password set later stays).
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from dicomflow.access.audit import Audit, AuditAction
from dicomflow.access.passwords import PasswordHashing
from dicomflow.access.tokens import TOKEN_PREFIX, digest, shown_prefix
from dicomflow.config import Settings, stored_secret
from dicomflow.db.accounts import AccountStore
from dicomflow.db.audit import AuditStore
from dicomflow.db.credentials import CredentialStore

__all__ = ["CLI_ACCOUNT", "CLI_TOKEN_SECRET", "cli_token", "ensure_accounts"]

LOGGER = logging.getLogger(__name__)
#: The service account of the ``dicomflow`` command's quick path (reading the REST API).
CLI_ACCOUNT = "dicomflow-cli"
#: Where its token is kept in ``<data_dir>/secrets.json``.
CLI_TOKEN_SECRET = "web.cli_token"
_ACTOR = "platform"


def cli_token(settings: Settings) -> str:
    """The CLI's API token (generated into secrets.json on first use)."""
    return TOKEN_PREFIX + stored_secret(settings, CLI_TOKEN_SECRET)


def ensure_accounts(engine: Engine, settings: Settings) -> None:
    """Create the first administrator when there is no account, and the CLI's account.

    The first administrator is ``admin_user`` with ``admin_password`` (generated into
    secrets.json and printed by ``dicomflow up``), made when no account can sign in. The
    CLI's account is an administrator without a password whose one token is kept in
    secrets.json; when it exists already (even disabled, or with its token revoked) it is
    left as it is.
    """
    accounts = AccountStore(engine)
    audit = Audit(AuditStore(engine))
    if accounts.count(with_password=True) == 0 and settings.admin_password:
        hashed = PasswordHashing(settings.auth).hash(settings.admin_password)
        if accounts.create(settings.admin_user, hashed, is_admin=True):
            LOGGER.info("first administrator %r created", settings.admin_user)
            audit.record(
                _ACTOR,
                AuditAction.USER_CREATE,
                target=settings.admin_user,
                detail="first administrator",
            )
    if accounts.create(CLI_ACCOUNT, None, is_admin=True):
        token = cli_token(settings)
        CredentialStore(engine).add_token(
            CLI_ACCOUNT,
            "dicomflow command (secrets.json)",
            shown_prefix(token),
            digest(token),
            None,
        )
        audit.record(
            _ACTOR,
            AuditAction.USER_CREATE,
            target=CLI_ACCOUNT,
            detail="service account of the dicomflow command",
        )
