"""SPEC §8: Redis killed, stalled and restarted under a running cache service (real servers)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from crown_nexus.core.cache import CacheService
from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.core.metrics.service import MetricsService
from crown_nexus.settings import Settings
from crown_nexus.testing import capture_logs
from tests._servers import RedisServer


@pytest.fixture
async def resilient(redis_server: RedisServer) -> AsyncIterator[CacheService]:
    """A Redis-backed service on a private server, quick to probe and to detect stalls."""
    svc = CacheService(
        Settings(),
        default_backend="redis",
        redis_url=redis_server.url,
        op_timeout=0.5,
        retry_interval=0.1,
    )
    metrics = MetricsService()
    with (
        get_registry().override("metrics_service", metrics),
        get_registry().override("cache_service", svc),
    ):
        await svc.initialize()
        try:
            yield svc
        finally:
            await svc.shutdown()


async def _wait_until(predicate, within: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def _exercise(svc: CacheService, tag: str) -> None:
    await svc.set(f"{tag}:a", {"v": 1}, ttl=60, tags=[tag])
    assert await svc.get(f"{tag}:a") == {"v": 1}
    assert await svc.get_many([f"{tag}:a", f"{tag}:missing"]) == {f"{tag}:a": {"v": 1}}
    await svc.set_many({f"{tag}:b": 2}, ttl=60)
    assert await svc.incr(f"{tag}:n") == 1
    assert await svc._get_backend("redis").get_set_members(f"cache:tag:{tag}") == [f"{tag}:a"]
    assert await svc.invalidate_tags([tag]) == 1
    assert await svc.invalidate_pattern(f"{tag}:*") == 2
    assert await svc.delete(f"{tag}:a") is False


async def test_redis_killed_and_restarted(
    resilient: CacheService, redis_server: RedisServer
) -> None:
    """Killing Redis raises nothing to callers, logs once, counts it, and Redis is used again after restart."""
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await resilient.set("stale", "old", ttl=60)
        await resilient.set("gone", "x", ttl=60)
        assert await raw.get("stale") is not None
        assert resilient.active_backend_name == "redis"

        redis_server.stop()
        with capture_logs() as logs:
            for i in range(5):
                await _exercise(resilient, f"down{i}")
            await resilient.set("stale", "new", ttl=60)
            assert await resilient.get("stale") == "new"
            await resilient.delete("gone")
        assert resilient.active_backend_name == "memory"
        warnings = [e for e in logs if "unavailable" in e["event"]]
        assert len(warnings) == 1, logs
        resilient.flush_metrics()
        metrics = get_registry().get("metrics_service")
        assert metrics.get_counter_sum("cache_fallback_total", {"backend": "redis"}) == 1
        assert metrics.get_counter_sum("cache_operations_total", {"backend": "memory"}) > 0

        redis_server.start()
        await raw.aclose()
        raw = aioredis.Redis.from_url(redis_server.url)
        assert await _wait_until(lambda: resilient.active_backend_name == "redis")
        assert await resilient.get("stale") is None
        await resilient.set("after", 42, ttl=60)
        assert await raw.get("after") == b"42"
        await _exercise(resilient, "up")
        assert metrics.get_counter_sum("cache_fallback_total") == 1
    finally:
        await raw.aclose()


async def test_redis_down_at_start_up(redis_server: RedisServer) -> None:
    """A service started while Redis is down serves from memory and moves to Redis once it is up."""
    redis_server.stop()
    svc = CacheService(
        Settings(), default_backend="redis", redis_url=redis_server.url, retry_interval=0.1
    )
    await svc.initialize()
    try:
        assert svc.active_backend_name == "memory"
        await svc.set("k", 1, ttl=60)
        assert await svc.get("k") == 1
        redis_server.start()
        assert await _wait_until(lambda: svc.active_backend_name == "redis")
        await svc.set("k", 2, ttl=60)
        assert await svc.get("k") == 2
    finally:
        await svc.shutdown()


async def test_stalled_redis_is_bounded_and_recovers(
    resilient: CacheService, redis_server: RedisServer
) -> None:
    """A frozen Redis (SIGSTOP) holds an operation at most ~op_timeout, then memory serves; SIGCONT brings Redis back."""
    await resilient.set("k", "v", ttl=60)
    await resilient.set("k3", "old", ttl=60)
    await resilient.set("list:1", "old", ttl=60)
    await resilient.set("tagged", "old", ttl=60, tags=["grp"])
    assert redis_server.proc is not None
    pid = redis_server.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        value = await resilient.get("k", "default")
        elapsed = time.monotonic() - start
        assert value == "default"  # served (as a miss) by the memory fallback
        assert elapsed < 3.0
        assert resilient.active_backend_name == "memory"
        await resilient.set("k2", "v2", ttl=60)
        assert await resilient.get("k2") == "v2"
        await resilient.set("k3", "new", ttl=60)
        await resilient.invalidate_pattern("list:*")
        await resilient.invalidate_tags(["grp"])
    finally:
        os.kill(pid, signal.SIGCONT)
    assert await _wait_until(lambda: resilient.active_backend_name == "redis")
    assert await resilient.get("k") == "v"
    # the outage's writes and invalidations were replayed on Redis: no old values come back
    assert await resilient.get("k2") is None
    assert await resilient.get("k3") is None
    assert await resilient.get("list:1") is None
    assert await resilient.get("tagged") is None


async def test_errors_that_are_not_outages_still_raise(resilient: CacheService) -> None:
    """A wrong-type operation on a healthy Redis raises instead of silently falling back."""
    from crown_nexus.core.cache import CacheOperationException

    await resilient.set("text", "abc", ttl=60)
    with pytest.raises(CacheOperationException):
        await resilient.incr("text")
    assert resilient.active_backend_name == "redis"


async def test_quick_restart_between_operations_is_transparent(redis_server: RedisServer) -> None:
    """Redis restarted while idle: the next operation reconnects and stays on Redis (no fallback)."""
    svc = CacheService(
        Settings(), default_backend="redis", redis_url=redis_server.url, retry_interval=30
    )
    await svc.initialize()
    try:
        await asyncio.gather(*(svc.set(f"k{i}", i, ttl=60) for i in range(8)))  # warm connections
        redis_server.stop()
        redis_server.start()
        assert await svc.get("k1") is None  # a fresh server: the entry is gone, no error
        assert svc.active_backend_name == "redis"
        await svc.set("k1", 1, ttl=60)
        assert await svc.get("k1") == 1
    finally:
        await svc.shutdown()
