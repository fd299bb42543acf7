"""Password hashing: argon2id (memory-hard) through ``argon2-cffi``, parameters from settings."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from dicomflow.config import AuthSettings

__all__ = ["MIN_PASSWORD_LENGTH", "PasswordHashing", "WeakPasswordError", "check_strength"]

#: Shortest password accepted for an account (NIST SP 800-63B asks for at least 8).
MIN_PASSWORD_LENGTH = 10
#: Longest password hashed: argon2 takes any length, but a megabyte "password" costs CPU.
MAX_PASSWORD_LENGTH = 1024


class WeakPasswordError(ValueError):
    """A password too short (or too long) to be accepted."""


def check_strength(password: str) -> str:
    """Return ``password`` if it is long enough, else raise :class:`WeakPasswordError`."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters "
            f"(it has {len(password)})"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    return password


class PasswordHashing:
    """Hashes and verifies passwords with the configured argon2id parameters.

    Parameters
    ----------
    settings
        ``auth.argon2_*``.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Verified against when the account does not exist, so that an unknown name costs
        # the same time as a wrong password and the answer's timing names no account.
        self._dummy = self._hasher.hash("no such account: the same work as a real one")

    def hash(self, password: str) -> str:
        """The PHC string of a new hash of ``password``."""
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (``None``: no password, always false)."""
        if len(password) > MAX_PASSWORD_LENGTH:
            return False
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
