"""HTTP-level tests of the demo's cached products (memory cache, and a real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from crown_nexus.core.cache import content_hash
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.demo._auth import USER, bearer


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
        c.headers.update(await bearer(c))  # updates need product:update (the demo admin)
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
    # the SPEC §3 envelope changes bytes per response (timestamp): a weak validator of the data
    assert second.headers["ETag"] == first.headers["ETag"] == f'W/"{content_hash(_data(first))}"'


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


IDENTITY = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip"}


async def _big_listing(client: Any) -> None:
    """Give every product a long name so the listing is large enough to be gzipped."""
    for pid in (1, 2, 3, 4):
        resp = await client.put(f"/products/{pid}", json={"name": f"{pid}" + "n" * 199})
        assert resp.status_code == 200


async def test_gzip_and_identity_representations_have_distinct_etags(client: Any) -> None:
    """Attack: the gzip body must not share the identity body's ETag; both Vary on encoding."""
    await _big_listing(client)
    plain = await client.get("/products", headers=IDENTITY)
    zipped = await client.get("/products", headers=GZIP)
    assert plain.status_code == zipped.status_code == 200
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert _data(zipped) == _data(plain)
    digest = content_hash(_data(plain))
    assert plain.headers["ETag"] == f'W/"{digest}"'
    assert zipped.headers["ETag"] == f'W/"{digest}-gzip"'
    for resp in (plain, zipped):
        assert "accept-encoding" in resp.headers["vary"].lower()


async def test_gzip_clients_get_their_304(client: Any) -> None:
    """Revalidating the -gzip ETag answers 304 carrying that same ETag (Apache bug 45023)."""
    await _big_listing(client)
    zipped = await client.get("/products", headers=GZIP)
    tag = zipped.headers["ETag"]
    again = await client.get("/products", headers={**GZIP, "If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == tag
    assert "accept-encoding" in again.headers["vary"].lower()
    plain_tag = (await client.get("/products", headers=IDENTITY)).headers["ETag"]
    cross = await client.get("/products", headers={**IDENTITY, "If-None-Match": plain_tag})
    assert cross.status_code == 304 and cross.headers["ETag"] == plain_tag


async def test_if_none_match_uses_weak_comparison_lists_and_star(client: Any) -> None:
    """``*``, W/ tags, strong tags and comma lists all match per RFC 9110 §13.1.2."""
    first = await client.get("/products/2")
    digest = content_hash(_data(first))
    for field in (
        "*",
        f'"{digest}"',
        f'W/"{digest}"',
        f'"stale", W/"{digest}-gzip"',
        f' "a,b" ,  , W/"{digest}"',
    ):
        resp = await client.get("/products/2", headers={"If-None-Match": field})
        assert resp.status_code == 304, field
        assert resp.content == b""


async def test_if_none_match_stale_or_malformed_answers_200(client: Any) -> None:
    """A stale tag, a changed resource or a malformed field gives the full 200, never a 5xx."""
    first = await client.get("/products/3")
    tag = first.headers["ETag"]
    fields: list[str | bytes] = ['"nope"', "W/", '"unterminated', b'"\xff\x01"', ",,,", 'w/"x"']
    for field in (*fields, "**", b"\x80\xfe"):
        resp = await client.get("/products/3", headers={"If-None-Match": field})
        assert resp.status_code == 200, field
    await client.put("/products/3", json={"price_cents": 1})
    changed = await client.get("/products/3", headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != tag


async def test_update_needs_credentials_and_product_update(client: Any) -> None:
    """An anonymous PUT is a 401 and a user without ``product:update`` a 403; the price stays."""
    before = _data(await client.get("/products/1"))["price_cents"]
    anonymous = await client.put(
        "/products/1", json={"price_cents": 1}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401, anonymous.text
    as_user = await bearer(client, USER)
    denied = await client.put("/products/1", json={"price_cents": 1}, headers=as_user)
    assert denied.status_code == 403, denied.text
    assert _data(await client.get("/products/1"))["price_cents"] == before
