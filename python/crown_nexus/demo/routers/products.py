"""Products read through the cache (guide §9), built only from the public API.

* ``GET /products/{id}``: cache-aside on ``products:product:<id>`` (``generate_model_key``),
  tagged ``products`` and ``product:<id>``.
* ``GET /products?category=``: cache-aside on ``generate_list_key(prefix="products",
  model_name="product", filters={"category": ...})``, tagged ``products`` and
  ``category:<category>``.
* ``PUT /products/{id}``: updates the row, then invalidates by **key** (the product's entry),
  by **pattern** (every list, ``products:product:list*``) and by **tag** (``product:<id>``).

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
from sqlalchemy.ext.asyncio import AsyncSession

from crown_nexus.core.cache import CacheService
from crown_nexus.core.cache.etags import if_none_match, make_etag
from crown_nexus.core.cache.keys import generate_list_key, generate_model_key
from crown_nexus.core.exceptions import ResourceNotFoundException
from crown_nexus.demo.db import get_db
from crown_nexus.demo.models_products import SEED_PRODUCTS, Product

__all__ = ["LIST_PATTERN", "MAX_INT64", "install", "item_key", "list_key", "router"]

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
async def update_product(
    product_id: ProductId,
    update: ProductUpdate,
    request: Request,
    response: Response,
    db: AsyncSession = Depends(get_db),
) -> Any:
    """Update a product, then invalidate its entry (key), every listing (pattern) and its tag."""
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
    response.headers["X-Cache-Invalidated"] = str(removed)
    return product.to_dict()


async def _seed(app: Any) -> None:
    async with app.state.sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(Product))
        if not count:
            session.add_all(Product(**row) for row in SEED_PRODUCTS)
            await session.commit()


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
    app.include_router(router)
    app.router.lifespan_context = _with_products(app.router.lifespan_context)
    return app
