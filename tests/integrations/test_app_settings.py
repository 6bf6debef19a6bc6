"""The shared cache and event services follow the Settings an app is built with (SPEC §8, §9)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from crown_nexus.core.cache import CacheService, configure_cache, get_cache_service
from crown_nexus.core.config import settings as loaded_settings
from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.events import (
    EventBackendType,
    EventService,
    configure_events,
    get_event_service,
)
from crown_nexus.demo.app import create_app
from crown_nexus.demo.routers.products import item_key
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client


@pytest.fixture(autouse=True)
def _restore_shared_services() -> Iterator[None]:
    """Point the shared services back at the loaded settings after each test."""
    yield
    configure_cache(loaded_settings)
    events = get_event_service()
    configure_events(loaded_settings)
    events._configured = None


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[Any]:
    """A raw redis-py client on an emptied database."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


def _settings(tmp_path: Path, **options: Any) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/app.db", **options)


def _data(resp: Any) -> Any:
    body = resp.json()
    return body["data"] if isinstance(body, dict) and "success" in body else body


async def test_redis_app_health_reports_redis_cache(
    tmp_path: Path, redis_url: str, raw_redis: Any
) -> None:
    """An app built with REDIS_URI + CACHE_DEFAULT_BACKEND=redis in code gets a Redis cache."""
    app = create_app(_settings(tmp_path, REDIS_URI=redis_url, CACHE_DEFAULT_BACKEND="redis"))
    async with app_client(app) as client:
        resp = await client.get("/health")
        assert resp.status_code == 200
        cache = _data(resp)["backends"]["services"]["cache"]
        assert cache == {"configured": "FallbackCacheBackend", "active": "redis"}
        shared = get_cache_service()
        assert shared.configuration() == ("redis", 300.0, redis_url)
        await shared.set("app-scope:probe", {"x": 1})
        assert await raw_redis.exists("app-scope:probe") == 1


async def test_redis_app_product_read_lands_in_redis(
    tmp_path: Path, redis_url: str, raw_redis: Any
) -> None:
    """A product read through the demo is stored in the real Redis server."""
    app = create_app(_settings(tmp_path, REDIS_URI=redis_url, CACHE_DEFAULT_BACKEND="redis"))
    async with app_client(app) as client:
        first = await client.get("/products/1")
        assert first.status_code == 200
        assert first.headers["X-Cache"] == "miss"
        assert await raw_redis.exists(item_key(1)) == 1
        second = await client.get("/products/1")
        assert second.headers["X-Cache"] == "hit"


async def test_second_app_with_memory_settings_uses_memory(
    tmp_path: Path, redis_url: str, raw_redis: Any
) -> None:
    """After a Redis app, an app built with memory settings gets a memory cache (nothing in Redis)."""
    redis_app = create_app(
        _settings(tmp_path, REDIS_URI=redis_url, CACHE_DEFAULT_BACKEND="redis")
    )
    async with app_client(redis_app) as client:
        resp = await client.get("/health")
        assert _data(resp)["backends"]["services"]["cache"]["active"] == "redis"
    memory_app = create_app(_settings(tmp_path, CACHE_DEFAULT_BACKEND="memory"))
    async with app_client(memory_app) as client:
        resp = await client.get("/health")
        cache = _data(resp)["backends"]["services"]["cache"]
        assert cache == {"configured": "MemoryCacheBackend", "active": "memory"}
        await get_cache_service().set("app-scope:memory-only", 1)
        assert await get_cache_service().get("app-scope:memory-only") == 1
        assert await raw_redis.exists("app-scope:memory-only") == 0


async def test_app_started_after_another_was_set_up_uses_its_own_settings(
    tmp_path: Path, redis_url: str
) -> None:
    """Setting up a memory app does not change the cache of a Redis app started afterwards."""
    redis_app = create_app(
        _settings(tmp_path, REDIS_URI=redis_url, CACHE_DEFAULT_BACKEND="redis")
    )
    create_app(_settings(tmp_path, CACHE_DEFAULT_BACKEND="memory"))
    assert get_cache_service().default_backend_name == "memory"
    async with app_client(redis_app) as client:
        resp = await client.get("/health")
        assert _data(resp)["backends"]["services"]["cache"]["active"] == "redis"


async def test_ttl_setting_followed(tmp_path: Path) -> None:
    """CACHE_DEFAULT_TTL given in code becomes the shared cache's default TTL."""
    app = create_app(_settings(tmp_path, CACHE_DEFAULT_TTL=42))
    async with app_client(app):
        assert get_cache_service().default_ttl == 42


async def test_redis_app_restarted_on_new_loop_reconnects(
    tmp_path: Path, redis_url: str, raw_redis: Any
) -> None:
    """The same Redis app started twice keeps a working Redis cache (connections reopened)."""
    app = create_app(_settings(tmp_path, REDIS_URI=redis_url, CACHE_DEFAULT_BACKEND="redis"))
    for i in range(2):
        async with app_client(app) as client:
            resp = await client.get("/health")
            assert _data(resp)["backends"]["services"]["cache"]["active"] == "redis"
            await get_cache_service().set(f"app-scope:run{i}", i)
            assert await raw_redis.exists(f"app-scope:run{i}") == 1


async def test_event_service_uses_app_memory_backend(tmp_path: Path) -> None:
    """An app built with event_backend="memory" runs the memory event backend."""
    app = create_app(_settings(tmp_path, event_backend="memory"))
    async with app_client(app) as client:
        events = get_service("event_service")
        assert isinstance(events, EventService)
        assert events.backend_type is EventBackendType.MEMORY
        resp = await client.get("/health")
        assert _data(resp)["backends"]["services"]["events"] == "memory"


async def test_event_service_switches_to_app_backend_at_startup() -> None:
    """A service running another backend type switches to the configured one at start-up."""
    service = EventService()
    await service.initialize("memory")
    sentinel = service.backend
    service._backend_type = EventBackendType.CELERY  # pretend a Celery backend is active
    assert service.configure(Settings(event_backend="memory")) is True
    await service.initialize()
    assert service.backend_type is EventBackendType.MEMORY
    assert service.backend is not sentinel
    await service.shutdown()


async def test_event_configure_same_backend_keeps_it() -> None:
    """Configuring the backend already in use changes nothing."""
    service = EventService()
    await service.initialize("memory")
    backend = service.backend
    assert service.configure(Settings(event_backend="memory")) is False
    await service.initialize()
    assert service.backend is backend
    await service.shutdown()


def test_event_configure_before_initialize_sets_publish_backend() -> None:
    """Before any initialize, the configured type is the one a publish starts."""
    service = EventService()
    service.configure(Settings(event_backend="celery"))
    assert service._last[0] is EventBackendType.CELERY
    service.configure(Settings(event_backend="memory"))
    assert service._last[0] is EventBackendType.MEMORY


def test_event_configure_rejects_unknown_backend() -> None:
    """An unknown event backend name is a typed configuration error."""
    from crown_nexus.core.events import EventConfigurationException

    class Fake:
        event_backend = "kafka"

    with pytest.raises(EventConfigurationException):
        EventService().configure(Fake())


def test_cache_configure_is_noop_for_same_settings() -> None:
    """configure() with the configuration in use keeps the backends."""
    service = CacheService(Settings(), metrics=False)
    backend = service.backend
    assert service.configure(Settings()) is False
    assert service.backend is backend


async def test_cache_configure_retires_and_closes_open_backends(redis_url: str) -> None:
    """Reconfiguring a started service closes the old backends at the next start."""
    service = CacheService(
        Settings(REDIS_URI=redis_url, CACHE_DEFAULT_BACKEND="redis"), metrics=False
    )
    await service.initialize()
    old = service.backend
    view = service.for_component("products")
    assert service.configure(Settings(CACHE_DEFAULT_BACKEND="memory")) is True
    assert service.initialized is False
    assert view.backend is service.backend
    assert view.default_backend_name == "memory"
    await service.initialize()
    assert old._closed is True  # type: ignore[attr-defined]
    await service.set("k", 1)
    assert await view.get("k") == 1
    await service.shutdown()


def test_cache_configure_bad_ttl_leaves_service_unchanged() -> None:
    """A bad configuration raises a typed error and keeps the previous backends."""
    from crown_nexus.core.cache import CacheConfigurationException

    service = CacheService(Settings(), metrics=False)
    backend = service.backend
    bad = Settings().model_copy(update={"CACHE_DEFAULT_TTL": -1})
    with pytest.raises(CacheConfigurationException):
        service.configure(bad)
    assert service.backend is backend


def test_cache_reconfigured_across_event_loops(redis_url: str) -> None:
    """Backends opened on a loop that is gone are dropped and closed on the new loop; the
    reconfigured service works there (redis-py clients belong to the loop that opened them)."""
    import asyncio

    redis_settings = Settings(REDIS_URI=redis_url, CACHE_DEFAULT_BACKEND="redis")
    service = CacheService(redis_settings, metrics=False)

    async def start_and_write(key: str) -> str:
        await service.initialize()
        await service.set(key, key)
        return str(service.active_backend_name)

    assert asyncio.run(start_and_write("app-scope:loop1")) == "redis"  # loop 1, left open
    old = service.backend
    assert service.configure(Settings(CACHE_DEFAULT_BACKEND="memory")) is True

    async def on_memory() -> Any:
        await service.initialize()
        await service.set("m", 2)
        return await service.get("m")

    assert asyncio.run(on_memory()) == 2  # loop 2 closes the retired Redis backend
    assert old._closed is True  # type: ignore[attr-defined]
    assert service.configure(redis_settings) is True

    async def back_on_redis() -> tuple[str, Any]:
        await service.initialize()
        value = await service.get("app-scope:loop1")
        name = service.active_backend_name
        await service.shutdown()
        return name, value

    assert asyncio.run(back_on_redis()) == ("redis", "app-scope:loop1")  # loop 3


def test_configure_cache_leaves_foreign_override_alone() -> None:
    """An override that is not a CacheService is returned untouched by configure_cache."""
    from crown_nexus.testing import override_service

    class Fake:
        default_backend_name = "fake"

    fake = Fake()
    with override_service("cache_service", fake):
        assert configure_cache(Settings(CACHE_DEFAULT_BACKEND="memory")) is fake
    assert fake.default_backend_name == "fake"
