"""JWT hot path: native (Rust) vs pure (PyJWT-backed) vs PyJWT itself, side by side per group.

Groups: ``jwt-decode-HS256``, ``jwt-decode-EdDSA`` (verify + claim checks), ``jwt-encode``, and
``decode_token-HS256`` / ``decode_token-EdDSA`` (the public API ``crown_nexus.core.security
.decode_token`` on each implementation, against PyJWT's ``jwt.decode`` with the same checks).
Every benchmark first checks that its implementation gives the right answer. Timings are CPU
time of this process (``time.process_time``): the calls are single-threaded and do no I/O, and
CPU time keeps the ratios honest on a machine shared with other jobs.
Run: ``pytest benches/bench_jwt.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from crown_nexus import accel

pytestmark = pytest.mark.benchmark(timer=time.process_time)

IMPLS = accel.available("jwt")
KINDS = sorted(IMPLS)
SECRET = b"bench-secret-0123456789-0123456789-0123456789-0123456789-0123456"
_ED = ed25519.Ed25519PrivateKey.generate()
ED_PRIV = _ED.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
ED_PUB = _ED.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
KEYS = {"HS256": (SECRET, SECRET), "EdDSA": (ED_PRIV, ED_PUB)}
NOW = int(time.time())
CLAIMS: dict[str, Any] = {
    "sub": "user-12345",
    "iat": NOW,
    "nbf": NOW,
    "exp": NOW + 3600,
    "jti": "6f1c3c1e-8a4e-4d7e-9a57-1f0e4f3b2a10",
    "type": "access",
    "role": "admin",
    "permissions": ["user:read", "user:write", "product:read", "order:create"],
    "iss": "crown-nexus",
    "aud": "crown-nexus-api",
}


def _info(benchmark: Any, impl: str) -> None:
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["impl"] = impl


@pytest.mark.parametrize("alg", ["HS256", "EdDSA"])
@pytest.mark.parametrize("impl", [*KINDS, "pyjwt"])
def test_decode(benchmark: Any, alg: str, impl: str) -> None:
    """Verify + decode one token (signature, exp/nbf/iat, iss, aud)."""
    benchmark.group = f"jwt-decode-{alg}"
    _info(benchmark, impl)
    priv, pub = KEYS[alg]
    token = pyjwt.encode(CLAIMS, priv, algorithm=alg, headers={"kid": "k1"})
    if impl == "pyjwt":

        def run() -> dict[str, Any]:
            return pyjwt.decode(
                token,
                pub,
                algorithms=[alg],
                issuer="crown-nexus",
                audience="crown-nexus-api",
                options={"require": ["exp", "iat", "sub"]},
            )

    else:
        decode = IMPLS[impl].decode

        def run() -> dict[str, Any]:
            return decode(
                token, pub, algorithms=[alg], issuer="crown-nexus", audience="crown-nexus-api"
            )

    assert run() == CLAIMS
    benchmark(run)


@pytest.mark.parametrize("alg", ["HS256", "EdDSA"])
@pytest.mark.parametrize("impl", [*KINDS, "pyjwt"])
def test_encode(benchmark: Any, alg: str, impl: str) -> None:
    """Sign one token."""
    benchmark.group = "jwt-encode"
    _info(benchmark, impl)
    priv, pub = KEYS[alg]
    if impl == "pyjwt":

        def run() -> str:
            return pyjwt.encode(CLAIMS, priv, algorithm=alg, headers={"kid": "k1"})

    else:
        encode = IMPLS[impl].encode

        def run() -> str:
            return encode(CLAIMS, priv, alg, {"kid": "k1"})

    assert pyjwt.decode(run(), pub, algorithms=[alg], audience="crown-nexus-api") == CLAIMS
    benchmark(run)


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (memory blacklist) without an event loop's cost."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("decode_token suspended; benchmark needs the in-memory blacklist")


@pytest.mark.parametrize("alg", ["HS256", "EdDSA"])
@pytest.mark.parametrize("impl", [*KINDS, "pyjwt"])
def test_decode_token_public_api(benchmark: Any, alg: str, impl: str) -> None:
    """crown_nexus.core.security.decode_token per implementation; PyJWT jwt.decode as the peer."""
    security = pytest.importorskip("crown_nexus.core.security")
    from crown_nexus.settings import Settings

    benchmark.group = f"decode_token-{alg}"
    _info(benchmark, impl)
    settings = Settings(
        secret_key="bench-secret-key-0123456789-0123456789-0123456789",
        jwt_algorithm=alg,
        jwt_issuer="crown-nexus",
        jwt_audience="crown-nexus-api",
    )
    security.configure_security(settings, jwt_impl=IMPLS["pure" if impl == "pyjwt" else impl])
    try:
        token = security.create_token(
            subject="user-12345", role="admin", permissions=["user:read", "user:write"]
        )
        if impl == "pyjwt":
            key = security.get_security_service().key_ring.get(
                pyjwt.get_unverified_header(token)["kid"]
            )
            assert key is not None
            verification_key = key.verification_key

            def run() -> Any:
                return pyjwt.decode(
                    token,
                    verification_key,
                    algorithms=[alg],
                    issuer="crown-nexus",
                    audience="crown-nexus-api",
                    options={"require": ["exp", "iat", "sub", "jti"]},
                )

            assert run()["sub"] == "user-12345"
        else:
            decode_token = security.decode_token

            def run() -> Any:
                return _drive(decode_token(token))

            assert run().sub == "user-12345"
        benchmark(run)
    finally:
        security.configure_security(None)
