"""Opaque, encrypted, query-bound cursors for keyset pagination.

What a cursor promises:

* **Confidential.** A cursor is ``base64url(version || nonce || AES-256-GCM ciphertext + tag)``
  (unpadded, canonical). The sort values that mark the position are inside the ciphertext, so
  a client holding a cursor learns nothing of them but a rough size (the plaintext is padded
  to a multiple of 32 bytes).
* **Authenticated.** Any change — a flipped bit, a truncation, an appended byte, another
  application's key — fails the GCM tag check. Keys are derived with HKDF-SHA256 from the
  application's secret key (the one the settings hold, or one given to :class:`CursorCodec`)
  with a pagination-only ``info`` string, so the cursor key is never the secret itself nor any
  other component's key.
* **Bound to its query.** The encrypted payload carries a hash of the caller's *fingerprint*;
  :func:`~crown_nexus.core.pagination.paginate_with_cursor` makes that fingerprint from the
  model and table, every sort field and direction, the compiled query (its ``WHERE``/joins and
  their bound values) and an optional caller scope, so a cursor from one query is refused by
  any other.

The payload is the JSON object ``{"k": <fingerprint hash>, "d": "n"|"p", "v": [<typed value>, ...]}``;
values are typed pairs (``["i", 3]``, ``["s", "x"]``, ``["dt", "2024-01-01T00:00:00+00:00"]``,
...) so they decode to the Python type they had. Each cursor gets a random 96-bit nonce, which
NIST SP 800-38D deems safe for up to 2**32 cursors per key: rotate the secret key before one
application has issued that many.

:func:`decode_cursor` raises only :class:`InvalidCursorException` (422), whatever the input.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.pagination.exceptions import InvalidCursorException
from crown_nexus.core.pagination.models import MAX_CURSOR_LENGTH

__all__ = ["CursorCodec", "decode_cursor", "encode_cursor", "fingerprint_digest"]

_B64 = re.compile(r"[A-Za-z0-9_-]+")
_HKDF_INFO = b"crown-nexus/pagination-cursor/aes-256-gcm/v2"
_VERSION = b"\x02"  # also the GCM associated data: a cursor of another format never decrypts
_NONCE_BYTES = 12
_TAG_BYTES = 16
_PAD = 32
_MIN_BYTES = 1 + _NONCE_BYTES + _TAG_BYTES + _PAD
_MAX_VALUES = 16


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise InvalidCursorException()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursorException() from None


def _encode_value(value: Any) -> list[Any]:
    if value is None:
        return ["n", None]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", str(value)] if abs(value) >= 2**53 else ["i", value]
    if isinstance(value, float):
        return ["f", repr(value)]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, datetime):
        return ["dt", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, time):
        return ["t", value.isoformat()]
    if isinstance(value, Decimal):
        return ["dec", str(value)]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str | int):
        return _encode_value(value.value)  # enum members sort and compare by their value
    raise ConfigurationException(
        f"cursor pagination cannot encode a sort value of type {type(value).__name__}"
    )


def _decode_value(item: Any) -> Any:
    if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
        raise InvalidCursorException()
    tag, raw = item
    try:
        if tag == "n" and raw is None:
            return None
        if tag == "b" and isinstance(raw, bool):
            return raw
        if tag == "i" and isinstance(raw, int | str) and not isinstance(raw, bool):
            return int(raw)
        if tag == "s" and isinstance(raw, str):
            return raw
        if isinstance(raw, str) and len(raw) <= 100:
            if tag == "f":
                return float(raw)
            if tag == "dt":
                return datetime.fromisoformat(raw)
            if tag == "d":
                return date.fromisoformat(raw)
            if tag == "t":
                return time.fromisoformat(raw)
            if tag == "dec":
                return Decimal(raw)
            if tag == "u":
                return uuid.UUID(raw)
    except (ValueError, TypeError, InvalidOperation, OverflowError):
        raise InvalidCursorException() from None
    raise InvalidCursorException()


@functools.lru_cache(maxsize=16)
def _derive_key(secret: bytes) -> bytes:
    """The AES-256 key of the cursors for ``secret`` (HKDF-SHA256, pagination-only ``info``)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret)


def fingerprint_digest(fingerprint: str | bytes) -> str:
    """The value a cursor stores for ``fingerprint`` (first 16 bytes of its SHA-256, base64url)."""
    raw = fingerprint.encode("utf-8") if isinstance(fingerprint, str) else bytes(fingerprint)
    return _b64encode(hashlib.sha256(raw).digest()[:16])


class CursorCodec:
    """Encrypts and authenticates cursors with an AES-256-GCM key derived from ``secret_key``."""

    __slots__ = ("_aead",)

    def __init__(self, secret_key: str | bytes) -> None:
        secret = secret_key.encode("utf-8") if isinstance(secret_key, str) else bytes(secret_key)
        if not secret:
            raise ConfigurationException("cursor pagination needs a non-empty secret key")
        self._aead = AESGCM(_derive_key(secret))

    def encode(self, fingerprint: str, values: Sequence[Any], direction: str = "n") -> str:
        """The cursor for a position (``values`` of the sort keys) read in ``direction``
        (``"n"``: the rows after it, ``"p"``: the rows before it), bound to ``fingerprint``.

        Raises :class:`ConfigurationException` for a value of a type a cursor cannot carry.
        """
        if direction not in ("n", "p"):
            raise ConfigurationException(f"cursor direction must be 'n' or 'p', not {direction!r}")
        payload = orjson.dumps(
            {"k": fingerprint_digest(fingerprint), "d": direction, "v": [_encode_value(v) for v in values]}
        )
        payload += b" " * (-len(payload) % _PAD)
        nonce = os.urandom(_NONCE_BYTES)
        return _b64encode(_VERSION + nonce + self._aead.encrypt(nonce, payload, _VERSION))

    def decode(self, cursor: Any, fingerprint: str | None = None) -> tuple[str, list[Any]]:
        """``(direction, values)`` of a cursor made by :meth:`encode` with this key.

        Raises :class:`InvalidCursorException` for anything else: not a string, too long,
        malformed or non-canonical base64, truncated, failing authentication (``reason
        "signature"``: tampered, or made with another key), or — when ``fingerprint`` is given —
        made for another query (``reason "mismatch"``). Without ``fingerprint`` the query binding
        is not checked: keyset code must pass the fingerprint of the query it runs.
        """
        if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
            raise InvalidCursorException()
        raw = _b64decode(cursor)
        if _b64encode(raw) != cursor or len(raw) < _MIN_BYTES or raw[:1] != _VERSION:
            raise InvalidCursorException()
        nonce, sealed = raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :]
        try:
            payload = self._aead.decrypt(nonce, sealed, _VERSION)
        except InvalidTag:
            raise InvalidCursorException("Invalid pagination cursor", reason="signature") from None
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise InvalidCursorException() from None
        if (
            not isinstance(data, dict)
            or set(data) != {"k", "d", "v"}
            or data["d"] not in ("n", "p")
            or not isinstance(data["k"], str)
            or not isinstance(data["v"], list)
            or len(data["v"]) > _MAX_VALUES
        ):
            raise InvalidCursorException()
        if fingerprint is not None and not hmac.compare_digest(
            data["k"].encode("utf-8"), fingerprint_digest(str(fingerprint)).encode("ascii")
        ):
            raise InvalidCursorException(
                "Pagination cursor does not belong to this query", reason="mismatch"
            )
        return data["d"], [_decode_value(v) for v in data["v"]]


def _default_secret() -> str:
    from crown_nexus.core.config import settings

    return settings.secret_key.get_secret_value()


def encode_cursor(
    fingerprint: str, values: Sequence[Any], direction: str = "n", secret_key: str | bytes | None = None
) -> str:
    """Encrypt a cursor with ``secret_key`` (default: the loaded settings' secret key)."""
    return CursorCodec(secret_key or _default_secret()).encode(fingerprint, values, direction)


def decode_cursor(
    cursor: Any, fingerprint: str | None = None, secret_key: str | bytes | None = None
) -> tuple[str, list[Any]]:
    """Authenticate and decrypt ``cursor``; raises only :class:`InvalidCursorException` for bad input."""
    return CursorCodec(secret_key or _default_secret()).decode(cursor, fingerprint)
