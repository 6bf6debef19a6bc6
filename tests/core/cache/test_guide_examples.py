"""Every code example of guide §9, run as written (``app.`` -> ``crown_nexus.``), on memory and Redis.

Each example is kept verbatim in a string and executed in a namespace that supplies the user's
own objects (repositories, ``logger``, ``Product``, ``db``), exactly as an application would.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import Integer, String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.core.cache import CacheService
from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.core.metrics.service import MetricsService
from crown_nexus.logging import get_logger

BASIC_USAGE = """
from crown_nexus.core.dependency_manager import get_service

# Get the cache service
cache_service = get_service("cache_service")

# Basic cache operations
async def get_user_profile(user_id: str):
    # Try to get from cache first
    cache_key = f"user:profile:{user_id}"
    cached_profile = await cache_service.get(cache_key)

    if cached_profile is not None:
        return cached_profile

    # Not in cache, fetch from database
    profile = await user_repository.get_profile(user_id)

    # Store in cache for future requests (TTL: 10 minutes)
    await cache_service.set(cache_key, profile, ttl=600)

    return profile
"""

DECORATORS = """
from crown_nexus.core.cache import cached, invalidate_cache

# Cache the result of this function for 5 minutes
@cached(ttl=300)
async def get_product_details(product_id: str):
    # This expensive operation will only run on cache misses
    result = await product_repository.get_details(product_id)
    return result

# Invalidate cache entries when data changes
@invalidate_cache(pattern="product:*")
async def update_product(product_id: str, data: dict):
    # This will invalidate all cache keys matching the pattern
    await product_repository.update(product_id, data)
    return {"status": "updated"}
"""

ADVANCED = """
from crown_nexus.core.cache import cached, cache_aside, memoize
from crown_nexus.core.cache.keys import generate_model_key, generate_list_key

# Memoize an expensive function (in-memory caching)
@memoize(ttl=60)  # 60 seconds
def calculate_complex_value(input_value: int):
    # Complex calculation
    return result

# Cache using custom key generation
@cache_aside(
    key_func=lambda category_id, **kwargs: generate_list_key(
        prefix="products",
        model_name="product",
        filters={"category_id": category_id}
    ),
    ttl=600,
    tags=["products", "catalog"]
)
async def get_products_by_category(category_id: str):
    # Fetch from database
    return await product_repository.list_by_category(category_id)
"""

TAGS = """
from crown_nexus.core.dependency_manager import get_service

cache_service = get_service("cache_service")

# Invalidate all product-related cache entries
async def clear_product_cache():
    # Get Redis backend
    redis_backend = cache_service._get_backend("redis")

    # Get all keys with product tag
    tag_key = "cache:tag:products"
    keys = await redis_backend.get_set_members(tag_key)

    # Delete all keys
    if keys:
        await cache_service.delete_many(keys)

        # Also remove the tag itself
        await redis_backend.delete(tag_key)

    return {"invalidated": len(keys)}
"""

EXCEPTIONS = """
from crown_nexus.core.cache.exceptions import CacheException, CacheOperationException

async def get_cached_data(key: str):
    try:
        cache_service = get_service("cache_service")
        return await cache_service.get(key)
    except CacheOperationException as e:
        logger.warning(f"Cache operation failed: {e}")
        # Fallback to database
        return await fetch_from_database()
    except CacheException as e:
        logger.error(f"Cache system error: {e}")
        # More severe error, may need to be reported
        raise
"""

ERROR_INTEGRATION = """
from crown_nexus.core.cache.exceptions import CacheException, CacheOperationException

try:
    value = await cache_service.get("my_key")
except CacheOperationException as e:
    # Handle specific operation errors
    logger.warning(f"Cache operation failed: {e}")
    # Fallback logic
except CacheException as e:
    # Handle general cache errors
    logger.error(f"Cache error: {e}")
    # More severe error handling
"""

METRICS = """
# These metrics are available automatically
metrics_service = get_service("metrics_service")

# Get hit rate over the last 5 minutes
hit_rate = metrics_service.get_counter_rate("cache_hit_total") / \\
           metrics_service.get_counter_rate("cache_operations_total")

# Get p95 latency for cache operations
latency = metrics_service.get_histogram_quantile(
    "cache_operation_duration_seconds",
    0.95,
    {"component": "product_service"}
)

# Get miss count by backend
miss_count = metrics_service.get_counter_sum(
    "cache_miss_total",
    {"backend": "redis"}
)
"""

DEPENDENCY_INJECTION = """
# In service classes
class ProductService:
    def __init__(self, db):
        self.db = db
        self.cache_service = get_service("cache_service")

    async def get_product(self, product_id):
        # Use cache service
        cache_key = f"product:{product_id}"
        product = await self.cache_service.get(cache_key)
        if product:
            return product

        # Cache miss - get from database
        product = await self.db.execute(
            select(Product).where(Product.id == product_id)
        )
        product = product.scalar_one_or_none()

        # Cache for next time
        if product:
            await self.cache_service.set(cache_key, product, ttl=300)

        return product
"""


class _Base(DeclarativeBase):
    pass


class Product(_Base):
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


def _run(code: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "guide_example", **names}
    exec(compile(code, "<guide §9>", "exec"), namespace)
    return namespace


async def _run_async(code: str, **names: Any) -> dict[str, Any]:
    """Run top-level-await example code (as in a notebook or an async function body)."""
    body = "async def __example__():\n" + "".join(f"    {line}\n" for line in code.splitlines())
    body += "    return locals()\n"
    namespace = _run(body, **names)
    result: dict[str, Any] = await namespace["__example__"]()
    return result


async def test_basic_usage(service: CacheService) -> None:
    """Basic Usage: the second call is served from the cache."""
    repo = Repository()
    ns = _run(BASIC_USAGE, user_repository=repo)
    assert await ns["get_user_profile"]("u1") == {"id": "u1", "name": "Ada"}
    assert await ns["get_user_profile"]("u1") == {"id": "u1", "name": "Ada"}
    assert repo.calls == [("get_profile", "u1")]
    assert await service.get("user:profile:u1") == {"id": "u1", "name": "Ada"}


async def test_decorators(service: CacheService) -> None:
    """Using Decorators: cached runs once per id; invalidate_cache removes product:* keys."""
    repo = Repository()
    ns = _run(DECORATORS, product_repository=repo)
    assert await ns["get_product_details"]("p1") == {"id": "p1", "details": "..."}
    await ns["get_product_details"]("p1")
    assert repo.calls == [("get_details", "p1")]
    await service.set("product:p1:summary", "cached", ttl=60)
    assert await ns["update_product"]("p1", {"name": "new"}) == {"status": "updated"}
    assert await service.get("product:p1:summary") is None


async def test_advanced_patterns(service: CacheService) -> None:
    """Advanced: memoize caches a sync function; cache_aside stores under generate_list_key with tags."""
    repo = Repository()
    ns = _run(ADVANCED, product_repository=repo, result=99)
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
    ns = _run(TAGS)
    assert await ns["clear_product_cache"]() == {"invalidated": 2}
    assert await service.get_many(["product:1", "product:2", "order:1"]) == {"order:1": 3}
    assert await ns["clear_product_cache"]() == {"invalidated": 0}


async def test_exception_handling(service: CacheService) -> None:
    """Exception Handling: a normal read returns the value; nothing raises when Redis works."""
    from crown_nexus.core.dependency_manager import get_service

    async def fetch_from_database() -> str:
        return "from-db"

    await service.set("k", "cached", ttl=60)
    ns = _run(
        EXCEPTIONS,
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
        ns = _run(
            EXCEPTIONS,
            get_service=get_service,
            logger=get_logger("guide"),
            fetch_from_database=fetch_from_database,
        )
        assert await ns["get_cached_data"]("k") == "from-db"


async def test_error_handling_integration(service: CacheService) -> None:
    """System Integration / Error Handling: the snippet runs and reads the value."""
    await service.set("my_key", "v", ttl=60)
    ns = await _run_async(ERROR_INTEGRATION, cache_service=service, logger=get_logger("guide"))
    assert ns["value"] == "v"


async def test_metrics_integration(service: CacheService) -> None:
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
        ns = _run(METRICS, get_service=get_service)
    assert ns["hit_rate"] == pytest.approx(8 / 17)
    assert ns["latency"] == 0.0  # no samples labelled component=product_service
    expected_misses = 8 if service.active_backend_name == "redis" else 0
    assert ns["miss_count"] == expected_misses


async def test_dependency_injection_product_service(service: CacheService, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Dependency Injection: ProductService caches an ORM Product and serves it on the next call."""
    from crown_nexus.core.dependency_manager import get_service

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'guide.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(_Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as db:
        db.add(Product(id=1, name="Widget"))
        await db.commit()
    try:
        ns = _run(DEPENDENCY_INJECTION, get_service=get_service, select=select, Product=Product)
        async with sessions() as db:
            product_service = ns["ProductService"](db)
            first = await product_service.get_product(1)
            assert (first.id, first.name) == (1, "Widget")
        # the database is gone for the next call: only the cache can answer
        await engine.dispose()
        async with sessions() as db:
            product_service = ns["ProductService"](None)
            cached_product = await product_service.get_product(1)
            assert isinstance(cached_product, Product)
            assert (cached_product.id, cached_product.name) == (1, "Widget")
    finally:
        await engine.dispose()
