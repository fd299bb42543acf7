"""Who a request is: passwords (throttled), browser sessions and API tokens.

Every door that has users (the web service's pages, REST API and STOW-RS route, and Airflow's
sign-in) turns its credentials into a :class:`~dicomflow.access.policy.Principal` here, and
then asks :data:`~dicomflow.access.policy.POLICY`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dicomflow.access.audit import Audit, AuditAction
from dicomflow.access.passwords import PasswordHashing
from dicomflow.access.policy import Principal, Role
from dicomflow.access.throttle import Refusal, SignInThrottle
from dicomflow.access.tokens import digest, looks_like_token, new_secret
from dicomflow.config import AuthSettings
from dicomflow.db.accounts import AccountInfo, AccountStore
from dicomflow.db.audit import AuditStore, FailureStore
from dicomflow.db.credentials import CredentialStore

__all__ = ["Authenticator", "NewSession", "SignInResult"]

LOGGER = logging.getLogger(__name__)
#: Seconds between two writes of a session's or token's last use (not one write per request).
TOUCH_EVERY = timedelta(seconds=60)
#: Verified HTTP Basic passwords remembered (see :meth:`Authenticator.basic`).
_BASIC_CACHE_SIZE = 1024
#: How long a token's principal is trusted while the database cannot be asked (STOW-RS keeps
#: taking data while the database restarts, as the DIMSE door does).
_FALLBACK_SECONDS = 600.0
#: What a failed sign-in is told, whichever the reason: nothing about which accounts exist.
WRONG = "wrong user name or password"


@dataclass(frozen=True)
class SignInResult:
    """The outcome of a password check.

    Attributes
    ----------
    principal
        Who signed in, or ``None``.
    refusal
        Set when the attempt was throttled (no password was checked).
    message
        What to tell the person when ``principal`` is ``None``.
    """

    principal: Principal | None
    refusal: Refusal | None = None
    message: str = ""


@dataclass(frozen=True)
class NewSession:
    """A session just started: the cookie's value (shown to the browser only) and its end."""

    secret: str
    csrf_token: str
    expires_at: datetime


class Authenticator:
    """Checks credentials against the platform database.

    Parameters
    ----------
    engine
        An engine on the platform database.
    settings
        ``auth.*``: hashing, throttling, session lifetimes.
    """

    def __init__(self, engine: Engine, settings: AuthSettings) -> None:
        self.settings = settings
        self.accounts = AccountStore(engine)
        self.credentials = CredentialStore(engine)
        self.audit = Audit(AuditStore(engine))
        self.throttle = SignInThrottle(FailureStore(engine), settings)
        self.hashing = PasswordHashing(settings)
        self._lock = threading.Lock()
        # HMAC(process key, user, password) -> the hash it was verified against (see basic()).
        self._basic_key = secrets.token_bytes(32)
        self._basic_ok: OrderedDict[bytes, str] = OrderedDict()
        # token digest -> (principal, time of the last database answer).
        self._known_tokens: dict[str, tuple[Principal, datetime]] = {}
        self._touched: dict[str, datetime] = {}

    # -- accounts -----------------------------------------------------------------------------

    @staticmethod
    def principal(account: AccountInfo, via: str, csrf_token: str = "") -> Principal:
        """The principal of an account, with its roles."""
        roles = {p: Role(r) for p, r in account.roles.items() if r in Role._value2member_map_}
        return Principal(account.name, account.is_admin, roles, via, csrf_token)

    def principal_of(self, name: str, via: str = "shell") -> Principal | None:
        """The principal of an active account, or ``None``."""
        account = self.accounts.get(name)
        if account is None or account.disabled:
            return None
        return self.principal(account, via)

    # -- passwords ----------------------------------------------------------------------------

    def check_password(
        self, name: str, password: str, address: str, *, door: str = "web", via: str = "session"
    ) -> SignInResult:
        """Check a user name and password, throttled, and record the outcome in the trail.

        Parameters
        ----------
        name, password
            What the person typed.
        address
            Where the attempt came from (the per-address limit; the trail).
        door
            Named in the trail: ``web``, ``basic``, ``airflow``.
        via
            The principal's ``via`` on success.
        """
        refusal = self.throttle.refusal(name, address)
        if refusal is not None:
            self.audit.record(
                name,
                AuditAction.SIGN_IN,
                address=address,
                outcome="refused",
                detail=f"{door}: throttled ({refusal.kind})",
            )
            return SignInResult(None, refusal, refusal.message())
        account = self.accounts.get(name)
        ok = self.hashing.verify(account.password_hash if account else None, password)
        if not ok or account is None:
            self.throttle.failed(name, address)
            self.audit.record(
                name,
                AuditAction.SIGN_IN,
                address=address,
                outcome="failed",
                detail=f"{door}: wrong user name or password",
            )
            return SignInResult(None, None, WRONG)
        if account.disabled:
            self.audit.record(
                name,
                AuditAction.SIGN_IN,
                address=address,
                outcome="refused",
                detail=f"{door}: account disabled",
            )
            return SignInResult(None, None, "this account is disabled: ask an administrator")
        self.throttle.succeeded(name)
        if account.password_hash and self.hashing.needs_rehash(account.password_hash):
            # The configured parameters changed: store a hash made with them.
            self.accounts.rehash(name, account.password_hash, self.hashing.hash(password))
        if door != "basic":
            self.audit.record(name, AuditAction.SIGN_IN, address=address, detail=door)
        return SignInResult(self.principal(account, via))

    # -- browser sessions ---------------------------------------------------------------------

    def start_session(self, principal: Principal, address: str) -> NewSession:
        """Start a session for a signed-in principal."""
        secret, csrf = new_secret(), new_secret()
        expires = datetime.now(UTC) + timedelta(hours=self.settings.session_hours)
        self.credentials.add_session(digest(secret), principal.name, csrf, expires, address)
        return NewSession(secret, csrf, expires)

    def from_session(self, secret: str, now: datetime | None = None) -> Principal | None:
        """The principal of a live session, or ``None`` (unknown, expired, idle, disabled)."""
        now = now or datetime.now(UTC)
        id_hash = digest(secret)
        record = self.credentials.session(id_hash)
        if record is None:
            return None
        idle = timedelta(minutes=self.settings.idle_minutes)
        if record.expires_at <= now or record.last_seen_at + idle <= now:
            self.credentials.end_session(id_hash)
            return None
        account = self.accounts.get(record.user)
        if account is None or account.disabled:
            return None
        if now - record.last_seen_at >= TOUCH_EVERY:
            self.credentials.touch_session(id_hash, now)
        return self.principal(account, "session", record.csrf_token)

    def end_session(self, secret: str) -> None:
        """Sign out: forget the session."""
        self.credentials.end_session(digest(secret))

    # -- API tokens ---------------------------------------------------------------------------

    def from_token(self, token: str) -> Principal | None:
        """The principal of an active token of an active account, or ``None``.

        While the database cannot be asked, a token that was valid within the last ten
        minutes still is (a STOW-RS client keeps sending while the database restarts).
        """
        now = datetime.now(UTC)
        token_hash = digest(token)
        try:
            found = self.credentials.token_user(token_hash, now)
            principal = None
            if found is not None:
                token_id, user = found
                account = self.accounts.get(user)
                if account is not None and not account.disabled:
                    principal = self.principal(account, "token")
                    if self._due(token_hash, now):
                        self.credentials.touch_token(token_id, now)
        except SQLAlchemyError:
            with self._lock:
                known = self._known_tokens.get(token_hash)
            if known and (now - known[1]).total_seconds() < _FALLBACK_SECONDS:
                LOGGER.warning("database away: trusting token of %s seen before", known[0].name)
                return known[0]
            raise
        with self._lock:
            if principal is None:
                self._known_tokens.pop(token_hash, None)
            else:
                self._known_tokens[token_hash] = (principal, now)
        return principal

    def _due(self, token_hash: str, now: datetime) -> bool:
        """Whether the token's last use should be written now (at most once a minute)."""
        with self._lock:
            touched = self._touched.get(token_hash)
            if touched is not None and now - touched < TOUCH_EVERY:
                return False
            self._touched[token_hash] = now
            if len(self._touched) > _BASIC_CACHE_SIZE:
                self._touched.clear()
            return True

    # -- HTTP Basic ---------------------------------------------------------------------------

    def basic(self, name: str, password: str, address: str) -> SignInResult:
        """HTTP Basic: the password is an API token of ``name`` or the account's password.

        A password verified once is remembered in this process as an HMAC under a random
        per-process key, together with the hash it matched: later requests cost one keyed
        hash instead of an argon2 verification, and a changed password (a new hash) or a
        disabled account stops them at once. Failures are never remembered and count
        against the sign-in limits like any failed sign-in.
        """
        if looks_like_token(password):
            principal = self.from_token(password)
            if principal is not None and principal.name == name:
                return SignInResult(principal)
            self.audit.record(
                name,
                AuditAction.SIGN_IN,
                address=address,
                outcome="failed",
                detail="basic: unknown or revoked token",
            )
            return SignInResult(None, None, WRONG)
        key = hmac.new(self._basic_key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            remembered = self._basic_ok.get(key)
        if remembered is not None:
            account = self.accounts.get(name)
            if account is not None and not account.disabled and account.password_hash == remembered:
                return SignInResult(self.principal(account, "basic"))
        result = self.check_password(name, password, address, door="basic", via="basic")
        if result.principal is not None:
            account = self.accounts.get(name)
            if account is not None and account.password_hash:
                with self._lock:
                    self._basic_ok[key] = account.password_hash
                    while len(self._basic_ok) > _BASIC_CACHE_SIZE:
                        self._basic_ok.popitem(last=False)
        return result
