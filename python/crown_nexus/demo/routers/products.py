"""Products read through the cache (guide §9), built only from the public API.

* ``GET /products/{id}``: cache-aside on ``products:product:<id>`` (``generate_model_key``),
  tagged ``products`` and ``product:<id>``.
* ``GET /products?category=``: cache-aside on ``generate_list_key(prefix="products",
  model_name="product", filters={"category": ...})``, tagged ``products`` and
  ``category:<category>``.
* ``PUT /products/{id}`` (authenticated, ``product:update``): updates the row, then invalidates
  by **key** (the product's entry), by **pattern** (every list, ``products:product:list*``) and by
  **tag** (``product:<id>``), and drops the product's price from :class:`ProductPrices`.
* :class:`ProductPrices`: the price lookup of ``POST /orders`` through ``@cached`` (guide §9
  "Using Decorators") on the shared ``cache_service``, keyed by the database it reads (its
  ``__cache_key__``), its queries timed with ``@track_db_select`` (guide §6).

Every read answers ``X-Cache: hit|miss`` and an ``ETag`` (``make_etag``: ``content_hash`` of the
data, the same in every worker; the response formatter weakens it, compression appends ``-gzip``,
see :mod:`crown_nexus.core.cache.etags`). ``If-None-Match`` is evaluated by
:func:`~crown_nexus.core.cache.etags.if_none_match` (weak comparison, ``*``, lists, the ``-gzip``
variant): a match answers 304 with the ETag the client holds. The app has its own
:class:`~crown_nexus.core.cache.CacheService` built from its settings (Redis when ``REDIS_URI`` is
set, with the memory fallback), started and stopped with the app (:func:`install`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crown_nexus.core.cache import CacheService, cached, content_hash, get_cache_service
from crown_nexus.core.cache.etags import if_none_match, make_etag
from crown_nexus.core.cache.keys import generate_list_key, generate_model_key
from crown_nexus.core.exceptions import ResourceNotFoundException
from crown_nexus.core.metrics import track_db_select
from crown_nexus.core.permissions import Permission, require_permission
from crown_nexus.core.security.dependencies import get_current_user_with_permissions
from crown_nexus.demo.db import get_db
from crown_nexus.demo.models_products import SEED_PRODUCTS, Product

__all__ = [
    "LIST_PATTERN",
    "MAX_INT64",
    "PRICE_TTL",
    "ProductPrices",
    "install",
    "item_key",
    "list_key",
    "router",
]

router = APIRouter(prefix="/products", tags=["demo: products (cache)"])

TTL = 300
LIST_PATTERN = "products:product:list*"
#: the largest id or amount the database holds (a signed 64-bit integer); larger input is a 422
MAX_INT64 = 2**63 - 1
#: a product id in the path: 1 .. MAX_INT64 (else 422, never the driver's OverflowError)
ProductId = Annotated[int, Path(ge=1, le=MAX_INT64, description="The product's id")]


class ProductUpdate(BaseModel):
    """Fields a ``PUT /products/{id}`` may change (all optional)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: str | None = Field(default=None, min_length=1, max_length=100)
    price_cents: int | None = Field(default=None, ge=0, le=MAX_INT64)


def item_key(product_id: int) -> str:
    """The cache key of one product."""
    return generate_model_key("products", "product", product_id)


def list_key(category: str | None) -> str:
    """The cache key of a listing (all products, or one category)."""
    filters = {"category": category} if category else None
    return generate_list_key(prefix="products", model_name="product", filters=filters)


#: how long a price stays in the shared cache (an update drops it at once in this worker's
#: cache, and in every worker's when the cache is Redis)
PRICE_TTL = 60


def _prices_tags(prices: ProductPrices, product_id: int) -> list[str]:
    return [prices.scope_tag]


class ProductPrices:
    """The prices of one database's products, read through ``@cached``.

    Entries live in the shared ``cache_service`` (Redis when configured, so every worker of the
    app shares them); the instance names itself with ``__cache_key__`` (a digest of the database
    URL), so two apps on two databases never share a price, and every worker on one database
    does. :meth:`forget` drops one price (after an update), :meth:`forget_all` every price of
    the database (after it was seeded).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
        self.sessions = sessions
        self.scope = content_hash(database_url)
        self.scope_tag = f"demo-prices:{self.scope}"

    def __cache_key__(self) -> str:
        """The identity of the database this instance reads (part of every key)."""
        return self.scope

    @cached(ttl=PRICE_TTL, key_prefix="demo", tags=_prices_tags)
    async def price_of(self, product_id: int) -> int | None:
        """The product's price in cents, or ``None`` when there is no such product."""
        return await self._load(product_id)

    @track_db_select(entity="product")
    async def _load(self, product_id: int) -> int | None:
        async with self.sessions() as db:
            price = await db.scalar(select(Product.price_cents).where(Product.id == product_id))
        return None if price is None else int(price)

    async def prices(self, product_ids: list[int]) -> dict[int, int]:
        """``{id: price}`` of the ``product_ids`` that exist."""
        found: dict[int, int] = {}
        for product_id in product_ids:
            price = await self.price_of(product_id)
            if price is not None:
                found[product_id] = price
        return found

    async def forget(self, product_id: int) -> None:
        """Drop the cached price of ``product_id`` (it changed)."""
        await ProductPrices.price_of.invalidate(self, product_id)

    async def forget_all(self) -> None:
        """Drop every cached price of this database (its rows were (re)created)."""
        await get_cache_service().invalidate_tags([self.scope_tag])


def product_prices(request: Request) -> ProductPrices:
    """The app's :class:`ProductPrices` (set up by :func:`install`)."""
    prices: ProductPrices = request.app.state.product_prices
    return prices


def _cache(request: Request) -> CacheService:
    cache: CacheService = request.app.state.cache_service
    return cache


def _respond(request: Request, response: Response, data: Any, hit: bool) -> Any:
    etag = make_etag(data)
    response.headers["X-Cache"] = "hit" if hit else "miss"
    response.headers["ETag"] = etag
    held = if_none_match(request.headers.getlist("if-none-match"), etag)
    if held is not None:
        return Response(
            status_code=304,
            headers={"ETag": held, "X-Cache": response.headers["X-Cache"]},
        )
    return data


@router.get("/{product_id}")
async def get_product(
    product_id: ProductId,
    request: Request,
    response: Response,
    db: AsyncSession = Depends(get_db),
) -> Any:
    """One product, read through the cache (``X-Cache`` says which)."""
    cache = _cache(request)
    key = item_key(product_id)
    data = await cache.get(key)
    if data is not None:
        return _respond(request, response, data, hit=True)
    product = await db.get(Product, product_id)
    if product is None:
        raise ResourceNotFoundException("Product", product_id)
    data = product.to_dict()
    await cache.set(key, data, ttl=TTL, tags=["products", f"product:{product_id}"])
    return _respond(request, response, data, hit=False)


@router.get("")
async def list_products(
    request: Request,
    response: Response,
    category: str | None = Query(default=None, min_length=1, max_length=100),
    db: AsyncSession = Depends(get_db),
) -> Any:
    """Products (optionally of one ``category``), read through the cache."""
    cache = _cache(request)
    key = list_key(category)
    data = await cache.get(key)
    if data is not None:
        return _respond(request, response, data, hit=True)
    query = select(Product).order_by(Product.id)
    if category:
        query = query.where(Product.category == category)
    rows = (await db.execute(query)).scalars().all()
    data = [p.to_dict() for p in rows]
    tags = ["products"] + ([f"category:{category}"] if category else [])
    await cache.set(key, data, ttl=TTL, tags=tags)
    return _respond(request, response, data, hit=False)


@router.put("/{product_id}")
@require_permission(Permission.PRODUCT_UPDATE)
async def update_product(
    product_id: ProductId,
    update: ProductUpdate,
    request: Request,
    response: Response,
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
    db: AsyncSession = Depends(get_db),
) -> Any:
    """Update a product (authenticated, ``product:update``: 401 without credentials, 403
    without the permission), then invalidate its entry (key), every listing (pattern), its tag
    and its cached price."""
    product = await db.get(Product, product_id)
    if product is None:
        raise ResourceNotFoundException("Product", product_id)
    for field, value in update.model_dump(exclude_none=True).items():
        setattr(product, field, value)
    await db.commit()
    cache = _cache(request)
    removed = int(await cache.delete(item_key(product_id)))
    removed += await cache.invalidate_pattern(LIST_PATTERN)
    removed += await cache.invalidate_tags([f"product:{product_id}"])
    await product_prices(request).forget(product_id)
    response.headers["X-Cache-Invalidated"] = str(removed)
    return product.to_dict()


async def _seed(app: Any) -> None:
    async with app.state.sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(Product))
        if not count:
            session.add_all(Product(**row) for row in SEED_PRODUCTS)
            await session.commit()
            await app.state.product_prices.forget_all()  # prices of an earlier table are gone


def _with_products(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state:
            await _seed(app)
            cache: CacheService = app.state.cache_service
            await cache.initialize()
            try:
                yield state
            finally:
                await cache.shutdown()

    return lifespan


def install(app: Any) -> Any:
    """Give ``app`` its product cache (from its settings), the routes and the seeding lifespan."""
    app.state.cache_service = CacheService(app.state.settings, component="products")
    app.state.product_prices = ProductPrices(app.state.sessionmaker, app.state.settings.database_url)
    app.include_router(router)
    app.router.lifespan_context = _with_products(app.router.lifespan_context)
    return app
