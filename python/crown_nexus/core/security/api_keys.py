"""API keys: ``"<key_id>.<secret>"``, of which only a SHA-256 hash of the secret is stored.

The secret is 32 random bytes (URL-safe base64), so a fast hash is the right tool: there is
nothing to brute-force, and verification stays cheap. Comparison is constant-time.

:func:`generate_api_key` counts ``api_keys_created_total`` and publishes
``security.api_key_created``; :func:`verify_api_key` times ``api_key_verification_duration_seconds``
(guide §12) — whether called directly or through ``SecurityService``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from crown_nexus.core.security._telemetry import (
    record_api_key_created,
    record_api_key_verification,
)

__all__ = [
    "ApiKeyData",
    "generate_api_key",
    "hash_api_key_secret",
    "parse_api_key",
    "verify_api_key",
]

_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
KEY_ID_PREFIX = "ck_"


@dataclass(frozen=True, slots=True)
class ApiKeyData:
    """A freshly generated API key. ``api_key`` is shown to its owner once and never stored."""

    key_id: str
    api_key: str
    hashed_secret: str
    user_id: str
    name: str
    permissions: list[str] = field(default_factory=list)
    created_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )

    def __repr__(self) -> str:  # never print the secret
        return f"ApiKeyData(key_id={self.key_id!r}, user_id={self.user_id!r}, name={self.name!r})"


def hash_api_key_secret(secret: str) -> str:
    """Return the stored form of ``secret``: its SHA-256 hex digest."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate_api_key(user_id: str, name: str, permissions: Iterable[str] = ()) -> ApiKeyData:
    """Create a new API key for ``user_id``; store ``hashed_secret`` and ``key_id``, never the key.

    Counts ``api_keys_created_total`` and publishes ``security.api_key_created`` (user, key id,
    name, permissions; from sync code it is scheduled on the running loop, if any).
    """
    key_id = KEY_ID_PREFIX + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    data = ApiKeyData(
        key_id=key_id,
        api_key=f"{key_id}.{secret}",
        hashed_secret=hash_api_key_secret(secret),
        user_id=str(user_id),
        name=name,
        permissions=[str(p) for p in permissions],
    )
    record_api_key_created(data.user_id, data.key_id, name, data.permissions)
    return data


def parse_api_key(api_key: str) -> tuple[str, str] | None:
    """Split ``"<key_id>.<secret>"``; ``None`` when it is not in that shape."""
    if not isinstance(api_key, str) or len(api_key) > 256:
        return None
    key_id, sep, secret = api_key.partition(".")
    if not sep or not _KEY_ID_RE.match(key_id) or not _SECRET_RE.match(secret):
        return None
    return key_id, secret


def verify_api_key(api_key: str, hashed_secret: str) -> bool:
    """Return ``True`` when ``api_key``'s secret hashes to ``hashed_secret`` (constant-time).

    Malformed keys or hashes give ``False``, never an exception. The check is timed in
    ``api_key_verification_duration_seconds`` (label ``success``).
    """
    started = time.perf_counter()
    ok = _matches(api_key, hashed_secret)
    record_api_key_verification(started, ok)
    return ok


def _matches(api_key: str, hashed_secret: str) -> bool:
    parsed = parse_api_key(api_key)
    if parsed is None or not isinstance(hashed_secret, str):
        return False
    candidate = hash_api_key_secret(parsed[1])
    return hmac.compare_digest(candidate.encode("ascii"), hashed_secret.encode("utf-8", "replace"))
