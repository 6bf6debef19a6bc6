"""Guide §9 (Cache System), its §13/§14 usages, run as written with the user's objects supplied.

Each block is run from the guide itself (``tests/guide/_blocks.py``) with the user's objects, once per setup.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import (
    AsyncSession,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.core.cache import CacheService
from crown_nexus.core.cache.exceptions import CacheException, CacheOperationException
from crown_nexus.core.dependency_manager import get_registry, get_service
from crown_nexus.core.metrics import MetricsService
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings
from crown_nexus.testing import override_service, override_services
from tests.guide._blocks import guide_block, section
from tests.guide._support import sqlite_database

logger = get_logger("app.guide.s09")

# the §9 blocks, by a line of each
BASIC_USAGE = "async def get_user_profile(user_id: str):"
DECORATORS = '@invalidate_cache(pattern="product:*")'
ADVANCED = "@memoize(ttl=60)"
TAGS = "async def clear_product_cache():"
EXCEPTIONS = "async def get_cached_data(key: str):"
ERROR_INTEGRATION = 'value = await cache_service.get("my_key")'
METRICS = "hit_rate = metrics_service.get_counter_rate"
DEPENDENCY_INJECTION = "async def get_product(self, product_id):"
# §14 'Caching with Fallback and Metrics' (also in §4)
FALLBACK = "async def get_product_with_details(self, product_id: str):"


s09 = section(9)


def _make(kind: str, request: pytest.FixtureRequest, redis_url: str | None = None) -> CacheService:
    url = redis_url or (request.getfixturevalue("redis_url") if kind == "redis" else None)
    return CacheService(
        Settings(ENVIRONMENT="test"),
        default_backend=kind,
        redis_url=url,
        key_prefix=f"g9{uuid.uuid4().hex[:8]}:" if kind == "redis" else "",
    )


@asynccontextmanager
async def started(svc: CacheService) -> AsyncIterator[CacheService]:
    """``svc`` initialized for the test; cleared and shut down after."""
    await svc.initialize()
    try:
        yield svc
    finally:
        await svc.clear()
        await svc.shutdown()


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[CacheService]:
    """A started cache service registered as "cache_service" (memory, then real Redis), with fresh metrics."""
    svc = _make(request.param, request)
    with override_services({"cache_service": svc, "metrics_service": MetricsService()}):
        async with started(svc):
            yield svc


# --- the user's own objects ------------------------------------------------------------------------


class Repo:
    """The user's repository: records every call; products can be updated."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.products: dict[str, dict[str, Any]] = {"p1": {"id": "p1", "name": "Lamp"}}

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        self.calls.append(("get_profile", user_id))
        return {"id": user_id, "bio": f"bio of {user_id}"}

    async def get_details(self, product_id: str) -> dict[str, Any]:
        self.calls.append(("get_details", product_id))
        return dict(self.products[product_id])

    async def update(self, product_id: str, data: dict[str, Any]) -> None:
        self.calls.append(("update", product_id))
        self.products[product_id].update(data)

    async def list_by_category(self, category_id: str) -> list[dict[str, Any]]:
        self.calls.append(("list_by_category", category_id))
        return [{"id": "p1", "category": category_id}]


user_repository = product_repository = Repo()


@pytest.fixture(autouse=True)
def fresh_repo() -> None:
    """Each test starts with an empty call log."""
    user_repository.calls.clear()
    user_repository.products = {"p1": {"id": "p1", "name": "Lamp"}}


# --- §9 'Basic Usage' --------------------------------------------------------------------------------


def basic_usage() -> Any:
    """The guide's block run now (it reads the current "cache_service"); returns ``get_user_profile``."""
    return s09(BASIC_USAGE).run(user_repository=user_repository)["get_user_profile"]


async def test_basic_usage(cache: CacheService) -> None:
    """The second read is served from the cache; the entry is stored under the guide's key."""
    get_user_profile = basic_usage()
    first = await get_user_profile("u1")
    second = await get_user_profile("u1")
    assert first == second == {"id": "u1", "bio": "bio of u1"}
    assert user_repository.calls == [("get_profile", "u1")]
    assert await cache.get("user:profile:u1") == first
    assert await cache.exists("user:profile:u1")


async def test_basic_usage_survives_redis_outage(redis_server: Any, request: pytest.FixtureRequest) -> None:
    """'Falls back to the memory backend if Redis is unavailable': the example keeps working with Redis down."""
    svc = CacheService(Settings(ENVIRONMENT="test"), default_backend="redis", redis_url=redis_server.url, op_timeout=0.5)
    with override_services({"cache_service": svc, "metrics_service": MetricsService()}):
        await svc.initialize()
        try:
            get_user_profile = basic_usage()
            assert await get_user_profile("u1") == {"id": "u1", "bio": "bio of u1"}
            redis_server.stop()
            assert await get_user_profile("u2") == {"id": "u2", "bio": "bio of u2"}
            assert await get_user_profile("u2") == {"id": "u2", "bio": "bio of u2"}
            assert svc.active_backend_name == "memory"
            assert user_repository.calls == [("get_profile", "u1"), ("get_profile", "u2")]
        finally:
            redis_server.start()
            await svc.shutdown()


# --- §9 'Using Decorators' -------------------------------------------------------------------------


@pytest.fixture
def decorators() -> dict[str, Any]:
    """The guide's block on the user's ``product_repository``: its ``get_product_details``, ``update_product``."""
    return s09(DECORATORS).run(product_repository=product_repository)


async def test_decorators(cache: CacheService, decorators: dict[str, Any]) -> None:
    """cached runs the body only on misses; invalidate_cache removes every key matching product:*."""
    get_product_details, update_product = decorators["get_product_details"], decorators["update_product"]
    assert await get_product_details("p1") == {"id": "p1", "name": "Lamp"}
    assert await get_product_details("p1") == {"id": "p1", "name": "Lamp"}
    assert user_repository.calls == [("get_details", "p1")]
    await cache.set("product:p1", {"old": True}, ttl=60)
    await cache.set("product:list:all", [1], ttl=60)
    await cache.set("order:1", "keep", ttl=60)
    assert await update_product("p1", {"name": "Desk lamp"}) == {"status": "updated"}
    assert await cache.get("product:p1") is None and await cache.get("product:list:all") is None
    assert await cache.get("order:1") == "keep"


async def test_invalidate_pattern_reaches_cached_keys_with_matching_prefix(
    cache: CacheService, decorators: dict[str, Any]
) -> None:
    """With key_prefix="product", the cached function's entries match "product:*" and are invalidated."""
    from crown_nexus.core.cache import cached

    update_product = decorators["update_product"]

    @cached(ttl=300, key_prefix="product")
    async def details(product_id: str) -> dict[str, Any]:
        return await product_repository.get_details(product_id)

    assert (await details("p1"))["name"] == "Lamp"
    assert await update_product("p1", {"name": "Desk lamp"}) == {"status": "updated"}
    assert (await details("p1"))["name"] == "Desk lamp"
    assert user_repository.calls == [("get_details", "p1"), ("update", "p1"), ("get_details", "p1")]


async def test_cached_concurrent_misses_run_once(cache: CacheService, decorators: dict[str, Any]) -> None:
    """Ten concurrent first calls run the expensive body once (no stampede)."""
    get_product_details = decorators["get_product_details"]
    results = await asyncio.gather(*(get_product_details("p1") for _ in range(10)))
    assert all(r == {"id": "p1", "name": "Lamp"} for r in results)
    assert user_repository.calls == [("get_details", "p1")]


# --- §9 'Advanced Caching Patterns' -----------------------------------------------------------------


@pytest.fixture
def advanced() -> dict[str, Any]:
    """The guide's block, its calculation's ``result`` being 4242; ``calculate_complex_value`` etc."""
    return s09(ADVANCED).run(product_repository=product_repository, result=4242)


async def test_advanced_patterns(cache: CacheService, advanced: dict[str, Any]) -> None:
    """memoize caches a sync function in process; cache_aside stores under the custom key with both tags."""
    calculate_complex_value = advanced["calculate_complex_value"]
    get_products_by_category = advanced["get_products_by_category"]
    generate_list_key, generate_model_key = advanced["generate_list_key"], advanced["generate_model_key"]
    n = uuid.uuid4().int % 10**9
    assert calculate_complex_value(n) == calculate_complex_value(n) == 4242
    assert calculate_complex_value.cache_info()["misses"] == 1  # the body ran once
    assert calculate_complex_value.cache_info()["hits"] == 1
    assert await get_products_by_category("c1") == await get_products_by_category("c1")
    assert user_repository.calls == [("list_by_category", "c1")]
    key = generate_list_key(prefix="products", model_name="product", filters={"category_id": "c1"})
    assert key.startswith("products:product:list:")
    assert await cache.get(key) == [{"id": "p1", "category": "c1"}]
    for tag in ("products", "catalog"):
        assert key in await cache._get_backend("redis").get_set_members(f"cache:tag:{tag}")
    assert await cache.invalidate_tags("catalog") >= 1
    assert await cache.get(key) is None
    assert generate_model_key("products", "product", 5) == "products:product:5"


# --- §9 'Cache Tags for Group Invalidation' ---------------------------------------------------------


async def test_tag_group_invalidation(cache: CacheService, advanced: dict[str, Any]) -> None:
    """Every entry tagged "products" goes, the tag set too; other entries stay."""
    clear_product_cache = s09(TAGS).run()["clear_product_cache"]
    get_products_by_category = advanced["get_products_by_category"]
    await get_products_by_category("c1")
    await cache.set("product:9", {"id": 9}, ttl=60, tags=["products"])
    await cache.set("other", 1, ttl=60, tags=["misc"])
    assert await clear_product_cache() == {"invalidated": 2}
    assert await cache.get("product:9") is None and await cache.get("other") == 1
    assert await cache._get_backend("redis").get_set_members("cache:tag:products") == []
    assert await clear_product_cache() == {"invalidated": 0}
    await get_products_by_category("c1")  # a miss again: recomputed
    assert user_repository.calls == [("list_by_category", "c1"), ("list_by_category", "c1")]


# --- §9 'Exception Handling' + 'Error Handling Integration' -----------------------------------------


async def fetch_from_database() -> str:
    """The user's fallback."""
    return "from-db"


def exception_handling() -> Any:
    """The guide's block with the user's ``get_service``, ``logger`` and fallback; returns ``get_cached_data``."""
    names = {"get_service": get_service, "logger": logger, "fetch_from_database": fetch_from_database}
    return s09(EXCEPTIONS).run(**names)["get_cached_data"]


class BrokenCache:
    """A cache whose reads fail the way a cache operation fails."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def get(self, key: str, default: Any = None) -> Any:
        raise self.exc


async def test_exception_handling(cache: CacheService) -> None:
    """A value is returned; an operation failure falls back to the database; other cache errors propagate."""
    from crown_nexus.core.cache import CacheConfigurationException

    get_cached_data = exception_handling()
    await cache.set("k", "cached", ttl=60)
    assert await get_cached_data("k") == "cached"
    assert issubclass(CacheOperationException, CacheException)
    with override_service("cache_service", BrokenCache(CacheOperationException("read failed"))):
        assert await get_cached_data("k") == "from-db"
    with override_service("cache_service", BrokenCache(CacheConfigurationException("bad config"))):
        with pytest.raises(CacheException):
            await get_cached_data("k")


async def test_unstorable_value_is_a_cache_operation_exception(request: pytest.FixtureRequest) -> None:
    """Redis: a value that cannot be stored raises CacheOperationException (the guide's except clause)."""
    cache_service = _make("redis", request)
    await cache_service.initialize()
    try:
        try:
            value = await cache_service.set("bad", object(), ttl=10)
        except CacheOperationException as e:
            logger.warning(f"Cache operation failed: {e}")
            value = "fallback"
    finally:
        await cache_service.shutdown()
    assert value == "fallback"


# --- §9 'Metrics Integration' -----------------------------------------------------------------------


async def test_metrics_integration(cache: CacheService) -> None:
    """Hit rate, p95 latency and miss counts are readable from the metrics service after cache traffic."""
    for _ in range(3):
        await cache.get("absent")
    await cache.set("present", 1, ttl=60)
    await cache.get("present")
    cache.flush_metrics()
    ns = s09(METRICS).run(get_service=get_service)
    metrics_service, hit_rate, latency, miss_count = (
        ns[name] for name in ("metrics_service", "hit_rate", "latency", "miss_count")
    )
    assert hit_rate == pytest.approx(1 / 5)
    assert latency == 0.0  # nothing was labelled product_service
    assert metrics_service.get_histogram_quantile("cache_operation_duration_seconds", 0.95) > 0
    assert miss_count == (3 if cache.default_backend_name == "redis" else 0)
    assert metrics_service.get_counter_sum("cache_miss_total") == 3


# --- §9 'Dependency Injection' (ProductService), on a real database ---------------------------------


class Base(DeclarativeBase):
    """The user's declarative base."""


class Product(Base):
    """The user's Product model."""

    __tablename__ = "guide_s09_products"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    stock: Mapped[int] = mapped_column(Integer, default=0)


def di_product_service(product: type) -> Any:
    """The guide's ``ProductService`` over the user's ``Product`` model."""
    return s09(DEPENDENCY_INJECTION).run(get_service=get_service, select=select, Product=product)["ProductService"]


@pytest.fixture
async def db() -> AsyncIterator[AsyncSession]:
    """The user's database session (SQLite in memory) holding one product."""
    async with sqlite_database(Base, Product(id="p1", name="Lamp", stock=3)) as sessions:
        async with sessions() as session:
            yield session


async def test_product_service_caches_orm_objects(cache: CacheService, db: AsyncSession) -> None:
    """The ORM object is cached and read back as a Product with its columns; a missing id gives None."""
    service = di_product_service(Product)(db)
    first = await service.get_product("p1")
    assert (first.id, first.name) == ("p1", "Lamp")
    await db.execute(Product.__table__.update().values(name="Renamed"))
    second = await service.get_product("p1")
    assert isinstance(second, Product)
    assert (second.id, second.name, second.stock) == ("p1", "Lamp", 3)  # from the cache, not the db
    assert await service.get_product("nope") is None


# --- §9 'Configuration' ----------------------------------------------------------------------------


def test_configuration_names(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """The guide's setting names are read as written from the environment."""
    monkeypatch.setenv("CACHE_DEFAULT_BACKEND", "redis")
    monkeypatch.setenv("REDIS_URI", redis_url)
    monkeypatch.setenv("REDIS_HOST", "localhost")
    monkeypatch.setenv("REDIS_PORT", "6379")
    monkeypatch.setenv("REDIS_DB", "0")
    monkeypatch.setenv("REDIS_PASSWORD", "optional_password")
    monkeypatch.setenv("CACHE_DEFAULT_TTL", "300")
    settings = Settings()
    assert settings.CACHE_DEFAULT_BACKEND == "redis" and settings.CACHE_DEFAULT_TTL == 300
    assert settings.REDIS_URI == redis_url and settings.REDIS_PORT == 6379
    svc = CacheService(settings)
    assert svc.default_backend_name == "redis" and svc.default_ttl == 300
    monkeypatch.setenv("CACHE_DEFAULT_BACKEND", "null")
    assert CacheService(Settings()).default_backend_name == "null"


async def test_null_backend_stores_nothing(request: pytest.FixtureRequest) -> None:
    """The null backend acts like a cache but stores nothing: the example always reaches the repository."""
    svc = _make("null", request)
    with override_services({"cache_service": svc, "metrics_service": MetricsService()}):
        get_user_profile = basic_usage()
        await get_user_profile("u1")
        await get_user_profile("u1")
    assert user_repository.calls == [("get_profile", "u1"), ("get_profile", "u1")]


# --- §13 'Cache System Integration' (in a user's middleware) ---------------------------------------


async def test_middleware_cache_integration(cache: CacheService) -> None:
    """§13: a middleware reads a cached response by path through get_service("cache_service")."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    async def dispatch(request: Request) -> Any:
        from crown_nexus.core.dependency_manager import get_service

        # In your middleware
        cache_service = get_service("cache_service")
        cached_response = await cache_service.get(f"response:{request.url.path}")
        if cached_response:
            return cached_response
        return None

    await cache.set("response:/hello", "cached body", ttl=60)
    req = Request({"type": "http", "method": "GET", "path": "/hello", "headers": [], "query_string": b"", "server": ("t", 80), "scheme": "http", "root_path": ""})
    assert await dispatch(req) == "cached body"
    other = Request({**req.scope, "path": "/other"})
    assert await dispatch(other) is None
    assert PlainTextResponse  # the user would wrap the cached body in a response


# --- §14 'Caching with Fallback and Metrics' -------------------------------------------------------


class Review(Base):
    """The user's Review model."""

    __tablename__ = "guide_s09_reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[str] = mapped_column(String(20))
    stars: Mapped[int] = mapped_column(Integer)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "stars": self.stars}


def _product_to_dict(self: Product) -> dict[str, Any]:
    return {"id": self.id, "name": self.name, "stock": self.stock}


Product.to_dict = _product_to_dict  # type: ignore[attr-defined]


def fallback_block(product: type, review: type) -> type:
    """The guide's block (module-level in the guide) over the user's models; returns its ``ProductService``."""
    return guide_block(14, FALLBACK).run(select=select, Product=product, Review=review)["ProductService"]


class InventoryRepository:
    """The user's inventory levels."""

    async def get_levels(self, product_id: str) -> dict[str, int]:
        return {"warehouse": 3}


class ProductRepository:
    """The user's product writer (updates the real row)."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def update(self, product_id: str, data: dict[str, Any], user_id: str) -> dict[str, Any]:
        await self.db.execute(Product.__table__.update().where(Product.id == product_id).values(**data))
        await self.db.commit()
        return {"id": product_id, **data}


def _service(db: AsyncSession) -> Any:
    service = fallback_block(Product, Review)(db)
    service.inventory_repository = InventoryRepository()
    service.repository = ProductRepository(db)

    async def get_related_products(product_id: str) -> list[str]:
        return ["p2"]

    service.get_related_products = get_related_products
    service._calculate_rating = lambda reviews: sum(r.stars for r in reviews) / len(reviews) if reviews else None
    return service


async def test_caching_with_fallback_and_metrics(cache: CacheService, db: AsyncSession) -> None:
    """§14: a miss builds and caches the details (tagged), a hit skips the db; update invalidates; metrics and audit recorded."""
    from crown_nexus.core.error import get_audit_service

    db.add_all([Review(id=1, product_id="p1", stars=4), Review(id=2, product_id="p1", stars=2)])
    await db.commit()
    service = _service(db)
    first = await service.get_product_with_details("p1")
    assert first == {
        "product": {"id": "p1", "name": "Lamp", "stock": 3},
        "reviews": [{"id": 1, "stars": 4}, {"id": 2, "stars": 2}],
        "inventory": {"warehouse": 3},
        "related_products": ["p2"],
        "calculated_rating": 3.0,
    }
    await cache.set("products:list:all", ["p1"], ttl=60)
    await db.execute(Product.__table__.update().values(name="Changed behind the cache"))
    assert (await service.get_product_with_details("p1"))["product"]["name"] == "Lamp"  # a hit
    tagged = await cache._get_backend("redis").get_set_members("cache:tag:product:p1")
    assert tagged == ["product:details:p1"]
    assert await service.get_product_with_details("nope") is None
    metrics = service.metrics_service
    assert metrics.registry.get_sample_value("product_details_duration_seconds_count", {"cache_hit": "False", "product_id": "p1"}) == 1
    assert metrics.registry.get_sample_value("product_details_duration_seconds_count", {"cache_hit": "True", "product_id": "p1"}) == 1

    assert await service.update_product("p1", {"name": "Desk lamp"}, "u9") == {"id": "p1", "name": "Desk lamp"}
    assert await cache.get("product:details:p1") is None and await cache.get("products:list:all") is None
    assert await cache._get_backend("redis").get_set_members("cache:tag:product:p1") == []
    assert (await service.get_product_with_details("p1"))["product"]["name"] == "Desk lamp"
    entry = (await get_audit_service().recent(1))[0]  # read back from the durable trail
    assert (entry["user_id"], entry["action"], entry["resource_id"]) == ("u9", "product_update", "p1")
    assert entry["details"] == {"fields_updated": ["name"]}


async def test_caching_with_fallback_when_redis_is_down(redis_server: Any, db: AsyncSession) -> None:
    """§14 'Error handling with fallback': with Redis stopped the details are still served (and cached in memory)."""
    svc = CacheService(Settings(ENVIRONMENT="test"), default_backend="redis", redis_url=redis_server.url, op_timeout=0.5)
    with override_services({"cache_service": svc, "metrics_service": MetricsService()}):
        await svc.initialize()
        try:
            redis_server.stop()
            service = _service(db)
            first = await service.get_product_with_details("p1")
            second = await service.get_product_with_details("p1")
            assert first == second and first["product"]["name"] == "Lamp"
            assert svc.active_backend_name == "memory"
            assert await service.update_product("p1", {"stock": 1}, "u1") == {"id": "p1", "stock": 1}
            assert (await service.get_product_with_details("p1"))["product"]["stock"] == 1
        finally:
            redis_server.start()
            await svc.shutdown()


async def test_ttls_reach_redis(request: pytest.FixtureRequest, redis_url: str) -> None:
    """'TTL: 10 minutes' and CACHE_DEFAULT_TTL=300 are the expiries Redis holds for the entries."""
    import redis.asyncio as aioredis

    prefix = f"g9ttl{uuid.uuid4().hex[:8]}:"
    svc = CacheService(Settings(ENVIRONMENT="test", CACHE_DEFAULT_TTL=300), default_backend="redis", redis_url=redis_url, key_prefix=prefix)
    client = aioredis.Redis.from_url(redis_url)
    with override_services({"cache_service": svc, "metrics_service": MetricsService()}):
        await svc.initialize()
        try:
            await basic_usage()("u1")  # ttl=600
            await svc.set("plain", 1)  # default TTL
            await svc.set("forever", 1, ttl=0)
            profile_ttl = await client.ttl(f"{prefix}user:profile:u1")
            plain_ttl = await client.ttl(f"{prefix}plain")
            forever_ttl = await client.ttl(f"{prefix}forever")
        finally:
            await svc.clear()
            await svc.shutdown()
            await client.aclose()
    assert 590 <= profile_ttl <= 600
    assert 290 <= plain_ttl <= 300
    assert forever_ttl == -1


# --- §9 'Metrics Integration' readers on the shared metrics service ---------------------------------


@pytest.mark.usefixtures("fresh_shared_service")
def test_metrics_integration_readers_as_written() -> None:
    """Guide §9 'Metrics Integration': the readers over cache metrics, as written."""
    service = get_service("metrics_service")
    for hit, backend, component in [
        (True, "redis", "product_service"),
        (True, "redis", "product_service"),
        (True, "memory", "user_profile"),
        (False, "redis", "product_service"),
    ]:
        service.track_cache_operation(
            operation="get", backend=backend, hit=hit, duration=0.002, component=component
        )

    ns = s09(METRICS).run(get_service=get_service)
    assert ns["hit_rate"] == pytest.approx(0.75)
    assert ns["latency"] == pytest.approx(0.002)
    assert ns["miss_count"] == 1


# --- the same blocks on a second setup: a CacheService installed through the registry -------------


@pytest.fixture(params=["memory", "redis"])
async def service(request: pytest.FixtureRequest) -> AsyncIterator[CacheService]:
    """A started CacheService on each storing backend, installed through the registry (the shared metrics)."""
    svc = _make(request.param, request)
    with get_registry().override("cache_service", svc):
        async with started(svc):
            yield svc


class _Base(DeclarativeBase):
    pass


class OrmProduct(_Base):
    __tablename__ = "guide_products"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Repository:
    """The user's own repository, counting database calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def get_profile(self, user_id: str) -> dict[str, str]:
        self.calls.append(("get_profile", user_id))
        return {"id": user_id, "name": "Ada"}

    async def get_details(self, product_id: str) -> dict[str, str]:
        self.calls.append(("get_details", product_id))
        return {"id": product_id, "details": "..."}

    async def update(self, product_id: str, data: dict) -> None:
        self.calls.append(("update", product_id))

    async def list_by_category(self, category_id: str) -> list[dict[str, str]]:
        self.calls.append(("list_by_category", category_id))
        return [{"id": "1", "category": category_id}]


async def test_basic_usage_as_written(service: CacheService) -> None:
    """Basic Usage: the second call is served from the cache."""
    repo = Repository()
    ns = s09(BASIC_USAGE).run(user_repository=repo)
    assert await ns["get_user_profile"]("u1") == {"id": "u1", "name": "Ada"}
    assert await ns["get_user_profile"]("u1") == {"id": "u1", "name": "Ada"}
    assert repo.calls == [("get_profile", "u1")]
    assert await service.get("user:profile:u1") == {"id": "u1", "name": "Ada"}


async def test_decorators_as_written(service: CacheService) -> None:
    """Using Decorators: cached runs once per id; invalidate_cache removes product:* keys."""
    repo = Repository()
    ns = s09(DECORATORS).run(product_repository=repo)
    assert await ns["get_product_details"]("p1") == {"id": "p1", "details": "..."}
    await ns["get_product_details"]("p1")
    assert repo.calls == [("get_details", "p1")]
    await service.set("product:p1:summary", "cached", ttl=60)
    assert await ns["update_product"]("p1", {"name": "new"}) == {"status": "updated"}
    assert await service.get("product:p1:summary") is None


async def test_advanced_patterns_as_written(service: CacheService) -> None:
    """Advanced: memoize caches a sync function; cache_aside stores under generate_list_key with tags."""
    repo = Repository()
    ns = s09(ADVANCED).run(product_repository=repo, result=99)
    assert ns["calculate_complex_value"](3) == 99
    assert ns["calculate_complex_value"].cache_info()["misses"] == 1
    assert ns["calculate_complex_value"](3) == 99
    assert ns["calculate_complex_value"].cache_info()["hits"] == 1
    assert await ns["get_products_by_category"]("c1") == [{"id": "1", "category": "c1"}]
    assert await ns["get_products_by_category"]("c1") == [{"id": "1", "category": "c1"}]
    assert repo.calls == [("list_by_category", "c1")]
    key = ns["generate_list_key"](
        prefix="products", model_name="product", filters={"category_id": "c1"}
    )
    members = await service._get_backend("redis").get_set_members("cache:tag:catalog")
    assert members == [key]


async def test_tags_group_invalidation(service: CacheService) -> None:
    """Cache Tags for Group Invalidation: every key tagged 'products' is deleted."""
    await service.set("product:1", 1, ttl=60, tags=["products"])
    await service.set("product:2", 2, ttl=60, tags=["products"])
    await service.set("order:1", 3, ttl=60, tags=["orders"])
    ns = s09(TAGS).run()
    assert await ns["clear_product_cache"]() == {"invalidated": 2}
    assert await service.get_many(["product:1", "product:2", "order:1"]) == {"order:1": 3}
    assert await ns["clear_product_cache"]() == {"invalidated": 0}


async def test_exception_handling_as_written(service: CacheService) -> None:
    """Exception Handling: a normal read returns the value; nothing raises when Redis works."""
    from crown_nexus.core.dependency_manager import get_service

    async def fetch_from_database() -> str:
        return "from-db"

    await service.set("k", "cached", ttl=60)
    ns = s09(EXCEPTIONS).run(
        get_service=get_service,
        logger=get_logger("guide"),
        fetch_from_database=fetch_from_database,
    )
    assert await ns["get_cached_data"]("k") == "cached"
    assert await ns["get_cached_data"]("missing") is None


async def test_exception_handling_falls_back_to_database() -> None:
    """Exception Handling: a CacheOperationException from the cache sends the caller to the database."""
    from crown_nexus.core.cache import CacheOperationException
    from crown_nexus.core.dependency_manager import get_service

    class Broken(CacheService):
        async def get(self, key: str, default: Any = None) -> Any:
            raise CacheOperationException("backend refused", backend="redis", operation="get")

    async def fetch_from_database() -> str:
        return "from-db"

    from crown_nexus.settings import Settings

    with get_registry().override("cache_service", Broken(Settings())):
        ns = s09(EXCEPTIONS).run(
            get_service=get_service,
            logger=get_logger("guide"),
            fetch_from_database=fetch_from_database,
        )
        assert await ns["get_cached_data"]("k") == "from-db"


async def test_error_handling_integration(service: CacheService) -> None:
    """System Integration / Error Handling: the snippet runs and reads the value."""
    await service.set("my_key", "v", ttl=60)
    ns = await s09(ERROR_INTEGRATION).run_async(cache_service=service, logger=get_logger("guide"))
    assert ns["value"] == "v"


async def test_metrics_integration_as_written(service: CacheService) -> None:
    """Metrics Integration: hit rate, p95 latency and miss count are readable."""
    from crown_nexus.core.dependency_manager import get_service

    metrics = MetricsService()
    with get_registry().override("metrics_service", metrics):
        await service.set("a", 1, ttl=60)
        for _ in range(8):
            await service.get("a")
        for _ in range(8):
            await service.get("nope")
        await asyncio.sleep(0.05)  # counts are handed over within 20 ms
        ns = s09(METRICS).run(get_service=get_service)
    assert ns["hit_rate"] == pytest.approx(8 / 17)
    assert ns["latency"] == 0.0  # no samples labelled component=product_service
    expected_misses = 8 if service.active_backend_name == "redis" else 0
    assert ns["miss_count"] == expected_misses


async def test_dependency_injection_product_service(service: CacheService, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Dependency Injection: ProductService caches an ORM Product and serves it on the next call."""
    from crown_nexus.core.dependency_manager import get_service

    ns = s09(DEPENDENCY_INJECTION).run(get_service=get_service, select=select, Product=OrmProduct)
    async with sqlite_database(_Base, OrmProduct(id=1, name="Widget"), path=tmp_path / "guide.db") as sessions:
        async with sessions() as db:
            product_service = ns["ProductService"](db)
            first = await product_service.get_product(1)
            assert (first.id, first.name) == (1, "Widget")
    # the database is gone for the next call: only the cache can answer
    product_service = ns["ProductService"](None)
    cached_product = await product_service.get_product(1)
    assert isinstance(cached_product, OrmProduct)
    assert (cached_product.id, cached_product.name) == (1, "Widget")


# --- §14 'Caching with Fallback and Metrics' on a second setup: the user's subclass, file database --


class _FallbackBase(DeclarativeBase):
    pass


class FallbackProduct(_FallbackBase):
    __tablename__ = "example_products"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


class FallbackReview(_FallbackBase):
    __tablename__ = "example_reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("example_products.id"))
    stars: Mapped[int] = mapped_column(Integer)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "stars": self.stars}


class Inventory:
    def __init__(self) -> None:
        self.calls = 0

    async def get_levels(self, product_id: str) -> dict[str, int]:
        self.calls += 1
        return {"warehouse": 5}


class FallbackRepo:
    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions

    async def update(self, product_id: str, data: dict[str, Any], user_id: str) -> dict[str, Any]:
        async with self.sessions() as db:
            product = await db.get(FallbackProduct, product_id)
            for k, v in data.items():
                setattr(product, k, v)
            await db.commit()
            return product.to_dict()


async def test_caching_with_fallback_and_metrics_as_written(service: CacheService, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Second read is a cache hit; update_product invalidates key, pattern and tag; metrics are recorded."""
    rows = [
        FallbackProduct(id="p-1", name="Widget"),
        FallbackReview(id=1, product_id="p-1", stars=4),
        FallbackReview(id=2, product_id="p-1", stars=2),
    ]
    async with sqlite_database(_FallbackBase, *rows, path=tmp_path / "ex.db") as sessions:
        inventory = Inventory()

        class UserProductService(fallback_block(FallbackProduct, FallbackReview)):  # type: ignore[misc]
            def __init__(self, db: Any) -> None:
                super().__init__(db)
                self.inventory_repository = inventory
                self.repository = FallbackRepo(sessions)

            async def get_related_products(self, product_id: str) -> list[str]:
                return ["p-2"]

            def _calculate_rating(self, reviews: list[Any]) -> float:
                return sum(r.stars for r in reviews) / len(reviews)

        metrics = MetricsService()
        with get_registry().override("metrics_service", metrics):
            async with sessions() as db:
                svc = UserProductService(db)
                first = await svc.get_product_with_details("p-1")
                second = await svc.get_product_with_details("p-1")
                assert first == second
                assert first["calculated_rating"] == 3.0
                assert first["product"] == {"id": "p-1", "name": "Widget"}
                assert inventory.calls == 1  # the second read came from the cache
                assert await svc.get_product_with_details("missing") is None

                await service.set("products:list:all", ["p-1"], ttl=60)
                await service.set("product:summary:p-1", "s", ttl=60, tags=["product:p-1"])
                updated = await svc.update_product("p-1", {"name": "Gadget"}, user_id="u-1")
                assert updated["name"] == "Gadget"
                assert await service.get("product:details:p-1") is None
                assert await service.get("products:list:all") is None
                assert await service.get("product:summary:p-1") is None

                third = await svc.get_product_with_details("p-1")
                assert third["product"]["name"] == "Gadget"
                assert inventory.calls == 2
            assert (
                metrics.get_histogram_quantile(
                    "product_details_duration_seconds", 0.5, {"cache_hit": "True"}
                )
                > 0
            )

