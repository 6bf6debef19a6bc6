"""Memory backend with an injected clock: window boundaries, retry times, idle-key expiry."""

from __future__ import annotations

import pytest

from crown_nexus.core.rate_limiting import (
    MemoryRateLimitBackend,
    RateLimitAlgorithm,
    RateLimitRule,
)
from tests.core.rate_limiting.conftest import FakeClock


def make(window_impl, clock: FakeClock, **kw) -> MemoryRateLimitBackend:  # type: ignore[no-untyped-def]
    return MemoryRateLimitBackend(clock=clock, impl=window_impl, **kw)


async def test_sliding_window_weights_previous_bucket(window_impl, clock: FakeClock) -> None:
    """10/10 s counter: full bucket, then half-way into the next one 5 more fit, then none."""
    clock.now = 1000.0  # a bucket boundary (1000 / 10)
    be = make(window_impl, clock)
    rule = RateLimitRule(requests_per_window=10, window_seconds=10)
    assert all([(await be.hit("k", rule)).allowed for _ in range(10)])
    assert not (await be.hit("k", rule)).allowed
    clock.advance(15.0)  # 5 s into the next bucket: the previous one weighs 10 * 0.5 = 5
    admitted = [(await be.hit("k", rule)).allowed for _ in range(6)]
    assert admitted == [True] * 5 + [False]
    clock.advance(15.0)  # two buckets later: nothing counted
    assert (await be.hit("k", rule)).count == 1


async def test_sliding_window_retry_after_is_exact(window_impl, clock: FakeClock) -> None:
    """Waiting retry_after admits the next hit; waiting 1 us less does not."""
    clock.now = 1003.0
    be = make(window_impl, clock)
    rule = RateLimitRule(requests_per_window=4, window_seconds=10)
    for _ in range(4):
        await be.hit("k", rule)
    refused = await be.hit("k", rule)
    assert not refused.allowed
    clock.advance(refused.retry_after - 1e-6)
    assert not (await be.hit("k", rule)).allowed
    clock.advance(1e-6)
    assert (await be.hit("k", rule)).allowed


async def test_sliding_log_is_exact_at_the_boundary(window_impl, clock: FakeClock) -> None:
    """A stamp stops counting exactly window seconds after it was made."""
    be = make(window_impl, clock)
    rule = RateLimitRule(
        requests_per_window=2, window_seconds=10, algorithm=RateLimitAlgorithm.SLIDING_LOG
    )
    assert (await be.hit("k", rule)).allowed  # t=1000
    clock.advance(4.0)
    assert (await be.hit("k", rule)).allowed  # t=1004
    clock.advance(5.999999)
    refused = await be.hit("k", rule)  # t=1009.999999
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(1e-6, abs=1e-9)
    assert refused.retry_after_seconds == 1
    clock.advance(1e-6)  # t=1010: the first stamp has expired
    assert (await be.hit("k", rule)).allowed


async def test_token_bucket_refills_one_per_interval(window_impl, clock: FakeClock) -> None:
    """6/60 s bucket: empty after 6, one more after 10 s, two more after 20 s."""
    be = make(window_impl, clock)
    rule = RateLimitRule(
        requests_per_window=6, window_seconds=60, algorithm=RateLimitAlgorithm.TOKEN_BUCKET
    )
    assert all([(await be.hit("k", rule)).allowed for _ in range(6)])
    refused = await be.hit("k", rule)
    assert not refused.allowed and refused.retry_after == pytest.approx(10.0)
    clock.advance(10.0)
    assert (await be.hit("k", rule)).allowed
    assert not (await be.hit("k", rule)).allowed
    clock.advance(20.0)
    assert [(await be.hit("k", rule)).allowed for _ in range(3)] == [True, True, False]


async def test_idle_keys_are_swept_and_memory_bounded(window_impl, clock: FakeClock) -> None:
    """sweep() drops idle keys; max_keys bounds how many keys are tracked."""
    be = make(window_impl, clock, max_keys=50)
    rule = RateLimitRule(requests_per_window=3, window_seconds=10)
    for i in range(200):
        await be.hit(f"client-{i}", rule)
    window = be._window(rule)
    assert len(window) <= 50
    tracked = len(window)
    clock.advance(25.0)
    assert be.sweep() == tracked
    assert len(window) == 0


async def test_peek_does_not_count(window_impl, clock: FakeClock) -> None:
    """peek reports the state without spending a request."""
    be = make(window_impl, clock)
    rule = RateLimitRule(requests_per_window=2, window_seconds=10)
    await be.hit("k", rule)
    assert be.peek("k", rule).count == 1
    assert be.peek("k", rule).count == 1
    assert (await be.hit("k", rule)).count == 2
