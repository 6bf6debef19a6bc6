"""Fixtures: one backend suite runs on memory (every rate_window implementation) and real Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from crown_nexus import accel
from crown_nexus.core.rate_limiting import MemoryRateLimitBackend, RateLimitBackend
from tests.conftest import implementations_of


class FakeClock:
    """A clock tests move by hand (seconds)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A hand-driven clock starting at t=1000 s."""
    return FakeClock()


@pytest.fixture(params=implementations_of("rate_window"))
def window_impl(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Each available rate_window implementation module (pure, cython)."""
    return accel.available("rate_window")[request.param]


BACKENDS = [f"memory-{kind}" for kind in implementations_of("rate_window")] + ["redis"]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[RateLimitBackend]:
    """Every backend: memory on each rate_window implementation, and Redis on a real server."""
    if request.param == "redis":
        from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend

        url = request.getfixturevalue("redis_url")
        prefix = f"test:{time.monotonic_ns()}:"
        be = RedisRateLimitBackend(url, prefix=prefix, timeout=5.0)
        try:
            yield be
        finally:
            keys = [k async for k in be.client.scan_iter(match=prefix + "*")]
            if keys:
                await be.client.delete(*keys)
            await be.close()
        return
    kind = request.param.split("-", 1)[1]
    yield MemoryRateLimitBackend(clock=time.time, impl=accel.available("rate_window")[kind])


async def wait_away_from_boundary(window: int, margin: float = 3.0, redis_client=None) -> None:  # type: ignore[no-untyped-def]
    """Sleep until at least ``margin`` s remain in the current fixed window of ``window`` s.

    Uses the Redis server's clock when ``redis_client`` is given (its scripts do), else wall time.
    """
    import asyncio

    if redis_client is not None:
        sec, usec = await redis_client.time()
        now = sec + usec / 1e6
    else:
        now = time.time()
    left = window - (now % window)
    if left < margin:
        await asyncio.sleep(left + 0.05)
