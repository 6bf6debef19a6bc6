"""Guide §4/§14 "Caching with Fallback and Metrics", run as written, on memory and real Redis.

The example's ``ProductService`` is executed verbatim; the user supplies the rest of their
application: ``db``, ``select``, ``Product``/``Review`` tables, ``inventory_repository``,
``get_related_products``, ``_calculate_rating`` and ``repository``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.core.cache import CacheService
from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.core.metrics.service import MetricsService

EXAMPLE = '''
from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.cache.exceptions import CacheOperationException
from crown_nexus.logging import get_logger
from crown_nexus.core.error import handle_exception
import time

logger = get_logger("app.services.product_service")

class ProductService:
    def __init__(self, db):
        self.db = db
        self.cache_service = get_service("cache_service")
        self.metrics_service = get_service("metrics_service")

    async def get_product_with_details(self, product_id: str):
        """Get product with complete details, using caching with proper fallback.

        This method demonstrates caching with:
        1. Proper key generation
        2. Error handling with fallback
        3. Metrics tracking
        4. Cache invalidation on updates
        """
        logger.info("Fetching product with details", product_id=product_id)

        # Define cache key
        cache_key = f"product:details:{product_id}"

        # Start metrics timer
        start_time = time.monotonic()
        cache_hit = False

        try:
            # Try to get from cache first
            cached_data = await self.cache_service.get(cache_key)

            if cached_data is not None:
                logger.debug("Cache hit for product details", product_id=product_id)
                cache_hit = True
                return cached_data

            logger.debug("Cache miss for product details", product_id=product_id)

            # Get from database
            product = await self.db.execute(
                select(Product).where(Product.id == product_id)
            )
            product = product.scalar_one_or_none()

            if not product:
                logger.warning("Product not found", product_id=product_id)
                return None

            # Get additional data
            reviews = await self.db.execute(
                select(Review).where(Review.product_id == product_id)
            )
            reviews = list(reviews.scalars().all())

            inventory = await self.inventory_repository.get_levels(product_id)
            related_products = await self.get_related_products(product_id)

            # Combine into a complete response
            result = {
                "product": product.to_dict(),
                "reviews": [r.to_dict() for r in reviews],
                "inventory": inventory,
                "related_products": related_products,
                "calculated_rating": self._calculate_rating(reviews)
            }

            # Cache the result (15 minutes TTL)
            try:
                await self.cache_service.set(
                    cache_key,
                    result,
                    ttl=900,
                    tags=["products", f"product:{product_id}"]
                )
            except CacheOperationException as cache_err:
                # Log but don't fail if caching fails
                logger.warning(
                    "Failed to cache product details",
                    product_id=product_id,
                    error=str(cache_err)
                )

            return result

        except Exception as e:
            # Handle and report the exception
            handle_exception(e, product_id=product_id)
            logger.error(
                "Error fetching product details",
                product_id=product_id,
                error=str(e)
            )
            raise

        finally:
            # Record metrics regardless of success/failure
            duration = time.monotonic() - start_time
            self.metrics_service.observe_histogram(
                "product_details_duration_seconds",
                duration,
                {
                    "cache_hit": str(cache_hit),
                    "product_id": product_id[:5]  # First 5 chars for cardinality
                }
            )

    async def update_product(self, product_id: str, data: dict, user_id: str):
        """Update product data and invalidate related caches."""
        logger.info("Updating product", product_id=product_id, user_id=user_id)

        try:
            # Update in database
            product = await self.repository.update(product_id, data, user_id)

            # Invalidate caches
            try:
                # Invalidate specific product cache
                await self.cache_service.delete(f"product:details:{product_id}")

                # Invalidate any list caches that might contain this product
                await self.cache_service.invalidate_pattern(f"products:list:*")

                # If using Redis with tags
                redis_backend = self.cache_service._get_backend("redis")
                if hasattr(redis_backend, "get_set_members"):
                    # Invalidate all caches tagged with this product
                    tag_key = f"cache:tag:product:{product_id}"
                    tagged_keys = await redis_backend.get_set_members(tag_key)
                    if tagged_keys:
                        await self.cache_service.delete_many(tagged_keys)
                        await redis_backend.delete(tag_key)

            except Exception as cache_err:
                # Log but continue if cache invalidation fails
                logger.warning(
                    "Failed to invalidate cache for product update",
                    product_id=product_id,
                    error=str(cache_err)
                )

            # Audit log the update
            audit_service = get_service("audit_service")
            await audit_service.log_action(
                user_id=user_id,
                action="product_update",
                resource_id=product_id,
                details={"fields_updated": list(data.keys())}
            )

            return product

        except Exception as e:
            handle_exception(e, product_id=product_id, user_id=user_id)
            raise
'''


class _Base(DeclarativeBase):
    pass


class Product(_Base):
    __tablename__ = "example_products"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


class Review(_Base):
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


class Repo:
    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions

    async def update(self, product_id: str, data: dict[str, Any], user_id: str) -> dict[str, Any]:
        async with self.sessions() as db:
            product = await db.get(Product, product_id)
            for k, v in data.items():
                setattr(product, k, v)
            await db.commit()
            return product.to_dict()


async def test_caching_with_fallback_and_metrics(service: CacheService, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Second read is a cache hit; update_product invalidates key, pattern and tag; metrics are recorded."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'ex.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(_Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as db:
        db.add(Product(id="p-1", name="Widget"))
        db.add_all(
            [Review(id=1, product_id="p-1", stars=4), Review(id=2, product_id="p-1", stars=2)]
        )
        await db.commit()
    namespace: dict[str, Any] = {
        "__name__": "example",
        "select": select,
        "Product": Product,
        "Review": Review,
    }
    exec(compile(EXAMPLE, "<guide: Caching with Fallback and Metrics>", "exec"), namespace)
    inventory = Inventory()

    class UserProductService(namespace["ProductService"]):  # type: ignore[misc]
        def __init__(self, db: Any) -> None:
            super().__init__(db)
            self.inventory_repository = inventory
            self.repository = Repo(sessions)

        async def get_related_products(self, product_id: str) -> list[str]:
            return ["p-2"]

        def _calculate_rating(self, reviews: list[Any]) -> float:
            return sum(r.stars for r in reviews) / len(reviews)

    metrics = MetricsService()
    try:
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
    finally:
        await engine.dispose()
