"""The memory backend gives the same results and the same errors on every rate_window
implementation (hypothesis), and importing rate limiting never imports redis-py."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus import accel
from crown_nexus.core.rate_limiting import (
    MemoryRateLimitBackend,
    RateLimitAlgorithm,
    RateLimitingService,
    RateLimitRule,
)
from crown_nexus.settings import Settings
from tests.core.rate_limiting.conftest import FakeClock

IMPLS = accel.available("rate_window")


def _outcome(backend: MemoryRateLimitBackend, key, rule, cost):  # type: ignore[no-untyped-def]
    try:
        r = backend.hit_now(key, rule, cost)
    except Exception as exc:  # compare the type and message of errors too
        return ("error", type(exc).__name__, str(exc))
    return ("ok", r.allowed, r.count, r.remaining, round(r.reset_after, 6), round(r.retry_after, 6))


@pytest.mark.skipif(len(IMPLS) < 2, reason="only the pure rate_window is built here")
@settings(max_examples=120, deadline=None)
@given(
    algo=st.sampled_from(list(RateLimitAlgorithm)),
    limit=st.integers(1, 6),
    window=st.integers(1, 30),
    burst=st.floats(1.0, 3.0),
    steps=st.lists(
        st.tuples(
            st.floats(0, 20, allow_nan=False),
            st.one_of(st.integers(-1, 8), st.sampled_from([True, 2.5, "1"])),
            st.one_of(st.sampled_from(["a", "b", ""]), st.sampled_from([None, 3])),
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_implementations_agree_including_bad_input(algo, limit, window, burst, steps) -> None:  # type: ignore[no-untyped-def]
    """Every implementation returns the same results and raises the same errors."""
    rule = RateLimitRule(
        requests_per_window=limit, window_seconds=window, algorithm=algo,
        burst_multiplier=burst if algo is RateLimitAlgorithm.TOKEN_BUCKET else 1.0,
    )
    clocks = {kind: FakeClock() for kind in IMPLS}
    backends = {kind: MemoryRateLimitBackend(clock=clocks[kind], impl=mod) for kind, mod in IMPLS.items()}
    for dt, cost, key in steps:
        outcomes = {}
        for kind, be in backends.items():
            clocks[kind].advance(dt)
            outcomes[kind] = _outcome(be, key, rule, cost)
        assert outcomes["pure"] == outcomes[next(k for k in IMPLS if k != "pure")]


async def test_service_rejects_non_string_keys_on_every_implementation() -> None:
    """A bad key is a TypeError whatever the implementation."""
    for mod in IMPLS.values():
        svc = RateLimitingService(MemoryRateLimitBackend(impl=mod), settings=Settings())
        with pytest.raises(TypeError):
            await svc.check(None, RateLimitRule(requests_per_window=1, window_seconds=1))  # type: ignore[arg-type]


def test_importing_rate_limiting_does_not_import_redis() -> None:
    """redis-py is imported only by the Redis backend module (an optional dependency)."""
    code = (
        "import sys, crown_nexus, crown_nexus.core.rate_limiting, "
        "crown_nexus.middleware.rate_limiting; "
        "assert 'redis' not in sys.modules, 'redis imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_initialize_logs_and_never_raises_when_redis_is_down() -> None:
    """Start-up with an unreachable Redis does not fail; checks then fail open."""
    from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend
    from tests._servers import free_port

    backend = RedisRateLimitBackend(f"redis://127.0.0.1:{free_port()}/0", timeout=0.3)
    svc = RateLimitingService(backend, settings=Settings())
    await svc.initialize()
    result = await svc.check("k", RateLimitRule(requests_per_window=1, window_seconds=60))
    assert result.allowed and svc.degraded
    await svc.close()
