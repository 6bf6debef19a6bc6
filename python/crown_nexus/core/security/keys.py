"""JWT keys and the key ring: one signing key, several verification keys, served as JWKS.

A :class:`JwtKey` pairs a ``kid`` with an algorithm and its key material (the secret for HS*,
PEM PKCS8 private / SPKI public keys for EdDSA, ES256 and RS256). A :class:`KeyRing` signs with
one key and verifies with any key it holds, chosen by the token's ``kid`` header, each key only
under its own algorithm (so no algorithm confusion is possible). Rotate by adding a new signing
key with :meth:`KeyRing.rotate`: tokens signed by the previous key still verify until you
:meth:`KeyRing.retire` it (after the longest token lifetime).

:meth:`KeyRing.from_settings` builds the default ring: HS256 (or HS384/HS512) with
``settings.secret_key``; for ``EdDSA``/``ES256`` a key pair derived deterministically from the
secret key with HKDF, so every worker and every restart agrees without extra configuration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from crown_nexus import accel
from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.security._derive import derive_key
from crown_nexus.settings import Settings

__all__ = ["ASYMMETRIC_ALGORITHMS", "HMAC_ALGORITHMS", "JwtKey", "KeyRing"]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset({"EdDSA", "ES256", "RS256"})
# order of the P-256 group
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _private_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_private(pem: bytes, algorithm: str) -> Any:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationException(message=f"not a PEM private key for {algorithm}") from exc
    expected = {
        "EdDSA": ed25519.Ed25519PrivateKey,
        "ES256": ec.EllipticCurvePrivateKey,
        "RS256": rsa.RSAPrivateKey,
    }[algorithm]
    if not isinstance(key, expected) or (
        isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1)
    ):
        raise ConfigurationException(message=f"the PEM key does not fit algorithm {algorithm}")
    return key


def _read_pem(entry: str) -> bytes:
    """PEM text as given, or the contents of the file it names."""
    if entry.lstrip().startswith("-----BEGIN"):
        return entry.encode("ascii")
    try:
        return Path(entry).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigurationException(
            message=f"cannot read JWT private key file {entry!r}: {exc.strerror}",
            config_key="jwt_private_keys",
        ) from None


def _kid_for(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class JwtKey:
    """One JWT key: ``kid``, ``algorithm``, verification material and (optionally) signing material.

    For HS* both are the shared secret; for asymmetric algorithms ``signing_key`` is a PEM
    PKCS8 private key (``None`` for a verify-only key) and ``verification_key`` a PEM SPKI
    public key. ``repr`` never shows key material.
    """

    kid: str
    algorithm: str
    verification_key: bytes = field(repr=False)
    signing_key: bytes | None = field(default=None, repr=False)

    @property
    def algorithms(self) -> tuple[str]:
        """The only algorithm this key verifies, as the hot path's ``algorithms`` argument."""
        return (self.algorithm,)

    @property
    def symmetric(self) -> bool:
        """True for HMAC (shared-secret) keys, which are never published."""
        return self.algorithm in HMAC_ALGORITHMS

    @property
    def can_sign(self) -> bool:
        """True when this key holds signing material."""
        return self.signing_key is not None

    @classmethod
    def from_secret(
        cls, secret: str | bytes, algorithm: str = "HS256", kid: str | None = None
    ) -> JwtKey:
        """An HMAC key; ``kid`` defaults to a value derived from (not revealing) the secret."""
        if algorithm not in HMAC_ALGORITHMS:
            raise ConfigurationException(message=f"{algorithm} is not an HMAC algorithm")
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if not raw:
            raise ConfigurationException(message="the HMAC secret is empty")
        kid = kid or derive_key(raw, f"jwt-kid:{algorithm}", 8).hex()
        return cls(kid=kid, algorithm=algorithm, verification_key=raw, signing_key=raw)

    @classmethod
    def from_private_pem(cls, pem: str | bytes, algorithm: str, kid: str | None = None) -> JwtKey:
        """A signing key from a PEM PKCS8 private key; ``kid`` defaults to a public-key hash."""
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise ConfigurationException(message=f"{algorithm} is not an asymmetric algorithm")
        raw = pem.encode("ascii") if isinstance(pem, str) else bytes(pem)
        key = _check_private(raw, algorithm)
        public = _public_pem(key)
        return cls(
            kid=kid or _kid_for(public),
            algorithm=algorithm,
            verification_key=public,
            signing_key=_private_pem(key),
        )

    @classmethod
    def from_public_pem(cls, pem: str | bytes, algorithm: str, kid: str) -> JwtKey:
        """A verify-only key (e.g. another service's) from a PEM SPKI public key."""
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise ConfigurationException(message=f"{algorithm} is not an asymmetric algorithm")
        raw = pem.encode("ascii") if isinstance(pem, str) else bytes(pem)
        try:
            serialization.load_pem_public_key(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigurationException(message="not a PEM public key") from exc
        return cls(kid=kid, algorithm=algorithm, verification_key=raw)

    @classmethod
    def generate(cls, algorithm: str = "EdDSA", kid: str | None = None) -> JwtKey:
        """A fresh random key for ``algorithm`` (HS*: 64 random bytes)."""
        if algorithm in HMAC_ALGORITHMS:
            import secrets

            return cls.from_secret(secrets.token_bytes(64), algorithm, kid)
        if algorithm == "EdDSA":
            key: Any = ed25519.Ed25519PrivateKey.generate()
        elif algorithm == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ConfigurationException(message=f"unsupported JWT algorithm {algorithm!r}")
        return cls.from_private_pem(_private_pem(key), algorithm, kid)

    @classmethod
    def derive(cls, secret: str | bytes, algorithm: str) -> JwtKey:
        """A key derived deterministically from ``secret`` (same secret, same key and ``kid``)."""
        if algorithm in HMAC_ALGORITHMS:
            return cls.from_secret(secret, algorithm)
        if algorithm == "EdDSA":
            key: Any = ed25519.Ed25519PrivateKey.from_private_bytes(
                derive_key(secret, "jwt-signing:EdDSA", 32)
            )
        elif algorithm == "ES256":
            scalar = int.from_bytes(derive_key(secret, "jwt-signing:ES256", 48), "big")
            key = ec.derive_private_key(scalar % (_P256_N - 1) + 1, ec.SECP256R1())
        else:
            raise ConfigurationException(
                message=f"{algorithm} keys cannot be derived from the secret key; "
                "configure a key ring with JwtKey.from_private_pem"
            )
        return cls.from_private_pem(_private_pem(key), algorithm)

    def public_jwk(self, jwt_impl: ModuleType | None = None) -> dict[str, Any] | None:
        """This key's public JWK (with ``kid``, ``alg``, ``use: sig``); ``None`` for HMAC keys."""
        if self.symmetric:
            return None
        impl = jwt_impl or accel.get("jwt")
        jwk = dict(impl.public_jwk(self.verification_key, self.algorithm, self.kid))
        jwk.setdefault("kid", self.kid)
        jwk.setdefault("alg", self.algorithm)
        jwk.setdefault("use", "sig")
        return jwk


class KeyRing:
    """One signing key plus any number of verification keys, looked up by ``kid``."""

    __slots__ = ("_keys", "_signing", "single", "single_args")

    def __init__(self, signing_key: JwtKey, verification_keys: Iterable[JwtKey] = ()) -> None:
        if not signing_key.can_sign:
            raise ConfigurationException(message="the signing key has no private material")
        self._signing = signing_key
        self._keys: dict[str, JwtKey] = {signing_key.kid: signing_key}
        for key in verification_keys:
            self._keys.setdefault(key.kid, key)
        #: the only key when the ring holds exactly one (decoding skips the header lookup)
        self.single: JwtKey | None = None
        #: ``(verification_key, algorithms)`` of :attr:`single`, ready for the hot path's decode
        self.single_args: tuple[bytes, tuple[str, ...]] | None = None
        self._refresh()

    def _refresh(self) -> None:
        single = self._signing if len(self._keys) == 1 else None
        self.single = single
        self.single_args = None if single is None else (single.verification_key, single.algorithms)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The ring for ``settings`` (see the module docstring).

        With ``settings.jwt_private_keys`` (``CROWN_NEXUS_JWT_PRIVATE_KEYS``: PEM file paths or
        PEM text, for ``jwt_algorithm`` EdDSA, ES256 or RS256) the first key signs and every
        key verifies: rotate by putting the new key first and dropping the old one after the
        longest token lifetime. Without them the key is the secret key (HS*) or derived from it.
        """
        algorithm = settings.jwt_algorithm
        configured = list(getattr(settings, "jwt_private_keys", []) or [])
        if configured:
            if algorithm not in ASYMMETRIC_ALGORITHMS:
                raise ConfigurationException(
                    message="CROWN_NEXUS_JWT_PRIVATE_KEYS needs CROWN_NEXUS_JWT_ALGORITHM "
                    "EdDSA, ES256 or RS256",
                    config_key="jwt_private_keys",
                )
            keys = [JwtKey.from_private_pem(_read_pem(entry), algorithm) for entry in configured]
            return cls(keys[0], keys[1:])
        if algorithm not in HMAC_ALGORITHMS | {"EdDSA", "ES256"}:
            raise ConfigurationException(
                message=f"CROWN_NEXUS_JWT_ALGORITHM={algorithm!r} is not supported; use one of "
                "HS256, HS384, HS512, EdDSA, ES256 (RS256 with CROWN_NEXUS_JWT_PRIVATE_KEYS)",
                config_key="jwt_algorithm",
            )
        return cls(JwtKey.derive(settings.secret_key.get_secret_value(), algorithm))

    @property
    def signing_key(self) -> JwtKey:
        """The key new tokens are signed with."""
        return self._signing

    @property
    def keys(self) -> list[JwtKey]:
        """Every key that verifies tokens (the signing key first)."""
        return list(self._keys.values())

    @property
    def algorithms(self) -> list[str]:
        """The algorithms this ring accepts (each key only ever under its own)."""
        return sorted({k.algorithm for k in self._keys.values()})

    def get(self, kid: str | None) -> JwtKey | None:
        """The key with ``kid``, or ``None``."""
        if not isinstance(kid, str):
            return None
        return self._keys.get(kid)

    def only_key(self) -> JwtKey | None:
        """The single key when the ring holds exactly one (a fast path for decoding)."""
        return self.single

    def add(self, key: JwtKey) -> None:
        """Accept tokens signed by ``key`` (verification only)."""
        self._keys[key.kid] = key
        self._refresh()

    def rotate(self, new_signing_key: JwtKey) -> JwtKey:
        """Sign with ``new_signing_key`` from now on; the old key keeps verifying. Return the old one."""
        if not new_signing_key.can_sign:
            raise ConfigurationException(message="the signing key has no private material")
        old = self._signing
        self._keys[new_signing_key.kid] = new_signing_key
        self._signing = new_signing_key
        self._refresh()
        return old

    def retire(self, kid: str) -> None:
        """Stop accepting tokens signed by ``kid`` (never the current signing key)."""
        if kid == self._signing.kid:
            raise ConfigurationException(message="cannot retire the current signing key")
        self._keys.pop(kid, None)
        self._refresh()

    def jwks(self, jwt_impl: ModuleType | None = None) -> dict[str, list[dict[str, Any]]]:
        """The public keys as a JWK Set (``{"keys": [...]}``); HMAC keys are never included."""
        out = []
        for key in self._keys.values():
            jwk = key.public_jwk(jwt_impl)
            if jwk is not None:
                out.append(jwk)
        return {"keys": out}
