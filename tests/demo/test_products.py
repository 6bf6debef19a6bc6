"""HTTP-level tests of the demo's cached products (memory cache, and a real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from crown_nexus.core.cache import content_hash
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client


def _data(resp: Any) -> Any:
    body = resp.json()
    return body["data"] if isinstance(body, dict) and "data" in body and "success" in body else body


@pytest.fixture(params=["memory", "redis"])
async def client(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A client of a fresh demo app whose product cache is memory, or a real Redis."""
    options: dict[str, Any] = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/p.db"}
    if request.param == "redis":
        options["REDIS_URI"] = request.getfixturevalue("redis_url")
        options["CACHE_DEFAULT_BACKEND"] = "redis"
        import redis.asyncio as aioredis

        raw = aioredis.Redis.from_url(options["REDIS_URI"])
        await raw.flushdb()
        await raw.aclose()
    app = create_app(Settings(**options))
    async with app_client(app) as c:
        c.app = app
        yield c


async def test_product_miss_then_hit(client: Any) -> None:
    """The first read is a miss, the second a hit with the same body and ETag."""
    first = await client.get("/products/1")
    assert first.status_code == 200
    assert first.headers["X-Cache"] == "miss"
    assert _data(first) == {"id": 1, "name": "Hammer", "category": "tools", "price_cents": 1999}
    second = await client.get("/products/1")
    assert second.headers["X-Cache"] == "hit"
    assert _data(second) == _data(first)
    assert second.headers["ETag"] == first.headers["ETag"] == f'"{content_hash(_data(first))}"'


async def test_etag_not_modified(client: Any) -> None:
    """If-None-Match with the current ETag answers 304 without a body."""
    first = await client.get("/products/2")
    again = await client.get("/products/2", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.content == b""


async def test_listing_is_cached_per_category(client: Any) -> None:
    """Listings are cached per category filter."""
    tools = await client.get("/products", params={"category": "tools"})
    assert tools.headers["X-Cache"] == "miss"
    assert [p["id"] for p in _data(tools)] == [1, 2]
    assert (await client.get("/products", params={"category": "tools"})).headers["X-Cache"] == "hit"
    everything = await client.get("/products")
    assert everything.headers["X-Cache"] == "miss"
    assert [p["id"] for p in _data(everything)] == [1, 2, 3, 4]


async def test_update_invalidates_by_key_pattern_and_tag(client: Any) -> None:
    """PUT invalidates the item (key), every listing (pattern) and the tag; next reads miss and see the change."""
    await client.get("/products/1")
    await client.get("/products", params={"category": "tools"})
    await client.get("/products")
    cache = client.app.state.cache_service
    # an extra entry tagged with the product, e.g. a derived view
    await cache.set("products:derived:1", "x", ttl=60, tags=["product:1"])

    resp = await client.put("/products/1", json={"price_cents": 2499})
    assert resp.status_code == 200
    assert _data(resp)["price_cents"] == 2499
    assert int(resp.headers["X-Cache-Invalidated"]) == 4
    assert await cache.get("products:derived:1") is None

    item = await client.get("/products/1")
    assert item.headers["X-Cache"] == "miss"
    assert _data(item)["price_cents"] == 2499
    listing = await client.get("/products", params={"category": "tools"})
    assert listing.headers["X-Cache"] == "miss"
    assert _data(listing)[0]["price_cents"] == 2499
    assert (await client.get("/products/1")).headers["X-Cache"] == "hit"


async def test_client_mistakes_are_4xx(client: Any) -> None:
    """Unknown ids are 404 and bad input 422, with the standard error body."""
    missing = await client.get("/products/999")
    assert missing.status_code == 404
    assert missing.json()["code"] == "RESOURCE_NOT_FOUND"
    assert (await client.get("/products/abc")).status_code == 422
    bad = await client.put("/products/1", json={"price_cents": -5})
    assert bad.status_code == 422
    assert bad.json()["success"] is False
    assert (await client.put("/products/999", json={"name": "x"})).status_code == 404
