"""Security public API: token creation per jwt implementation vs PyJWT, API key and CSRF checks.

Groups: ``create_token-HS256`` / ``create_token-EdDSA`` (``crown_nexus.core.security
.create_token`` on each jwt implementation vs building the same claims and ``jwt.encode``),
``create_token_pair`` and ``verify-cheap`` (API key and CSRF verification, which run on every
request that uses them). ``decode_token`` is benchmarked in ``bench_jwt.py``.
Run: ``pytest benches/bench_security.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt as pyjwt
import pytest

from crown_nexus import accel
from crown_nexus.core import security
from crown_nexus.settings import Settings

IMPLS = accel.available("jwt")
KINDS = sorted(IMPLS)


def _configure(alg: str, impl: str) -> Any:
    settings = Settings(
        secret_key="bench-secret-key-0123456789-0123456789-0123456789",
        jwt_algorithm=alg,
        jwt_issuer="crown-nexus",
        jwt_audience="crown-nexus-api",
    )
    return security.configure_security(
        settings, jwt_impl=IMPLS["pure" if impl == "pyjwt" else impl]
    )


def _info(benchmark: Any, impl: str) -> None:
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["impl"] = impl


@pytest.mark.parametrize("alg", ["HS256", "EdDSA"])
@pytest.mark.parametrize("impl", [*KINDS, "pyjwt"])
def test_create_token(benchmark: Any, alg: str, impl: str) -> None:
    """Create one signed access token with role and permissions."""
    benchmark.group = f"create_token-{alg}"
    _info(benchmark, impl)
    service = _configure(alg, impl)
    try:
        if impl == "pyjwt":
            key = service.key_ring.signing_key

            def run() -> str:
                now = int(time.time())
                claims = {
                    "sub": "user-12345",
                    "exp": now + 1800,
                    "iat": now,
                    "nbf": now,
                    "jti": uuid.uuid4().hex,
                    "type": "access",
                    "role": "admin",
                    "permissions": ["user:read", "user:write"],
                    "iss": "crown-nexus",
                    "aud": "crown-nexus-api",
                }
                return pyjwt.encode(
                    claims, key.signing_key, algorithm=alg, headers={"kid": key.kid}
                )

        else:

            def run() -> str:
                return security.create_token(
                    "user-12345", role="admin", permissions=["user:read", "user:write"]
                )

        verifier = TokenCheck(service)
        assert verifier(run()) == "user-12345"
        benchmark(run)
    finally:
        security.configure_security(None)


class TokenCheck:
    """Verify a token through the public API without an event loop (memory blacklist)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def __call__(self, token: str) -> str:
        coro = self.service.decode_token(token)
        try:
            coro.send(None)
        except StopIteration as done:
            return str(done.value.sub)
        raise RuntimeError("decode_token suspended")


@pytest.mark.parametrize("impl", KINDS)
def test_create_token_pair(benchmark: Any, impl: str) -> None:
    """Create an access + refresh pair (HS256), as login and refresh do."""
    benchmark.group = "create_token_pair"
    _info(benchmark, impl)
    _configure("HS256", impl)
    try:
        pair = security.create_token_pair(user_id="u", role="user", permissions=["a:b"])
        assert pair.token_type == "bearer"
        benchmark(security.create_token_pair, user_id="u", role="user", permissions=["a:b"])
    finally:
        security.configure_security(None)


def test_verify_api_key(benchmark: Any) -> None:
    """Constant-time API key verification."""
    benchmark.group = "verify-cheap"
    _info(benchmark, "pure")
    data = security.generate_api_key("u", "bench")
    assert security.verify_api_key(data.api_key, data.hashed_secret)
    benchmark(security.verify_api_key, data.api_key, data.hashed_secret)


def test_validate_csrf_token(benchmark: Any) -> None:
    """CSRF token validation (HMAC, HKDF-derived key)."""
    benchmark.group = "verify-cheap"
    _info(benchmark, "pure")
    token = security.generate_csrf_token("session")
    assert security.validate_csrf_token(token, "session")
    benchmark(security.validate_csrf_token, token, "session")
