"""One suite for every rate-limit backend: memory (each rate_window implementation) and Redis."""

from __future__ import annotations

import asyncio

import pytest

from crown_nexus.core.rate_limiting import RateLimitAlgorithm, RateLimitBackend, RateLimitRule
from tests.core.rate_limiting.conftest import wait_away_from_boundary

ALGORITHMS = list(RateLimitAlgorithm)


def rule_for(algo: RateLimitAlgorithm, limit: int = 10, window: int = 3600) -> RateLimitRule:
    return RateLimitRule(requests_per_window=limit, window_seconds=window, algorithm=algo)


async def settle(backend: RateLimitBackend, window: int) -> None:
    client = getattr(backend, "client", None)
    await wait_away_from_boundary(window, redis_client=client)


@pytest.mark.parametrize("algo", ALGORITHMS)
async def test_sequential_exactly_limit_pass(backend: RateLimitBackend, algo: RateLimitAlgorithm) -> None:
    """N hits are admitted with counts 1..N and falling remaining; hit N+1 is refused."""
    rule = rule_for(algo, limit=5)
    await settle(backend, rule.window_seconds)
    results = [await backend.hit("client-a", rule) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert [r.count for r in results[:5]] == [1, 2, 3, 4, 5]
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0]
    refused = results[-1]
    assert refused.retry_after > 0 and refused.retry_after_seconds >= 1
    assert refused.headers()["Retry-After"] == str(refused.retry_after_seconds)
    assert all(r.retry_after == 0 for r in results[:5])
    assert all(r.limit == 5 for r in results)


@pytest.mark.parametrize("algo", ALGORITHMS)
async def test_concurrent_clients_exactly_limit_pass(
    backend: RateLimitBackend, algo: RateLimitAlgorithm
) -> None:
    """200 concurrent hits on one key with limit 37: exactly 37 are admitted."""
    rule = rule_for(algo, limit=37)
    await settle(backend, rule.window_seconds)
    results = await asyncio.gather(*(backend.hit("shared", rule) for _ in range(200)))
    assert sum(r.allowed for r in results) == 37
    assert max(r.count for r in results) == 37


async def test_keys_and_rules_are_independent(backend: RateLimitBackend) -> None:
    """A full key does not affect another key, nor the same key under another rule."""
    small = rule_for(RateLimitAlgorithm.SLIDING_LOG, limit=2)
    other = rule_for(RateLimitAlgorithm.SLIDING_LOG, limit=3)
    for _ in range(2):
        assert (await backend.hit("k1", small)).allowed
    assert not (await backend.hit("k1", small)).allowed
    assert (await backend.hit("k2", small)).allowed
    assert (await backend.hit("k1", other)).allowed


async def test_reset_forgets_the_key(backend: RateLimitBackend) -> None:
    """After reset a full key admits again."""
    rule = rule_for(RateLimitAlgorithm.SLIDING_LOG, limit=1)
    assert (await backend.hit("r", rule)).allowed
    assert not (await backend.hit("r", rule)).allowed
    await backend.reset("r", rule)
    assert (await backend.hit("r", rule)).allowed


async def test_token_bucket_burst(backend: RateLimitBackend) -> None:
    """burst_multiplier=2 admits twice the limit at once (the guide's auth rule)."""
    rule = RateLimitRule(requests_per_window=20, window_seconds=60, burst_multiplier=2.0)
    assert rule.effective_algorithm is RateLimitAlgorithm.TOKEN_BUCKET
    results = [await backend.hit("burst", rule) for _ in range(41)]
    assert sum(r.allowed for r in results) == 40
    assert results[-1].limit == 40
    assert 0 < results[-1].retry_after <= 3.0  # one request refills every 60/20 s


@pytest.mark.parametrize("cost", [0, -1, 11])
async def test_cost_outside_capacity_is_rejected(backend: RateLimitBackend, cost: int) -> None:
    """A cost below 1 or above the capacity raises ValueError, never a silent result."""
    with pytest.raises(ValueError, match="cost"):
        await backend.hit("c", rule_for(RateLimitAlgorithm.SLIDING_WINDOW, limit=10), cost)


async def test_cost_counts_several(backend: RateLimitBackend) -> None:
    """A hit of cost 4 uses four requests of the window."""
    rule = rule_for(RateLimitAlgorithm.SLIDING_LOG, limit=10)
    first = await backend.hit("cost", rule, 4)
    assert first.allowed and first.count == 4 and first.remaining == 6
    assert not (await backend.hit("cost", rule, 7)).allowed
    assert (await backend.hit("cost", rule, 6)).allowed
