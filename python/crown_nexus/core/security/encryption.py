"""Authenticated encryption of ``str``/``bytes``/``dict`` values with key rotation (Fernet).

Keys: ``settings.encryption_keys`` (newest first). Each entry is a Fernet key (URL-safe base64
of 32 bytes) or any other string, from which a Fernet key is derived with HKDF. The first key
encrypts; every key decrypts (``MultiFernet``), so adding a new key in front rotates without
breaking stored data, and :func:`rotate_encrypted` re-encrypts a value under the newest key.
Without configured keys the key is derived from ``settings.secret_key`` (HKDF, purpose
``"encryption"``); that derived key also stays available for decryption once keys are set.

The plaintext carries a one-byte type tag (``s`` str, ``b`` bytes, ``j`` JSON) so
:func:`decrypt_data` returns the type that was encrypted.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from crown_nexus.core.exceptions import SecurityException
from crown_nexus.core.security._config import get_security_settings
from crown_nexus.core.security._derive import derive_key

__all__ = ["decrypt_data", "encrypt_data", "generate_encryption_key", "rotate_encrypted"]

_TAG_STR, _TAG_BYTES, _TAG_JSON = b"s", b"b", b"j"


def generate_encryption_key() -> str:
    """Return a new random Fernet key, suitable for ``CROWN_NEXUS_ENCRYPTION_KEYS``."""
    return Fernet.generate_key().decode("ascii")


def _fernet_for(entry: str) -> Fernet:
    try:
        raw = base64.urlsafe_b64decode(entry.encode("ascii"))
        if len(raw) == 32:
            return Fernet(entry.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        pass
    return Fernet(base64.urlsafe_b64encode(derive_key(entry, "encryption:configured")))


@lru_cache(maxsize=16)
def _multi_fernet(secret: str, keys: tuple[str, ...]) -> MultiFernet:
    fernets = [_fernet_for(k) for k in keys]
    fernets.append(Fernet(base64.urlsafe_b64encode(derive_key(secret, "encryption"))))
    return MultiFernet(fernets)


def _current(keys: list[str] | None) -> MultiFernet:
    settings = get_security_settings()
    chosen = tuple(keys if keys is not None else settings.encryption_keys)
    return _multi_fernet(settings.secret_key.get_secret_value(), chosen)


def encrypt_data(data: str | bytes | dict[str, Any], *, keys: list[str] | None = None) -> str:
    """Encrypt ``data`` (str, bytes, or a JSON-serialisable dict/list) into an opaque token.

    The token is authenticated: any change to it makes :func:`decrypt_data` fail.
    Raises :class:`TypeError` for other types or a dict that is not JSON-serialisable.
    """
    if isinstance(data, str):
        plain = _TAG_STR + data.encode("utf-8")
    elif isinstance(data, bytes | bytearray | memoryview):
        plain = _TAG_BYTES + bytes(data)
    elif isinstance(data, dict | list):
        try:
            plain = _TAG_JSON + orjson.dumps(data)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise TypeError(f"data is not JSON-serialisable: {exc}") from None
    else:
        raise TypeError(f"encrypt_data takes str, bytes or dict, not {type(data).__name__}")
    return _current(keys).encrypt(plain).decode("ascii")


def decrypt_data(token: str | bytes, *, keys: list[str] | None = None) -> Any:
    """Decrypt a token made by :func:`encrypt_data`; return the original str, bytes or dict.

    A tampered, truncated or foreign token (or one whose key was removed) raises
    :class:`~crown_nexus.core.exceptions.SecurityException` ("Decryption failed"), never
    anything that reveals why.
    """
    try:
        raw = token.encode("ascii") if isinstance(token, str) else bytes(token)
        plain = _current(keys).decrypt(raw)
    except (InvalidToken, UnicodeEncodeError, TypeError, ValueError):
        raise SecurityException(message="Decryption failed") from None
    tag, body = plain[:1], plain[1:]
    try:
        if tag == _TAG_STR:
            return body.decode("utf-8")
        if tag == _TAG_BYTES:
            return body
        if tag == _TAG_JSON:
            return orjson.loads(body)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        pass
    raise SecurityException(message="Decryption failed")


def rotate_encrypted(token: str, *, keys: list[str] | None = None) -> str:
    """Re-encrypt ``token`` under the newest key (same plaintext); raise like :func:`decrypt_data`."""
    try:
        return _current(keys).rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeEncodeError, AttributeError):
        raise SecurityException(message="Decryption failed") from None
