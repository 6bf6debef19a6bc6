"""CacheService: settings, registration, backends by name, metrics, memory LRU bound."""

from __future__ import annotations

import asyncio
import sys

import pytest

from crown_nexus.core.cache import (
    CacheConfigurationException,
    CacheException,
    CacheService,
    MemoryCacheBackend,
    get_cache_service,
)
from crown_nexus.core.dependency_manager import get_registry, get_service
from crown_nexus.core.exceptions import AppException
from crown_nexus.core.metrics.service import MetricsService
from crown_nexus.settings import Settings


def test_import_does_not_import_redis() -> None:
    """Importing the cache package (and building a memory service) never imports redis."""
    import subprocess

    code = (
        "import sys; import crown_nexus.core.cache as c; from crown_nexus.settings import Settings; "
        "c.CacheService(Settings(), default_backend='memory'); print('redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registered_as_cache_service() -> None:
    """get_service('cache_service') and get_cache_service() return the same shared service."""
    get_registry().clear_override("cache_service")
    service = get_service("cache_service")
    assert isinstance(service, CacheService)
    assert get_cache_service() is service


def test_settings_choose_backend_and_ttl(redis_url: str) -> None:
    """CACHE_DEFAULT_BACKEND, CACHE_DEFAULT_TTL and REDIS_URI are read as the guide writes them."""
    svc = CacheService(Settings(CACHE_DEFAULT_BACKEND="null", CACHE_DEFAULT_TTL=42))
    assert svc.default_backend_name == "null"
    assert svc.default_ttl == 42
    svc = CacheService(Settings(CACHE_DEFAULT_BACKEND="redis", REDIS_URI=redis_url))
    assert svc._get_backend().name == "redis"
    assert svc._get_backend("memory").name == "memory"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide's environment names configure the service."""
    monkeypatch.setenv("CACHE_DEFAULT_BACKEND", "memory")
    monkeypatch.setenv("CACHE_DEFAULT_TTL", "7")
    svc = CacheService(Settings())
    assert (svc.default_backend_name, svc.default_ttl) == ("memory", 7)


def test_backend_lookup_by_name() -> None:
    """_get_backend returns backends by name; 'redis' without Redis is the default backend."""
    svc = CacheService(Settings(), default_backend="memory")
    assert svc._get_backend("memory") is svc._get_backend()
    assert svc._get_backend("null").name == "null"
    assert svc._get_backend("redis") is svc._get_backend()
    with pytest.raises(CacheConfigurationException):
        svc._get_backend("memcached")


def test_unknown_default_backend_is_a_configuration_error() -> None:
    """An unknown backend name fails at construction with a typed error (an AppException)."""
    with pytest.raises(CacheConfigurationException) as info:
        CacheService(Settings(), default_backend="memcached")
    assert isinstance(info.value, CacheException)
    assert isinstance(info.value, AppException)
    assert info.value.status_code == 500


async def test_metrics_are_readable_through_the_metrics_service(service: CacheService) -> None:
    """Hits, misses, operations and durations reach the metrics readers of guide §9."""
    metrics = MetricsService()
    with get_registry().override("metrics_service", metrics):
        await service.set("k", 1, ttl=60)
        for _ in range(3):
            await service.get("k")
        await service.get("missing")
        for _ in range(16):
            await service.get("k")
        await asyncio.sleep(0.05)  # counts are handed over within 20 ms
        backend = service.active_backend_name
        assert metrics.get_counter_sum("cache_hit_total", {"backend": backend}) == 19
        assert metrics.get_counter_sum("cache_miss_total", {"backend": backend}) == 1
        assert metrics.get_counter_sum("cache_operations_total") == 21
        hit_rate = metrics.get_counter_rate("cache_hit_total") / metrics.get_counter_rate(
            "cache_operations_total"
        )
        assert hit_rate == pytest.approx(19 / 21)
        latency = metrics.get_histogram_quantile(
            "cache_operation_duration_seconds", 0.95, {"component": "cache"}
        )
        assert latency > 0


async def test_metrics_component_label() -> None:
    """The component label is configurable per service."""
    metrics = MetricsService()
    svc = CacheService(Settings(), default_backend="memory", component="product_service")
    with get_registry().override("metrics_service", metrics):
        for _ in range(8):
            await svc.get("x")
        svc.flush_metrics()
        assert metrics.get_counter_sum("cache_miss_total", {"component": "product_service"}) == 8
        assert (
            metrics.get_histogram_quantile(
                "cache_operation_duration_seconds", 0.95, {"component": "product_service"}
            )
            >= 0
        )


async def test_memory_backend_is_lru_bounded() -> None:
    """The memory backend keeps at most max_size entries, evicting the least recently used."""
    mem = MemoryCacheBackend(max_size=3)
    for k in "abc":
        await mem.set(k, k)
    await mem.get("a")  # a is now most recently used; b is the oldest
    await mem.set("d", "d")
    assert await mem.get_many(list("abcd")) == {"a": "a", "c": "c", "d": "d"}
    assert len(mem) == 3 and mem.evictions == 1


async def test_memory_eviction_prefers_expired_entries() -> None:
    """When full, expired entries go before live ones."""
    now = [0.0]
    mem = MemoryCacheBackend(max_size=2, clock=lambda: now[0])
    await mem.set("live", 1)
    await mem.set("short", 2, ttl=1)
    now[0] = 5.0
    await mem.set("new", 3)
    assert await mem.get_many(["live", "short", "new"]) == {"live": 1, "new": 3}
    assert mem.evictions == 0


async def test_memory_serialize_mode_isolates_values() -> None:
    """With serialize=True, mutating a value after caching it does not change the cache."""
    mem = MemoryCacheBackend(serialize=True)
    value = {"a": [1]}
    await mem.set("k", value)
    value["a"].append(2)
    assert await mem.get("k") == {"a": [1]}
    assert await mem.incr("n", 2) == 2 and await mem.incr("n") == 3


async def test_shutdown_then_registry_builds_fresh_service() -> None:
    """Lifecycle through the registry: initialize starts it, shutdown closes it."""
    get_registry().clear_override("cache_service")
    svc = get_cache_service()
    await svc.initialize()
    assert svc.initialized
    await svc.shutdown()
    assert not svc.initialized


async def test_for_component_labels_metrics_and_shares_entries(service: CacheService) -> None:
    """A component view shares the entries and labels its metrics with its component."""
    metrics = MetricsService()
    view = service.for_component("product_service")
    with get_registry().override("metrics_service", metrics):
        await view.set("shared", 1, ttl=60)
        assert await service.get("shared") == 1
        for _ in range(8):
            assert await view.get("shared") == 1
        view.flush_metrics()
        service.flush_metrics()
        assert metrics.get_counter_sum("cache_hit_total", {"component": "product_service"}) == 8
        assert metrics.get_counter_sum("cache_hit_total", {"component": "cache"}) == 1
        assert (
            metrics.get_histogram_quantile(
                "cache_operation_duration_seconds", 0.95, {"component": "product_service"}
            )
            > 0
        )
    await view.shutdown()
    assert await service.get("shared") == 1  # the shared backends stay open
