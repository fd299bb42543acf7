"""Secrets handed to clients: API tokens and session ids. The database keeps SHA-256 only.

A token or session id is 32 random bytes, so a fast hash is as strong as a slow one here
(nothing to guess); looking it up by its hash is one index probe.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["TOKEN_PREFIX", "digest", "looks_like_token", "new_secret", "new_token", "shown_prefix"]

#: Every API token starts with this, so that a leaked one is recognisable (secret scanners)
#: and HTTP Basic can tell a token from a password.
TOKEN_PREFIX = "dft_"


def new_token() -> str:
    """A new API token: the prefix and 43 URL-safe characters (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_secret() -> str:
    """A new session id or CSRF token (256 bits)."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a token or session id is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    """Whether ``value`` has the shape of an API token (not whether it is valid)."""
    return value.startswith(TOKEN_PREFIX) and len(value) > len(TOKEN_PREFIX) + 16


def shown_prefix(token: str) -> str:
    """The first characters of a token, kept to tell tokens apart in lists."""
    return token[: len(TOKEN_PREFIX) + 6]
