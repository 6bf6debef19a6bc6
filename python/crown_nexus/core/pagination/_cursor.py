"""Opaque, tamper-evident cursors for keyset pagination.

A cursor is ``<payload>.<mac>``, both unpadded base64url: ``payload`` is the JSON object
``{"k": <sort fingerprint>, "d": "n"|"p", "v": [<typed value>, ...]}`` and ``mac`` the first 16
bytes of HMAC-SHA256 over the payload bytes, keyed with a key derived from the application's
secret key (never the secret itself). Values are typed pairs (``["i", 3]``, ``["s", "x"]``,
``["dt", "2024-01-01T00:00:00+00:00"]``, ...) so they decode to the Python type they had.

:func:`decode_cursor` raises only :class:`InvalidCursorException`, whatever the input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.pagination.exceptions import InvalidCursorException
from crown_nexus.core.pagination.models import MAX_CURSOR_LENGTH

__all__ = ["CursorCodec", "decode_cursor", "encode_cursor"]

_MAC_BYTES = 16
_B64 = re.compile(r"[A-Za-z0-9_-]+")
_KEY_CONTEXT = b"crown-nexus/pagination-cursor/v1"
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


class CursorCodec:
    """Encodes and verifies cursors with a key derived from ``secret_key``."""

    __slots__ = ("_key",)

    def __init__(self, secret_key: str | bytes) -> None:
        secret = secret_key.encode("utf-8") if isinstance(secret_key, str) else bytes(secret_key)
        if not secret:
            raise ConfigurationException("cursor pagination needs a non-empty secret key")
        self._key = hmac.new(secret, _KEY_CONTEXT, hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, fingerprint: str, values: Sequence[Any], direction: str = "n") -> str:
        """The cursor for a position (``values`` of the sort keys) read in ``direction``
        (``"n"``: the rows after it, ``"p"``: the rows before it)."""
        payload = orjson.dumps(
            {"k": fingerprint, "d": direction, "v": [_encode_value(v) for v in values]}
        )
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def decode(self, cursor: Any, fingerprint: str | None = None) -> tuple[str, list[Any]]:
        """``(direction, values)`` of a cursor made by :meth:`encode` with this key.

        Raises :class:`InvalidCursorException` for anything else: not a string, too long,
        malformed, a wrong MAC (tampered or another key), or — when ``fingerprint`` is given —
        a cursor made for another sort order or model.
        """
        if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
            raise InvalidCursorException()
        head, sep, tail = cursor.partition(".")
        if not sep or "." in tail:
            raise InvalidCursorException()
        payload, mac = _b64decode(head), _b64decode(tail)
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidCursorException("Invalid pagination cursor", reason="signature")
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
            data["k"].encode("utf-8"), str(fingerprint).encode("utf-8")
        ):
            raise InvalidCursorException(
                "Pagination cursor does not match this query's sort order", reason="mismatch"
            )
        return data["d"], [_decode_value(v) for v in data["v"]]


def _default_secret() -> str:
    from crown_nexus.core.config import settings

    return settings.secret_key.get_secret_value()


def encode_cursor(
    fingerprint: str, values: Sequence[Any], direction: str = "n", secret_key: str | bytes | None = None
) -> str:
    """Encode a cursor with ``secret_key`` (default: the loaded settings' secret key)."""
    return CursorCodec(secret_key or _default_secret()).encode(fingerprint, values, direction)


def decode_cursor(
    cursor: Any, fingerprint: str | None = None, secret_key: str | bytes | None = None
) -> tuple[str, list[Any]]:
    """Verify and decode ``cursor``; raises only :class:`InvalidCursorException` for bad input."""
    return CursorCodec(secret_key or _default_secret()).decode(cursor, fingerprint)
