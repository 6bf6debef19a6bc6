"""Redis-specific behaviour of the cache backend, checked on the real server."""

from __future__ import annotations

from typing import Any

from crown_nexus.core.cache import CacheService
from crown_nexus.settings import Settings


async def _stats(client: Any) -> dict[str, int]:
    info = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def test_tag_sets_live_as_long_as_their_longest_entry(
    redis_url: str, redis_client: Any
) -> None:
    """A tag set gets its entry's TTL, is extended by longer entries, and never shortened."""
    svc = CacheService(Settings(), default_backend="redis", redis_url=redis_url)
    await svc.initialize()
    try:
        await svc.set("a", 1, ttl=100, tags=["t"])
        assert 90_000 < await redis_client.pttl("cache:tag:t") <= 100_000
        await svc.set("b", 2, ttl=500, tags=["t"])
        assert 490_000 < await redis_client.pttl("cache:tag:t") <= 500_000
        await svc.set("c", 3, ttl=10, tags=["t"])
        assert await redis_client.pttl("cache:tag:t") > 490_000
        await svc.set("d", 4, ttl=0, tags=["t"])  # an entry without expiry: the set persists
        assert await redis_client.pttl("cache:tag:t") == -1
    finally:
        await svc.shutdown()


async def test_patterns_use_scan_never_keys(redis_url: str, redis_client: Any) -> None:
    """invalidate_pattern and a prefixed clear walk with SCAN; KEYS is never called."""
    svc = CacheService(Settings(), default_backend="redis", redis_url=redis_url, key_prefix="app1:")
    await svc.initialize()
    try:
        await svc.set_many({f"p:{i}": i for i in range(50)}, ttl=60)
        before = await _stats(redis_client)
        assert await svc.invalidate_pattern("p:*") == 50
        await svc.clear()
        after = await _stats(redis_client)
        assert after.get("scan", 0) > before.get("scan", 0)
        assert after.get("keys", 0) == before.get("keys", 0)
    finally:
        await svc.shutdown()


async def test_one_command_per_single_key_operation(redis_url: str, redis_client: Any) -> None:
    """get and set without tags are one command each (GET / SET PX), nothing else."""
    svc = CacheService(Settings(), default_backend="redis", redis_url=redis_url)
    await svc.initialize()
    try:
        await svc.set("warm", 1, ttl=60)
        before = await _stats(redis_client)
        await svc.set("k", {"v": 1}, ttl=60)
        for _ in range(10):
            await svc.get("k")
        after = await _stats(redis_client)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # the two INFO calls of this test count themselves
        assert {k: v for k, v in delta.items() if v and k != "info"} == {"set": 1, "get": 10}
    finally:
        await svc.shutdown()


async def test_key_prefix_scopes_clear(redis_url: str, redis_client: Any) -> None:
    """With a key_prefix, clear() removes only this cache's keys, tags included."""
    await redis_client.set("other-app:key", b"keep")
    svc = CacheService(Settings(), default_backend="redis", redis_url=redis_url, key_prefix="mine:")
    await svc.initialize()
    try:
        await svc.set("k", 1, ttl=60, tags=["t"])
        assert await redis_client.exists("mine:k", "mine:cache:tag:t") == 2
        assert await svc._get_backend("redis").get_set_members("cache:tag:t") == ["k"]
        await svc.clear()
        assert await redis_client.exists("mine:k", "mine:cache:tag:t") == 0
        assert await redis_client.get("other-app:key") == b"keep"
    finally:
        await svc.shutdown()


async def test_invalid_redis_url_is_a_configuration_error() -> None:
    """A malformed REDIS_URI fails at construction with CacheConfigurationException."""
    import pytest

    from crown_nexus.core.cache import CacheConfigurationException

    with pytest.raises(CacheConfigurationException):
        CacheService(Settings(), default_backend="redis", redis_url="not-a-url://x")
