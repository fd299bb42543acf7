"""Failed sign-ins are throttled per account and per address.

After ``auth.account_failures`` failures of one account name (or ``auth.address_failures``
from one address) within ``auth.failure_window_seconds``, sign-ins of that account (from that
address) are refused without checking the password, for ``auth.lockout_seconds``, doubled at
every further failure up to ``auth.max_lockout_seconds``. A refused attempt is not counted (so
a lockout ends even while someone keeps trying) and costs no password hash (so it costs the
server nothing). A successful sign-in clears its account's counter; an address's counter
only ages out, so a guesser who owns one account cannot reset it.

Unknown account names are counted like real ones: the answers do not tell which exist.
The counters live in the platform database, shared by every web replica and Airflow's API
server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dicomflow.config import AuthSettings
from dicomflow.db.audit import FailureCount, FailureStore

__all__ = ["Refusal", "SignInThrottle"]

ACCOUNT = "account"
ADDRESS = "address"


@dataclass(frozen=True)
class Refusal:
    """Sign-ins are refused for now.

    Attributes
    ----------
    kind
        ``account`` or ``address``: which limit was reached.
    retry_after
        Seconds until the next attempt is considered.
    """

    kind: str
    retry_after: int

    def message(self) -> str:
        """What the person signing in is told."""
        who = "this account" if self.kind == ACCOUNT else "your address"
        return (
            f"too many failed sign-ins for {who}: try again in {self.retry_after} s "
            "(or ask an administrator to set a new password)"
        )


class SignInThrottle:
    """Counts failures and says when to refuse.

    Parameters
    ----------
    store
        The counters.
    settings
        Limits, window and lockout.
    """

    def __init__(self, store: FailureStore, settings: AuthSettings) -> None:
        self._store = store
        self._settings = settings

    def refusal(self, account: str, address: str, now: datetime | None = None) -> Refusal | None:
        """Whether an attempt for ``account`` from ``address`` is refused now."""
        now = now or datetime.now(UTC)
        limits = (
            (ACCOUNT, account.lower(), self._settings.account_failures),
            (ADDRESS, address, self._settings.address_failures),
        )
        for kind, key, limit in limits:
            if not key:
                continue
            wait = self._wait(self._store.get(kind, key), limit, now)
            if wait > 0:
                return Refusal(kind, max(1, int(wait + 0.999)))
        return None

    def failed(self, account: str, address: str, now: datetime | None = None) -> None:
        """Count a failed attempt."""
        now = now or datetime.now(UTC)
        window = timedelta(seconds=self._settings.failure_window_seconds)
        self._store.add_failure(ACCOUNT, account.lower(), now, window)
        if address:
            self._store.add_failure(ADDRESS, address, now, window)

    def succeeded(self, account: str) -> None:
        """Clear the account's counter after a successful sign-in."""
        self._store.clear(ACCOUNT, account.lower())

    def _wait(self, count: FailureCount | None, limit: int, now: datetime) -> float:
        if count is None or count.failures < limit:
            return 0.0
        excess = count.failures - limit
        lockout = min(
            self._settings.lockout_seconds * (2 ** min(excess, 30)),
            self._settings.max_lockout_seconds,
        )
        return (count.last_failure_at + timedelta(seconds=lockout) - now).total_seconds()
