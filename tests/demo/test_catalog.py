"""HTTP-level tests of the demo's paginated catalogue (offset and cursor listings)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from crown_nexus.demo.app import create_app
from crown_nexus.demo.models_products import Product
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

ERROR_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}
EXTRA = [
    {"id": i, "name": f"Item {i:02d}", "category": ("tools", "home", "garden")[i % 3], "price_cents": 100 * (i % 5)}
    for i in range(5, 31)
]


def _data(resp: Any) -> Any:
    body = resp.json()
    return body["data"] if isinstance(body, dict) and body.get("success") is True else body


def _assert_error(resp: Any, code: str) -> dict[str, Any]:
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert set(body) == ERROR_KEYS and body["success"] is False and body["code"] == code
    return body


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A client of a fresh demo app whose catalogue holds the 4 seeded + 26 extra products."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/c.db", secret_key="catalog-test-key"))
    async with app_client(app) as c:
        async with app.state.sessionmaker() as session:
            session.add_all(Product(**row) for row in EXTRA)
            await session.commit()
        c.app = app
        yield c


async def test_offset_pages_and_metadata(client: Any) -> None:
    """Page 2 of 30 products by 7 has ids 8-14 and the guide's metadata."""
    resp = await client.get("/catalog/products", params={"page": 2, "page_size": 7})
    assert resp.status_code == 200
    data = _data(resp)
    assert [p["id"] for p in data["items"]] == list(range(8, 15))
    assert data["metadata"] == {
        "page": 2, "page_size": 7, "total": 30, "pages": 5, "has_next": True, "has_prev": True,
    }
    last = _data(await client.get("/catalog/products", params={"page": 5, "page_size": 7}))
    assert [p["id"] for p in last["items"]] == [29, 30]
    assert last["metadata"]["has_next"] is False
    beyond = _data(await client.get("/catalog/products", params={"page": 9, "page_size": 7}))
    assert beyond["items"] == [] and beyond["metadata"]["total"] == 30


async def test_offset_sort_descending_with_tie_break(client: Any) -> None:
    """sort=-price_cents,name orders by price desc, then name, then id."""
    resp = await client.get("/catalog/products", params={"page_size": 100, "sort": "-price_cents,name"})
    items = _data(resp)["items"]
    keys = [(-p["price_cents"], p["name"], p["id"]) for p in items]
    assert keys == sorted(keys) and len(items) == 30


async def test_cursor_walks_every_product_once_and_back(client: Any) -> None:
    """Following next_cursor visits all 30 products once in order; prev_cursor returns the previous page."""
    seen: list[int] = []
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 8, "sort": "category,-price_cents"}
        if cursor:
            params["cursor"] = cursor
        data = _data(await client.get("/catalog/products/cursor", params=params))
        pages.append(data)
        seen += [p["id"] for p in data["items"]]
        if not data["metadata"]["has_next"]:
            break
        cursor = data["metadata"]["next_cursor"]
    assert sorted(seen) == list(range(1, 31)) and len(seen) == 30
    assert pages[0]["metadata"]["has_prev"] is False and pages[0]["metadata"]["total"] == 30
    back = _data(
        await client.get(
            "/catalog/products/cursor",
            params={"limit": 8, "sort": "category,-price_cents", "cursor": pages[-1]["metadata"]["prev_cursor"]},
        )
    )
    assert back["items"] == pages[-2]["items"]


async def test_bad_cursor_is_422_invalid_cursor(client: Any) -> None:
    """A garbage cursor answers 422 INVALID_CURSOR with the SPEC §3 body."""
    body = _assert_error(await client.get("/catalog/products/cursor", params={"cursor": "not-a-cursor"}), "INVALID_CURSOR")
    assert body["details"]["field"] == "cursor"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


async def test_tampered_cursor_is_422(client: Any) -> None:
    """Flipping a bit anywhere in a valid cursor (version, nonce, ciphertext, tag) or cutting it is detected."""
    first = _data(await client.get("/catalog/products/cursor", params={"limit": 3}))
    raw = _unb64(first["metadata"]["next_cursor"])
    forged = []
    for i in (0, 5, 20, len(raw) // 2, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        forged.append(_b64(bytes(flipped)))
    forged += [_b64(raw[:-1]), _b64(raw[:29]), _b64(raw + b"\x00")]
    for cursor in forged:
        _assert_error(await client.get("/catalog/products/cursor", params={"cursor": cursor}), "INVALID_CURSOR")


async def test_cursor_does_not_reveal_sort_values(client: Any) -> None:
    """A cursor from a listing sorted by name holds neither the product name nor its id in readable form."""
    first = _data(await client.get("/catalog/products/cursor", params={"limit": 3, "sort": "name"}))
    last_name = first["items"][-1]["name"]
    cursor = first["metadata"]["next_cursor"]
    raw = _unb64(cursor)
    assert last_name.encode() not in raw and last_name not in cursor
    assert b'"s"' not in raw and b'"v"' not in raw  # no readable JSON payload at all


async def test_cursor_for_another_sort_is_422(client: Any) -> None:
    """A cursor made for one sort order is refused for another."""
    first = _data(await client.get("/catalog/products/cursor", params={"limit": 3, "sort": "name"}))
    resp = await client.get(
        "/catalog/products/cursor", params={"limit": 3, "sort": "-name", "cursor": first["metadata"]["next_cursor"]}
    )
    _assert_error(resp, "INVALID_CURSOR")


async def test_cursor_from_another_key_is_422(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A cursor signed by an app with another secret key is refused."""
    async def cursor_of(key: str, name: str) -> tuple[Any, str]:
        app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{name}.db", secret_key=key))
        async with app_client(app) as c:
            data = _data(await c.get("/catalog/products/cursor", params={"limit": 2}))
            return app, data["metadata"]["next_cursor"]

    _, foreign = await cursor_of("key-one", "a")
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/b.db", secret_key="key-two"))
    async with app_client(app) as c:
        _assert_error(await c.get("/catalog/products/cursor", params={"cursor": foreign}), "INVALID_CURSOR")


async def test_unknown_sort_field_is_422(client: Any) -> None:
    """An unknown (or not allowed) sort field answers 422 INVALID_SORT_FIELD naming the field."""
    body = _assert_error(await client.get("/catalog/products", params={"sort": "password"}), "INVALID_SORT_FIELD")
    assert body["details"]["field"] == "password"
    assert body["details"]["allowed"] == ["category", "id", "name", "price_cents"]
    _assert_error(await client.get("/catalog/products/cursor", params={"sort": "-secret"}), "INVALID_SORT_FIELD")


BAD_PARAMS = [
    ("/catalog/products", {"page": 0}),
    ("/catalog/products", {"page_size": 0}),
    ("/catalog/products", {"page_size": 101}),
    ("/catalog/products", {"page": 10**9}),
    ("/catalog/products", {"sort": "-"}),
    ("/catalog/products", {"sort": "name," * 60}),
    ("/catalog/products/cursor", {"limit": 0}),
    ("/catalog/products/cursor", {"limit": 1000}),
    ("/catalog/products/cursor", {"cursor": "x" * 5000}),
]


async def test_out_of_range_params_are_422(client: Any) -> None:
    """Page, page size, limit, sort or cursor out of range answer 422 INVALID_PAGINATION_PARAMS."""
    for path, params in BAD_PARAMS:
        _assert_error(await client.get(path, params=params), "INVALID_PAGINATION_PARAMS")


async def test_non_integer_page_is_fastapi_422(client: Any) -> None:
    """A non-integer page is FastAPI's request validation error, still the SPEC §3 body."""
    _assert_error(await client.get("/catalog/products", params={"page": "two"}), "VALIDATION_ERROR")
