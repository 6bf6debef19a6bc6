"""JWT (JWS compact) signing and verification: the pure reference implementation.

This module is the typing and behaviour truth for the ``jwt`` hot path; its compiled twin
``crown_nexus_native.jwt`` exposes the same names and follows exactly the rules written here, so
the same input gives the same result or the same :class:`InvalidTokenError` reason on both.
Signing and signature checks use PyJWT's algorithm objects (``jwt.algorithms``); the token
parsing and the claim rules are ours, applied in one fixed order.

Algorithms: ``HS256``, ``HS384``, ``HS512`` (key: the raw secret, ``bytes`` or ``str`` encoded as
UTF-8), ``EdDSA`` (Ed25519), ``ES256`` (P-256, raw ``r||s`` signatures) and ``RS256`` (PKCS#1 v1.5),
keys as PEM: PKCS#8 private keys for :func:`encode`, SPKI public keys for :func:`decode`.
``none`` is never accepted. The native twin verifies and signs HS*, EdDSA and ES256 itself and
hands RS256 (and any key in a PEM form it cannot read) to this module.

Token text (both twins)
    Three segments separated by ``.``; each segment is unpadded base64url: only
    ``A-Z a-z 0-9 - _``, length ``% 4 != 1`` and unused trailing bits zero (canonical). Header and
    claims are UTF-8 JSON parsed strictly (RFC 8259: no NaN/Infinity, no BOM, no trailing data,
    no lone surrogates, integers beyond 64 bits become floats, ``-0`` is the integer 0, a float
    that overflows is an error), nested at most :data:`MAX_JSON_DEPTH` containers deep, and both
    must be JSON objects. Duplicate keys: the last value wins.

Check order of :func:`decode` (the first failing check gives the reason)
    1. ``token`` not a ``str`` -> ``malformed``
    2. ``len(token) > max_length`` (code points) -> ``too_large``
    3. not exactly three segments; a segment not canonical base64url; header not a JSON object;
       header ``alg`` missing or not a string; header ``kid`` present and not a string
       -> ``malformed``
    4. ``alg`` is ``none``, not in ``algorithms``, not supported, or does not fit the key (an HMAC
       algorithm with an empty key or a key containing ``-----BEGIN``, ``ssh-`` or
       ``ecdsa-sha2-`` — a PEM or SSH key used as a secret is algorithm confusion —, an
       asymmetric algorithm with a key that is not a PEM SPKI public key of its type: Ed25519,
       P-256, RSA) -> ``algorithm_not_allowed``
    5. signature wrong (HMAC compared in constant time) -> ``bad_signature``
    6. claims not a JSON object -> ``malformed``
    7. a name in ``require`` absent or ``null`` -> ``missing_claim``
    8. ``exp`` present: not a number (bool is not a number) -> ``invalid_claim``;
       ``exp <= now - leeway`` -> ``expired``
    9. ``nbf`` present: not a number -> ``invalid_claim``; ``nbf > now + leeway`` -> ``not_yet_valid``
    10. ``iat`` present: not a number -> ``invalid_claim``; ``iat > now + leeway`` -> ``issued_in_future``
    11. ``issuer`` given: ``iss`` absent -> ``missing_claim``; ``iss != issuer`` -> ``wrong_issuer``
    12. ``audience`` None: ``aud`` present -> ``wrong_audience``. ``audience`` given: ``aud`` absent
        -> ``missing_claim``; ``aud`` neither a string nor a list of strings -> ``invalid_claim``;
        no value in common with ``audience`` -> ``wrong_audience``
    13. ``sub`` or then ``jti`` present and not a string -> ``invalid_claim``

``now`` and ``leeway`` are converted with ``float()`` and the bounds ``now - leeway`` /
``now + leeway`` are computed in floating point; a claim is compared with the bound exactly
(an integer claim is not rounded). Arguments of the wrong type (programmer errors) raise
``TypeError`` / ``ValueError``, never :class:`InvalidTokenError`.

Encoding (:func:`encode`)
    Header ``{"alg": <algorithm>, "typ": "JWT", **headers}`` (``alg`` cannot be overridden),
    claims as given with ``datetime`` values of ``exp``/``iat``/``nbf`` turned into integer UTC
    timestamps; both serialized compactly as orjson does (UTF-8, no spaces; NaN/Infinity become
    ``null``). A value orjson cannot serialize raises ``TypeError``; an unsupported algorithm or a
    key that does not fit it raises ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_pem_public_key,
)
from jwt.algorithms import (
    Algorithm,
    ECAlgorithm,
    HMACAlgorithm,
    OKPAlgorithm,
    RSAAlgorithm,
)

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_REQUIRE",
    "IMPLEMENTATION",
    "MAX_JSON_DEPTH",
    "REASONS",
    "SUPPORTED_ALGORITHMS",
    "InvalidTokenError",
    "decode",
    "encode",
    "get_unverified_header",
    "public_jwk",
]

IMPLEMENTATION: Final = "pure"

#: Every algorithm :func:`encode` and :func:`decode` know. ``none`` is never one of them.
SUPPORTED_ALGORITHMS: Final[frozenset[str]] = frozenset(
    {"HS256", "HS384", "HS512", "EdDSA", "ES256", "RS256"}
)

#: Deepest nesting of JSON containers accepted in a header or claims set (the object itself is 1).
MAX_JSON_DEPTH: Final = 64

#: Default ``max_length`` of :func:`decode`, in code points.
DEFAULT_MAX_LENGTH: Final = 8192

#: Default ``require`` of :func:`decode`.
DEFAULT_REQUIRE: Final[tuple[str, ...]] = ("exp", "iat", "sub")

#: The fixed vocabulary of :attr:`InvalidTokenError.reason`, with the message shown to callers.
REASONS: Final[dict[str, str]] = {
    "too_large": "Token is too large",
    "malformed": "Token is malformed",
    "algorithm_not_allowed": "Token algorithm is not allowed",
    "bad_signature": "Token signature is invalid",
    "expired": "Token has expired",
    "not_yet_valid": "Token is not yet valid",
    "issued_in_future": "Token was issued in the future",
    "wrong_issuer": "Token issuer is invalid",
    "wrong_audience": "Token audience is invalid",
    "missing_claim": "Token is missing a required claim",
    "invalid_claim": "Token has an invalid claim",
}


class InvalidTokenError(Exception):
    """A token was refused; :attr:`reason` says why (one of :data:`REASONS`).

    The message is a fixed, generic text per reason: it never contains the token, the key or
    parsed values. Both twins raise this very class.
    """

    reason: str

    def __init__(self, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown InvalidTokenError reason {reason!r}")
        super().__init__(REASONS[reason])
        self.reason = reason

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (type(self), (self.reason,))


# --------------------------------------------------------------------------- token text

_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")
_B64URL_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_INDEX: Final[dict[str, int]] = {c: i for i, c in enumerate(_B64URL_ALPHABET)}


def _b64url_decode(segment: str) -> bytes:
    """Decode one canonical unpadded base64url segment; ``malformed`` otherwise."""
    rem = len(segment) % 4
    if rem == 1 or _B64URL_RE.fullmatch(segment) is None:
        raise InvalidTokenError("malformed")
    if rem:
        # unused trailing bits must be zero (one canonical text per byte string)
        last = _B64URL_INDEX[segment[-1]]
        if last & (0x0F if rem == 2 else 0x03):
            raise InvalidTokenError("malformed")
        segment += "=" * (4 - rem)
    try:
        return base64.urlsafe_b64decode(segment)
    except (binascii.Error, ValueError):  # pragma: no cover - excluded by the checks above
        raise InvalidTokenError("malformed") from None


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests more than ``limit`` containers deep (``value`` itself counts)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse ``raw`` as a strict JSON object nested at most :data:`MAX_JSON_DEPTH` deep."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidTokenError("malformed") from None
    if not isinstance(value, dict):
        raise InvalidTokenError("malformed")
    # cheap filter: only a document with that many brackets can be too deep
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _depth_exceeds(value, MAX_JSON_DEPTH):
        raise InvalidTokenError("malformed")
    return value


def _split(token: object, max_length: int) -> tuple[dict[str, Any], str, bytes, bytes]:
    """Steps 1-3: (header, signing input, payload bytes, signature bytes)."""
    if not isinstance(token, str):
        raise InvalidTokenError("malformed")
    if len(token) > max_length:
        raise InvalidTokenError("too_large")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidTokenError("malformed")
    header_seg, payload_seg, sig_seg = parts
    header = _parse_json_object(_b64url_decode(header_seg))
    payload = _b64url_decode(payload_seg)
    signature = _b64url_decode(sig_seg)
    if not isinstance(header.get("alg"), str):
        raise InvalidTokenError("malformed")
    if "kid" in header and not isinstance(header["kid"], str):
        raise InvalidTokenError("malformed")
    return header, f"{header_seg}.{payload_seg}", payload, signature


def get_unverified_header(
    token: str, max_length: int | None = DEFAULT_MAX_LENGTH
) -> dict[str, Any]:
    """Return the JOSE header of ``token`` WITHOUT checking its signature (e.g. to read ``kid``).

    Applies steps 1-3 of the check order: raises :class:`InvalidTokenError` ``too_large`` or
    ``malformed``; the returned dict always has a string ``alg`` (and a string ``kid`` if any).
    """
    return _split(token, _check_max_length(max_length))[0]


# --------------------------------------------------------------------------- keys

_HMAC_HASHES: Final[dict[str, Any]] = {
    "HS256": HMACAlgorithm.SHA256,
    "HS384": HMACAlgorithm.SHA384,
    "HS512": HMACAlgorithm.SHA512,
}
_ALGORITHMS: Final[dict[str, Algorithm]] = {
    "HS256": HMACAlgorithm(HMACAlgorithm.SHA256),
    "HS384": HMACAlgorithm(HMACAlgorithm.SHA384),
    "HS512": HMACAlgorithm(HMACAlgorithm.SHA512),
    "EdDSA": OKPAlgorithm(),
    "ES256": ECAlgorithm(ECAlgorithm.SHA256),
    "RS256": RSAAlgorithm(RSAAlgorithm.SHA256),
}
#: Substrings that mark a key as asymmetric / PEM / SSH: never usable as an HMAC secret.
_NOT_A_SECRET: Final[tuple[bytes, ...]] = (b"-----BEGIN", b"ssh-", b"ecdsa-sha2-")


def _key_bytes(key: object) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise TypeError(f"key must be bytes or str, not {type(key).__name__}")


def _hmac_secret_fits(secret: bytes) -> bool:
    """An HMAC secret must be non-empty and must not look like a PEM or SSH key."""
    return bool(secret) and not any(marker in secret for marker in _NOT_A_SECRET)


def _public_key_fits(algorithm: str, key: object) -> bool:
    if algorithm == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey)
    if algorithm == "ES256":
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    return isinstance(key, rsa.RSAPublicKey)


def _private_key_fits(algorithm: str, key: object) -> bool:
    if algorithm == "EdDSA":
        return isinstance(key, ed25519.Ed25519PrivateKey)
    if algorithm == "ES256":
        return isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    return isinstance(key, rsa.RSAPrivateKey)


@lru_cache(maxsize=64)
def _load_public(algorithm: str, pem: bytes) -> Any | None:
    """The SPKI public key in ``pem`` if it is one of ``algorithm``'s type, else None."""
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if _public_key_fits(algorithm, key) else None


@lru_cache(maxsize=64)
def _load_private(algorithm: str, pem: bytes) -> Any | None:
    """The unencrypted private key in ``pem`` if it is one of ``algorithm``'s type, else None."""
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if _private_key_fits(algorithm, key) else None


# --------------------------------------------------------------------------- arguments


def _check_max_length(max_length: object) -> int:
    if max_length is None:
        return DEFAULT_MAX_LENGTH
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise TypeError("max_length must be an int")
    return max_length


def _as_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite")
    return result


def _str_tuple(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise TypeError(f"{name} must be a sequence of str")
    items = tuple(value)
    if not all(isinstance(item, str) for item in items):
        raise TypeError(f"{name} must be a sequence of str")
    return items


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --------------------------------------------------------------------------- decode


def decode(
    token: str,
    key: bytes | str,
    *,
    algorithms: Sequence[str],
    issuer: str | None = None,
    audience: str | Sequence[str] | None = None,
    leeway: float | None = 0.0,
    now: float | None = None,
    require: Sequence[str] | None = DEFAULT_REQUIRE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
) -> dict[str, Any]:
    """Verify ``token`` and return its claims; raise :class:`InvalidTokenError` if refused.

    ``key`` is the HMAC secret for HS*, a PEM SPKI public key for EdDSA/ES256/RS256. Only the
    algorithms listed in ``algorithms`` (and supported) are accepted. ``now`` defaults to
    ``time.time()``; ``leeway``, ``require`` and ``max_length`` given as ``None`` mean their
    defaults. The checks and their order are those of the module docstring.
    """
    allowed = _str_tuple("algorithms", algorithms)
    required = DEFAULT_REQUIRE if require is None else _str_tuple("require", require)
    if issuer is not None and not isinstance(issuer, str):
        raise TypeError("issuer must be a str or None")
    audiences: tuple[str, ...] | None
    if audience is None:
        audiences = None
    elif isinstance(audience, str):
        audiences = (audience,)
    else:
        audiences = _str_tuple("audience", audience)
    leeway_f = 0.0 if leeway is None else _as_float("leeway", leeway)
    now_f = time.time() if now is None else _as_float("now", now)
    key_b = _key_bytes(key)
    limit = _check_max_length(max_length)

    header, signing_input, payload, signature = _split(token, limit)

    # 4. algorithm allowed and fitting the key
    alg: str = header["alg"]
    if alg not in allowed or alg not in SUPPORTED_ALGORITHMS:
        raise InvalidTokenError("algorithm_not_allowed")
    prepared: Any
    if alg in _HMAC_HASHES:
        if not _hmac_secret_fits(key_b):
            raise InvalidTokenError("algorithm_not_allowed")
        prepared = key_b
    else:
        prepared = _load_public(alg, key_b)
        if prepared is None:
            raise InvalidTokenError("algorithm_not_allowed")

    # 5. signature (PyJWT's HMAC verify uses hmac.compare_digest)
    if not _ALGORITHMS[alg].verify(signing_input.encode("ascii"), prepared, signature):
        raise InvalidTokenError("bad_signature")

    # 6-13. claims
    claims = _parse_json_object(payload)
    return _check_claims(claims, required, now_f, leeway_f, issuer, audiences)


def _check_claims(
    claims: dict[str, Any],
    required: tuple[str, ...],
    now: float,
    leeway: float,
    issuer: str | None,
    audiences: tuple[str, ...] | None,
) -> dict[str, Any]:
    for name in required:
        if claims.get(name) is None:
            raise InvalidTokenError("missing_claim")
    if "exp" in claims:
        exp = claims["exp"]
        if not _is_number(exp):
            raise InvalidTokenError("invalid_claim")
        if exp <= now - leeway:
            raise InvalidTokenError("expired")
    if "nbf" in claims:
        nbf = claims["nbf"]
        if not _is_number(nbf):
            raise InvalidTokenError("invalid_claim")
        if nbf > now + leeway:
            raise InvalidTokenError("not_yet_valid")
    if "iat" in claims:
        iat = claims["iat"]
        if not _is_number(iat):
            raise InvalidTokenError("invalid_claim")
        if iat > now + leeway:
            raise InvalidTokenError("issued_in_future")
    if issuer is not None:
        if "iss" not in claims:
            raise InvalidTokenError("missing_claim")
        if claims["iss"] != issuer:
            raise InvalidTokenError("wrong_issuer")
    if audiences is None:
        if "aud" in claims:
            raise InvalidTokenError("wrong_audience")
    else:
        if "aud" not in claims:
            raise InvalidTokenError("missing_claim")
        aud = claims["aud"]
        if isinstance(aud, str):
            aud = [aud]
        elif not isinstance(aud, list) or not all(isinstance(a, str) for a in aud):
            raise InvalidTokenError("invalid_claim")
        if not any(a in audiences for a in aud):
            raise InvalidTokenError("wrong_audience")
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise InvalidTokenError("invalid_claim")
    return claims


# --------------------------------------------------------------------------- encode


def _timestamp(value: Any) -> Any:
    if isinstance(value, datetime):
        return calendar.timegm(value.utctimetuple())
    return value


def encode(
    claims: Mapping[str, Any],
    key: bytes | str,
    algorithm: str,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """Sign ``claims`` with ``key`` and return the compact JWS token.

    ``key`` is the HMAC secret for HS*, a PEM PKCS#8 private key for EdDSA/ES256/RS256. Raises
    ``ValueError`` for an unsupported algorithm or a key that does not fit it, ``TypeError`` for
    claims or headers that cannot be serialized. ``exp``/``iat``/``nbf`` given as ``datetime``
    become integer UTC timestamps.
    """
    if not isinstance(algorithm, str) or algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    if not isinstance(claims, Mapping):
        raise TypeError("claims must be a mapping")
    if headers is not None and not isinstance(headers, Mapping):
        raise TypeError("headers must be a mapping or None")
    key_b = _key_bytes(key)
    if algorithm in _HMAC_HASHES:
        if not _hmac_secret_fits(key_b):
            raise ValueError("key does not fit the algorithm (empty, or an asymmetric key)")
        prepared: Any = key_b
    else:
        prepared = _load_private(algorithm, key_b)
        if prepared is None:
            raise ValueError("key does not fit the algorithm")

    header: dict[str, Any] = {"alg": algorithm, "typ": "JWT"}
    if headers:
        header.update(headers)
        header["alg"] = algorithm
    payload = dict(claims)
    for name in ("exp", "iat", "nbf"):
        if name in payload:
            payload[name] = _timestamp(payload[name])
    signing_input = (
        f"{_b64url_encode(orjson.dumps(header))}.{_b64url_encode(orjson.dumps(payload))}"
    )
    signature = _ALGORITHMS[algorithm].sign(signing_input.encode("ascii"), prepared)
    return f"{signing_input}.{_b64url_encode(signature)}"


# --------------------------------------------------------------------------- JWKS


def public_jwk(key: bytes | str, algorithm: str, kid: str) -> dict[str, Any]:
    """Return the public JWK (for a JWKS document) of a PEM private or public key.

    The dict has the key's public parameters plus ``kid``, ``alg`` and ``use: "sig"``; it never
    contains private parameters. HMAC algorithms have no public key: ``ValueError``.
    """
    if algorithm not in SUPPORTED_ALGORITHMS or algorithm in _HMAC_HASHES:
        raise ValueError(f"no public JWK for algorithm {algorithm!r}")
    if not isinstance(kid, str):
        raise TypeError("kid must be a str")
    key_b = _key_bytes(key)
    public = _load_public(algorithm, key_b)
    if public is None:
        private = _load_private(algorithm, key_b)
        if private is None:
            raise ValueError("key does not fit the algorithm")
        public = private.public_key()
    jwk = dict(_ALGORITHMS[algorithm].to_jwk(public, as_dict=True))
    for private_param in ("d", "p", "q", "dp", "dq", "qi", "k"):
        jwk.pop(private_param, None)
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    return jwk
