"""CSRF tokens: HMAC-SHA256 signed, bound to a session id, expiring, checked in constant time.

Token layout: ``base64url(nonce[16] || issued_at[8, big-endian seconds]) "." base64url(mac)``
where ``mac = HMAC-SHA256(k_csrf, session_id_utf8 || 0x00 || nonce || issued_at)`` and ``k_csrf``
is derived from the secret key (HKDF, purpose ``"csrf"``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time

from crown_nexus.core.security._config import get_security_settings
from crown_nexus.core.security._derive import derive_key

__all__ = [
    "DEFAULT_CSRF_MAX_AGE",
    "csrf_session_id",
    "generate_csrf_token",
    "validate_csrf_token",
]

#: seconds a CSRF token stays valid unless ``max_age`` says otherwise
DEFAULT_CSRF_MAX_AGE = 2 * 60 * 60
_NONCE = 16
_MAX_TOKEN_LEN = 256


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str | None) -> bytes:
    if secret is None:
        secret = get_security_settings().secret_key.get_secret_value()
    return derive_key(secret, "csrf")


def _mac(key: bytes, session_id: str, payload: bytes) -> bytes:
    return hmac.new(key, session_id.encode("utf-8") + b"\x00" + payload, hashlib.sha256).digest()


def csrf_session_id(user_id: str, family: str | None) -> str:
    """The session id a CSRF token is bound to for a login: the user **and** the token family.

    Every token of one login shares its family (``fam``), refreshed ones too, so the binding
    lasts as long as the login and no longer: a token made for another user, another login of
    the same user or a revoked login does not validate. Without a family: the user id alone.
    """
    return f"{user_id}\x1f{family}" if family else str(user_id)


def generate_csrf_token(
    session_id: str, *, secret: str | None = None, now: float | None = None
) -> str:
    """Return a new CSRF token bound to ``session_id`` (a user or session id)."""
    issued = int(time.time() if now is None else now)
    payload = secrets.token_bytes(_NONCE) + struct.pack(">Q", issued)
    return f"{_b64e(payload)}.{_b64e(_mac(_key(secret), str(session_id), payload))}"


def validate_csrf_token(
    token: str,
    session_id: str,
    *,
    max_age: int = DEFAULT_CSRF_MAX_AGE,
    secret: str | None = None,
    now: float | None = None,
) -> bool:
    """Return ``True`` when ``token`` was made for ``session_id``, is intact and not expired.

    Any malformed, tampered, foreign-session or expired token gives ``False`` (never raises).
    """
    if not isinstance(token, str) or not isinstance(session_id, str) or len(token) > _MAX_TOKEN_LEN:
        return False
    payload_b64, sep, mac_b64 = token.partition(".")
    if not sep:
        return False
    try:
        payload = _b64d(payload_b64)
        mac = _b64d(mac_b64)
    except (binascii.Error, ValueError):
        return False
    if len(payload) != _NONCE + 8:
        return False
    expected = _mac(_key(secret), session_id, payload)
    if not hmac.compare_digest(mac, expected):
        return False
    (issued,) = struct.unpack(">Q", payload[_NONCE:])
    current = time.time() if now is None else now
    return issued <= current + 5 and current - issued <= max_age
