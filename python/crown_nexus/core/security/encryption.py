"""Authenticated encryption of ``str``/``bytes``/``dict`` values with key rotation (Fernet).

Keys: ``settings.encryption_keys`` (``CROWN_NEXUS_ENCRYPTION_KEYS``, newest first). The first key
encrypts; every key decrypts (``MultiFernet``), so adding a new key in front rotates without
breaking stored data, and :func:`rotate_encrypted` re-encrypts a value under the newest key.
Each entry is either

- a **Fernet key** (URL-safe base64 of 32 random bytes, :func:`generate_encryption_key`), used
  as it is -- the recommended form; or
- a **passphrase** of at least :data:`MIN_PASSPHRASE_LENGTH` (16) characters, stretched into a
  Fernet key with **scrypt** (``n=2**15, r=8, p=1``, 32 MiB, ~0.1 s once per process per
  passphrase; the result is cached). The salt is fixed per application:
  ``b"crown-nexus/encryption-passphrase/v1:" + settings.app_name`` -- so the same passphrase gives
  different keys in differently named apps, and **renaming ``app_name`` changes the keys derived
  from passphrases** (Fernet keys are unaffected). Shorter passphrases are refused with a
  :class:`~crown_nexus.core.exceptions.ConfigurationException` naming the setting (also at
  :func:`~crown_nexus.core.security.configure_security`, see :func:`check_encryption_keys`).

*Legacy, decrypt only*: releases before this one derived passphrase keys with HKDF, which does
not slow down guessing. Tokens made that way (passphrases of 16+ characters) still decrypt, after
the current keys fail, and each such decryption logs a warning; :func:`rotate_encrypted` moves
them under the newest key. Nothing is ever encrypted under a legacy key. Tokens made under a
passphrase shorter than 16 characters cannot be read any more: decrypt and re-encrypt them with
the previous release (``rotate_encrypted(token, keys=[new_fernet_key, old_passphrase])``).

Without configured keys the key is derived from ``settings.secret_key`` (HKDF, purpose
``"encryption"``: the secret key is high-entropy, so HKDF is the right tool there); that derived
key also stays available for decryption once keys are set.

The plaintext carries a one-byte type tag (``s`` str, ``b`` bytes, ``j`` JSON) so
:func:`decrypt_data` returns the type that was encrypted.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from crown_nexus.core.exceptions import ConfigurationException, SecurityException
from crown_nexus.core.security._config import get_security_settings
from crown_nexus.core.security._derive import derive_key
from crown_nexus.logging import get_logger

__all__ = [
    "MIN_PASSPHRASE_LENGTH",
    "check_encryption_keys",
    "decrypt_data",
    "encrypt_data",
    "generate_encryption_key",
    "rotate_encrypted",
]

logger = get_logger("crown_nexus.core.security")

_TAG_STR, _TAG_BYTES, _TAG_JSON = b"s", b"b", b"j"

#: passphrases (entries that are not Fernet keys) shorter than this are refused
MIN_PASSPHRASE_LENGTH = 16
#: scrypt cost parameters for passphrases (RFC 7914; 128 * r * n bytes = 32 MiB)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SALT_PREFIX = b"crown-nexus/encryption-passphrase/v1:"
_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")
_SETTING = "CROWN_NEXUS_ENCRYPTION_KEYS"


def generate_encryption_key() -> str:
    """Return a new random Fernet key, suitable for ``CROWN_NEXUS_ENCRYPTION_KEYS``."""
    return Fernet.generate_key().decode("ascii")


def _is_fernet_key(entry: str) -> bool:
    return _FERNET_KEY.fullmatch(entry.strip()) is not None


def check_encryption_keys(keys: Sequence[str]) -> None:
    """Raise ``ConfigurationException`` unless every entry is a Fernet key or a long passphrase.

    Cheap (no key derivation); the message names the setting and the entry's position, never
    its value.
    """
    for index, entry in enumerate(keys):
        if not isinstance(entry, str):
            raise ConfigurationException(
                f"{_SETTING} entry {index} must be a str, not {type(entry).__name__}",
                config_key="encryption_keys",
            )
        if not _is_fernet_key(entry) and len(entry) < MIN_PASSPHRASE_LENGTH:
            raise ConfigurationException(
                f"{_SETTING} entry {index} is neither a Fernet key (generate_encryption_key()) "
                f"nor a passphrase of at least {MIN_PASSPHRASE_LENGTH} characters",
                config_key="encryption_keys",
                details={"entry": index, "min_passphrase_length": MIN_PASSPHRASE_LENGTH},
            )


@lru_cache(maxsize=32)
def _scrypt_key(passphrase: str, app_name: str) -> bytes:
    """The Fernet key stretched from ``passphrase`` (scrypt, the app's fixed salt); cached."""
    kdf = Scrypt(
        salt=_SALT_PREFIX + app_name.encode("utf-8"), length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P
    )
    return base64.urlsafe_b64encode(kdf.derive(passphrase.encode("utf-8")))


@dataclass(frozen=True)
class _Keyring:
    """Current keys (the first encrypts) and legacy HKDF keys (decrypt and rotate only)."""

    current: MultiFernet
    legacy: MultiFernet | None
    everything: MultiFernet


@lru_cache(maxsize=16)
def _keyring(secret: str, app_name: str, keys: tuple[str, ...]) -> _Keyring:
    check_encryption_keys(keys)
    current: list[Fernet] = []
    legacy: list[Fernet] = []
    for entry in keys:
        if _is_fernet_key(entry):
            current.append(Fernet(entry.strip().encode("ascii")))
        else:
            current.append(Fernet(_scrypt_key(entry, app_name)))
            legacy.append(
                Fernet(base64.urlsafe_b64encode(derive_key(entry, "encryption:configured")))
            )
    current.append(Fernet(base64.urlsafe_b64encode(derive_key(secret, "encryption"))))
    return _Keyring(
        current=MultiFernet(current),
        legacy=MultiFernet(legacy) if legacy else None,
        everything=MultiFernet(current + legacy),
    )


def _current(keys: list[str] | None) -> _Keyring:
    settings = get_security_settings()
    chosen = tuple(keys if keys is not None else settings.encryption_keys)
    return _keyring(settings.secret_key.get_secret_value(), settings.app_name, chosen)


def _decrypt(keyring: _Keyring, raw: bytes) -> bytes:
    try:
        return keyring.current.decrypt(raw)
    except InvalidToken:
        if keyring.legacy is None:
            raise
    plain = keyring.legacy.decrypt(raw)
    logger.warning(
        "decrypted a token made under a legacy HKDF-derived passphrase key; "
        "re-encrypt it with rotate_encrypted()",
    )
    return plain


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
    return _current(keys).current.encrypt(plain).decode("ascii")


def decrypt_data(token: str | bytes, *, keys: list[str] | None = None) -> Any:
    """Decrypt a token made by :func:`encrypt_data`; return the original str, bytes or dict.

    A tampered, truncated or foreign token (or one whose key was removed) raises
    :class:`~crown_nexus.core.exceptions.SecurityException` ("Decryption failed"), never
    anything that reveals why. Misconfigured keys raise ``ConfigurationException``.
    """
    keyring = _current(keys)
    try:
        raw = token.encode("ascii") if isinstance(token, str) else bytes(token)
        plain = _decrypt(keyring, raw)
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
    """Re-encrypt ``token`` under the newest key (same plaintext); raise like :func:`decrypt_data`.

    Also moves tokens made under a legacy HKDF-derived passphrase key to the current key.
    """
    keyring = _current(keys)
    try:
        return keyring.everything.rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeEncodeError, AttributeError):
        raise SecurityException(message="Decryption failed") from None
