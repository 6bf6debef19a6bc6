"""Security public API per jwt implementation vs PyJWT: token verification and creation.

Groups: ``decode_token-HS256`` / ``decode_token-EdDSA`` (``crown_nexus.core.security
.decode_token`` — signature, exp/nbf/iat, iss, aud, required claims, type, revocation check,
metrics — on each jwt implementation, against PyJWT's ``jwt.decode`` of the same token with the
same checks), ``decode_token-HS256-interleaved`` (the native/PyJWT ratio measured in alternating
rounds, in ``extra_info``: robust to load drift on a shared machine), ``create_token-HS256`` /
``create_token-EdDSA`` (``create_token`` vs building the same claims and ``jwt.encode``),
``create_token_pair`` and ``verify-cheap`` (API key and CSRF verification, which run on every
request that uses them). Timings are CPU time of this process (``time.process_time``): the calls
are single-threaded and do no I/O.
Run: ``pytest benches/bench_security.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import jwt as pyjwt
import pytest

from crown_nexus import accel
from crown_nexus.core import security
from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.settings import Settings

pytestmark = pytest.mark.benchmark(timer=time.process_time)

IMPLS = accel.available("jwt")
KINDS = sorted(IMPLS)
ISSUER, AUDIENCE = "crown-nexus", "crown-nexus-api"
REQUIRE = ["exp", "iat", "sub", "jti", "type"]


def _configure(alg: str, impl: str) -> Any:
    settings = Settings(
        secret_key="bench-secret-key-0123456789-0123456789-0123456789",
        jwt_algorithm=alg,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
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
                    "iss": ISSUER,
                    "aud": AUDIENCE,
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


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (memory blacklist) without an event loop's cost."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("decode_token suspended; the benchmark needs the in-memory blacklist")


def _pyjwt_decoder(service: Any, token: str, alg: str) -> Callable[[], Any]:
    """PyJWT's ``jwt.decode`` of ``token`` with the checks decode_token makes."""
    key = service.key_ring.get(pyjwt.get_unverified_header(token)["kid"])
    verification_key = key.verification_key

    def run() -> Any:
        return pyjwt.decode(
            token,
            verification_key,
            algorithms=[alg],
            issuer=ISSUER,
            audience=AUDIENCE,
            options={"require": REQUIRE},
        )

    return run


def _decode_token_runner(alg: str, impl: str) -> tuple[Callable[[], Any], str]:
    """A no-argument call verifying one fresh token, and the ``sub`` it must return."""
    service = _configure(alg, impl)
    token = security.create_token(
        "user-12345", role="admin", permissions=["user:read", "user:write"]
    )
    if impl == "pyjwt":
        run = _pyjwt_decoder(service, token, alg)
        return (lambda: run()["sub"]), "user-12345"
    decode_token = security.decode_token
    return (lambda: _drive(decode_token(token)).sub), "user-12345"


@pytest.mark.parametrize("alg", ["HS256", "EdDSA"])
@pytest.mark.parametrize("impl", [*KINDS, "pyjwt"])
def test_decode_token(benchmark: Any, alg: str, impl: str) -> None:
    """decode_token per jwt implementation; PyJWT's jwt.decode (same token, same checks) as peer."""
    benchmark.group = f"decode_token-{alg}"
    _info(benchmark, impl)
    try:
        run, sub = _decode_token_runner(alg, impl)
        assert run() == sub
        if impl != "pyjwt":
            revoked = security.create_token("someone-else")
            _drive(security.revoke_token(revoked))
            with pytest.raises(AuthenticationException):
                _drive(security.decode_token(revoked))
            assert run() == sub  # a non-empty blacklist is still consulted on the hot path
        benchmark(run)
    finally:
        security.configure_security(None)


def _cpu_per_call(run: Callable[[], Any], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        run()
    return (time.process_time() - start) / calls


@pytest.mark.skipif("native" not in IMPLS, reason="native jwt extension not built")
def test_decode_token_interleaved_ratio(benchmark: Any) -> None:
    """Native decode_token vs PyJWT in alternating rounds; the median ratio goes to extra_info."""
    benchmark.group = "decode_token-HS256-interleaved"
    _info(benchmark, "native")
    try:
        ours, sub = _decode_token_runner("HS256", "native")
        service = security.get_security_service()
        token = security.create_token("user-12345", role="admin")
        peer = _pyjwt_decoder(service, token, "HS256")
        assert ours() == sub and peer()["sub"] == sub
        ratios = []
        for _ in range(15):
            theirs = _cpu_per_call(peer, 200)
            mine = _cpu_per_call(ours, 200)
            if mine > 0:
                ratios.append(theirs / mine)
        ratios.sort()
        benchmark.extra_info["pyjwt_over_decode_token_median"] = round(ratios[len(ratios) // 2], 2)
        benchmark.extra_info["pyjwt_over_decode_token_best"] = round(ratios[-1], 2)
        benchmark(ours)
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
