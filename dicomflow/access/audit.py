"""The audit trail: who uploaded, imported, deleted, changed a membership, created or revoked
a token, signed in or failed to; when, and from which address."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy.exc import SQLAlchemyError

from dicomflow.db.audit import AuditStore

__all__ = ["Audit", "AuditAction", "parse_since"]

LOGGER = logging.getLogger(__name__)


class AuditAction(StrEnum):
    """What an audit event records."""

    SIGN_IN = "sign-in"
    SIGN_OUT = "sign-out"
    USER_CREATE = "user-create"
    USER_PASSWORD = "user-password"
    USER_DISABLE = "user-disable"
    USER_ENABLE = "user-enable"
    USER_DELETE = "user-delete"
    USER_ADMIN = "user-admin"
    MEMBER_SET = "member-set"
    MEMBER_REMOVE = "member-remove"
    TOKEN_CREATE = "token-create"
    TOKEN_REVOKE = "token-revoke"
    PROJECT_CREATE = "project-create"
    PROJECT_DELETE = "project-delete"
    SENDER_ADD = "sender-add"
    SENDER_REMOVE = "sender-remove"
    UPLOAD = "upload"
    UPLOAD_DELETE = "upload-delete"
    STOW = "stow"
    IMPORT = "import"


class Audit:
    """Records events in the platform database.

    Parameters
    ----------
    store
        The audit table.
    """

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    def record(
        self,
        actor: str,
        action: AuditAction,
        *,
        project: str | None = None,
        target: str = "",
        detail: str = "",
        address: str = "",
        outcome: str = "ok",
        required: bool = True,
    ) -> None:
        """Append one event.

        Parameters
        ----------
        required
            ``False`` for a door that keeps taking data while the database is away (STOW-RS):
            the event is then logged instead of failing the request.
        """
        try:
            self.store.add(
                actor,
                action.value,
                project=project,
                target=target,
                detail=detail,
                address=address,
                outcome=outcome,
            )
        except SQLAlchemyError as exc:
            if required:
                raise
            LOGGER.warning(
                "audit event not recorded (database away: %s): %s %s project=%s target=%s %s",
                exc.__class__.__name__,
                actor,
                action.value,
                project,
                target,
                detail,
            )


def parse_since(value: str) -> datetime:
    """A point in time: ISO 8601 (a date, or date and time; UTC without a zone) or a duration
    back from now (``30m``, ``12h``, ``7d``).

    Raises
    ------
    ValueError
        Naming the value and both forms.
    """
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"since: {value!r} is neither an ISO date/time (2024-05-01, 2024-05-01T12:00) nor a "
            "duration (30m, 12h, 7d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
