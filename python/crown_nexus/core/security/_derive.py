"""Derive purpose-bound keys from the application secret (HKDF-SHA256, RFC 5869).

One secret (``settings.secret_key``) feeds several mechanisms (CSRF, encryption, JWT signing);
each gets its own independent key by deriving with a distinct ``purpose`` (the HKDF ``info``),
so a key leaked from one mechanism says nothing about the others.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["derive_key"]

_SALT = b"crown-nexus/security/v1"


@lru_cache(maxsize=64)
def derive_key(secret: str | bytes, purpose: str, length: int = 32) -> bytes:
    """Return ``length`` bytes derived from ``secret`` for ``purpose``; same inputs, same bytes.

    Results are cached (a handful of secrets and purposes per process), so per-request users
    such as CSRF validation pay for HKDF once.
    """
    material = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=purpose.encode())
    return hkdf.derive(material)
