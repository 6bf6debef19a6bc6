"""HTTP-level tests of the demo's event-driven order workflow (SQLite, memory event bus)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from crown_nexus.core.events import outbox_table
from crown_nexus.demo.app import create_app
from crown_nexus.demo.models_orders import InventoryReservation
from crown_nexus.demo.routers.orders import PAYMENT_LIMIT_CENTS
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.demo._auth import USER, bearer, register

FINAL = {"completed", "payment_failed"}


def _data(resp: Any) -> Any:
    body = resp.json()
    return body["data"] if isinstance(body, dict) and "data" in body and "success" in body else body


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A client of a fresh demo app on its own SQLite file."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/orders.db"))
    async with app_client(app) as c:
        c.app = app
        c.headers.update(await bearer(c, USER))  # orders are placed by an authenticated user
        yield c


async def _wait_final(client: Any, order_id: str, seconds: float = 10.0) -> dict[str, Any]:
    """Poll until the order reached a final status and its last step ran (4 events)."""
    statuses: list[str] = []
    async with asyncio.timeout(seconds):
        while True:
            order = _data(await client.get(f"/orders/{order_id}"))
            if not statuses or statuses[-1] != order["status"]:
                statuses.append(order["status"])
            if order["status"] in FINAL and len(order["events"]) == 4:
                order["seen_statuses"] = statuses
                return order
            await asyncio.sleep(0.02)


async def test_order_completes_through_events(client: Any) -> None:
    """A small order goes pending → ... → completed, with its events in order."""
    resp = await client.post("/orders", json={"items": [{"product_id": 1, "quantity": 2}]})
    assert resp.status_code == 202
    placed = _data(resp)
    assert placed["status"] == "pending" and placed["total_cents"] == 2 * 1999
    order = await _wait_final(client, placed["id"])
    assert order["status"] == "completed"
    me = _data(await client.get("/users/me"))
    assert order["user_id"] == me["id"]  # the owner is the authenticated caller
    assert order["payment_id"].startswith("pay_") and order["failure_reason"] is None
    assert [e["name"] for e in order["events"]] == [
        "order.created", "inventory.reserved", "payment.succeeded", "order.completed"
    ]


async def test_order_over_limit_fails_payment_and_releases_stock(client: Any) -> None:
    """An order over the card limit ends payment_failed and its reservations are released."""
    quantity = PAYMENT_LIMIT_CENTS // 3450 + 1
    resp = await client.post("/orders", json={"items": [{"product_id": 3, "quantity": quantity}]})
    assert resp.status_code == 202
    order_id = _data(resp)["id"]
    order = await _wait_final(client, order_id)
    assert order["status"] == "payment_failed"
    assert order["failure_reason"] == "amount over the card limit" and order["payment_id"] is None
    assert [e["name"] for e in order["events"]] == [
        "order.created", "inventory.reserved", "payment.failed", "inventory.release_requested"
    ]
    async with client.app.state.sessionmaker() as db:
        statuses = list(await db.scalars(
            select(InventoryReservation.status).where(InventoryReservation.order_id == order_id)
        ))
    assert statuses == ["released"]


async def test_both_outcomes_side_by_side(client: Any) -> None:
    """Concurrent orders each reach their own outcome."""
    small = [{"product_id": 2, "quantity": 1}]
    large = [{"product_id": 4, "quantity": 100}]
    ids = [_data(await client.post("/orders", json={"items": items}))["id"]
           for items in (small, large, small, large)]
    finals = [await _wait_final(client, i) for i in ids]
    assert [o["status"] for o in finals] == ["completed", "payment_failed"] * 2


async def test_unknown_product_is_422_and_publishes_nothing(client: Any) -> None:
    """An order naming an unknown product is rejected and leaves no outbox event."""
    resp = await client.post("/orders", json={"items": [{"product_id": 999, "quantity": 1}]})
    assert resp.status_code == 422
    assert resp.json()["code"] == "VALIDATION_ERROR"
    async with client.app.state.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(outbox_table))).scalar_one()
    assert count == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"items": []}, {"items": [{"product_id": 1, "quantity": 0}]}, {"items": "x"}],
)
async def test_bad_order_body_is_422(client: Any, body: Any) -> None:
    """Malformed order bodies get the 422 error body, never a 500."""
    resp = await client.post("/orders", json=body)
    assert resp.status_code == 422
    assert resp.json()["success"] is False


async def test_unknown_order_is_404(client: Any) -> None:
    """GET of an unknown order id is 404 RESOURCE_NOT_FOUND."""
    resp = await client.get("/orders/nope")
    assert resp.status_code == 404
    assert resp.json()["code"] == "RESOURCE_NOT_FOUND"


async def test_anonymous_cannot_place_or_read_orders(client: Any) -> None:
    """Without credentials POST /orders and GET /orders/{id} are 401 and nothing is stored."""
    placed = _data(await client.post("/orders", json={"items": [{"product_id": 2, "quantity": 1}]}))
    anonymous = {"Authorization": ""}
    post = await client.post(
        "/orders", json={"items": [{"product_id": 1, "quantity": 1}]}, headers=anonymous
    )
    assert post.status_code == 401, post.text
    got = await client.get(f"/orders/{placed['id']}", headers=anonymous)
    assert got.status_code == 401, got.text
    async with client.app.state.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(outbox_table))).scalar_one()
    assert count == 1  # only the authenticated order's event


async def test_body_cannot_name_another_owner(client: Any) -> None:
    """A body ``user_id`` (ordering as someone else) is refused with 422, not silently used."""
    resp = await client.post(
        "/orders", json={"items": [{"product_id": 1, "quantity": 1}], "user_id": "victim"}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "VALIDATION_ERROR"


async def test_other_users_order_is_404_admin_sees_it(client: Any) -> None:
    """User B gets the 404 of a missing order for user A's order; the admin (order:admin) reads it."""
    placed = _data(await client.post("/orders", json={"items": [{"product_id": 2, "quantity": 1}]}))
    other = await register(client, "bob@example.org")
    resp = await client.get(f"/orders/{placed['id']}", headers=other)
    assert resp.status_code == 404, resp.text
    missing = await client.get("/orders/does-not-exist", headers=other)
    assert resp.json()["code"] == missing.json()["code"] == "RESOURCE_NOT_FOUND"
    assert resp.json()["message"] == missing.json()["message"]  # nothing tells them apart
    admin = await bearer(client)
    seen = await client.get(f"/orders/{placed['id']}", headers=admin)
    assert seen.status_code == 200 and _data(seen)["id"] == placed["id"]
    # B's own order is theirs: A gets the 404 in turn
    mine = _data(await client.post("/orders", json={"items": [{"product_id": 2, "quantity": 1}]},
                                   headers=other))
    assert (await client.get(f"/orders/{mine['id']}")).status_code == 404


async def test_prices_come_from_the_cache_and_follow_updates(client: Any) -> None:
    """Order totals use @cached prices; a product update drops the cached price at once."""
    from crown_nexus.demo.routers.products import ProductPrices

    prices: ProductPrices = client.app.state.product_prices
    first = _data(await client.post("/orders", json={"items": [{"product_id": 2, "quantity": 3}]}))
    assert first["total_cents"] == 3 * 799
    key = ProductPrices.price_of.key_for(prices, 2)
    from crown_nexus.core.cache import get_cache_service

    assert await get_cache_service().get(key) == 799  # the price is cached now
    admin = await bearer(client)
    assert (await client.put("/products/2", json={"price_cents": 1000}, headers=admin)).status_code == 200
    assert await get_cache_service().get(key) is None  # dropped by the update
    second = _data(await client.post("/orders", json={"items": [{"product_id": 2, "quantity": 3}]}))
    assert second["total_cents"] == 3 * 1000


async def test_price_reads_are_measured_once_per_miss(client: Any) -> None:
    """@track_db_select(entity="product") counts the price queries; a cached price costs none."""
    def selects(text: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("db_queries_total{")
            and 'entity="product"' in line and 'operation="SELECT"' in line
        )

    order = {"items": [{"product_id": 3, "quantity": 1}, {"product_id": 4, "quantity": 1}]}
    before = selects((await client.get("/metrics")).text)
    assert (await client.post("/orders", json=order)).status_code == 202
    after_miss = selects((await client.get("/metrics")).text)
    assert after_miss == before + 2  # two prices loaded
    assert (await client.post("/orders", json=order)).status_code == 202
    assert selects((await client.get("/metrics")).text) == after_miss  # both from the cache


async def test_a_step_that_fails_once_is_delivered_again(client: Any, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A workflow step refused once by a busy SQLite is run again by the relay: the order still
    completes (it does not stay at inventory_reserved), and its event took two attempts."""
    from sqlalchemy.exc import OperationalError

    from crown_nexus.demo.routers import orders as orders_module

    real = orders_module.process_payment
    calls: list[str] = []

    async def busy_once(amount_cents: int, order_id: str) -> Any:
        calls.append(order_id)
        if len(calls) == 1:
            raise OperationalError("INSERT INTO order_events", {}, Exception("database is locked"))
        return await real(amount_cents, order_id)

    monkeypatch.setattr(orders_module, "process_payment", busy_once)
    resp = await client.post("/orders", json={"items": [{"product_id": 1, "quantity": 1}]})
    order = await _wait_final(client, _data(resp)["id"])
    assert order["status"] == "completed"
    assert calls == [order["id"], order["id"]]  # the step ran again
    reserved = next(e for e in order["events"] if e["name"] == "inventory.reserved")
    async with client.app.state.engine.connect() as conn:
        attempts = (
            await conn.execute(
                select(outbox_table.c.attempts).where(outbox_table.c.id == reserved["event_id"])
            )
        ).scalar_one()
    assert attempts == 2  # the same event, delivered a second time
