"""Reliability regressions of issue 15 item 6 over HTTP: out-of-range integers, huge order bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import Request
from pydantic import BaseModel

from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.demo._auth import bearer

BIG = 2**63
HUGE = "9" * 4300  # past Python's int-string conversion limit, past any column


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A client of a fresh demo app on its own SQLite file."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/rel.db"))
    async with app_client(app) as c:
        c.app = app
        c.headers.update(await bearer(c))  # the admin: products and orders need credentials
        yield c


@pytest.mark.parametrize("product_id", [str(BIG), str(-BIG - 1), HUGE, "0"])
async def test_out_of_range_product_id_in_path_is_422(client: Any, product_id: str) -> None:
    """GET and PUT /products/{id} with an id no 64-bit column holds is a 422, not a driver 500."""
    got = await client.get(f"/products/{product_id}")
    assert got.status_code == 422, got.text
    assert got.json()["code"] == "VALIDATION_ERROR"
    put = await client.put(f"/products/{product_id}", json={"price_cents": 1})
    assert put.status_code == 422, put.text


async def test_largest_product_id_is_a_plain_404(client: Any) -> None:
    """The largest 64-bit id is in range: an unknown product, 404."""
    resp = await client.get(f"/products/{BIG - 1}")
    assert resp.status_code == 404
    assert resp.json()["code"] == "RESOURCE_NOT_FOUND"


@pytest.mark.parametrize("price", [BIG, int(HUGE)])
async def test_out_of_range_price_is_422(client: Any, price: int) -> None:
    """price_cents of 2**63 (or 4,300 digits) is a 422, and the stored price is unchanged."""
    before = (await client.get("/products/1")).json()["data"]["price_cents"]
    resp = await client.put(
        "/products/1",
        content=f'{{"price_cents": {price}}}',
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 422, resp.text
    assert (await client.get("/products/1")).json()["data"]["price_cents"] == before


@pytest.mark.parametrize("product_id", [BIG, int(HUGE)])
async def test_out_of_range_order_product_id_is_422(client: Any, product_id: int) -> None:
    """An order line whose product_id no column holds is a 422."""
    body = f'{{"items": [{{"product_id": {product_id}, "quantity": 1}}]}}'
    resp = await client.post("/orders", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text


async def test_order_total_past_64_bits_is_422(client: Any) -> None:
    """A price near 2**63 times a quantity overflows the total column: 422, not a 500."""
    assert (await client.put("/products/1", json={"price_cents": BIG - 1})).status_code == 200
    resp = await client.post("/orders", json={"items": [{"product_id": 1, "quantity": 2}]})
    assert resp.status_code == 422, resp.text
    assert "total" in resp.text


async def test_sqlite_connections_use_wal_and_a_busy_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every SQLite connection of the demo runs in WAL mode with a 5 s busy timeout and a
    512 KiB page cache."""
    from sqlalchemy import text

    from crown_nexus.demo.db import create_engine_for

    engine = create_engine_for(f"sqlite+aiosqlite:///{tmp_path}/wal.db")
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            timeout = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
            sync = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
            cache = (await conn.execute(text("PRAGMA cache_size"))).scalar_one()
    finally:
        await engine.dispose()
    assert (str(mode).lower(), int(timeout), int(sync)) == ("wal", 5000, 1)  # 1 is NORMAL
    assert int(cache) == -512  # KiB: a bounded page cache per pooled connection


async def test_concurrent_sqlite_writers_wait_instead_of_failing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two engines writing the same file at once both succeed (the busy timeout queues them)."""
    import asyncio

    from sqlalchemy import text

    from crown_nexus.demo.db import create_engine_for

    url = f"sqlite+aiosqlite:///{tmp_path}/busy.db"
    engines = [create_engine_for(url) for _ in range(4)]
    try:
        async with engines[0].begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))

        async def write(engine: Any, base: int) -> None:
            for i in range(25):
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": base + i})

        await asyncio.gather(*(write(e, 100 * k) for k, e in enumerate(engines)))
        async with engines[0].connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()
    finally:
        for e in engines:
            await e.dispose()
    assert count == 100


async def test_logged_in_users_are_served_while_redis_is_stalled(tmp_path, redis_server) -> None:  # type: ignore[no-untyped-def]
    """Redis SIGSTOPped: a valid session is served (well within 2 s), a logged-out one stays 401."""
    import asyncio
    import signal

    from argon2 import PasswordHasher

    from crown_nexus.core.security import configure_security
    from crown_nexus.core.security.passwords import set_password_hasher

    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/stall.db",
        secret_key="demo-reliability-secret-0123456789abcdef",
        REDIS_URI=redis_server.url,
    )
    creds = {"email": "user@example.com", "password": "Crown-User-2024!"}
    try:
        async with app_client(create_app(settings)) as client:
            sessions = []
            for _ in range(2):
                resp = await client.post("/auth/login", json=creds)
                assert resp.status_code == 200, resp.text
                sessions.append({"Authorization": f"Bearer {resp.json()['data']['access_token']}"})
            valid, logged_out = sessions
            assert (await client.post("/auth/logout", headers=logged_out)).status_code == 200
            assert (await client.get("/users/me", headers=valid)).status_code == 200
            assert redis_server.proc is not None
            redis_server.proc.send_signal(signal.SIGSTOP)
            try:
                for _ in range(3):
                    async with asyncio.timeout(2):  # a safety bound; redis-py would wait forever
                        me = await client.get("/users/me", headers=valid)
                        gone = await client.get("/users/me", headers=logged_out)
                    assert me.status_code == 200, me.text
                    assert gone.status_code == 401, gone.text
                async with asyncio.timeout(2):
                    health = (await client.get("/health")).json()["data"]
                services = health["backends"]["services"]
                assert services["token_revocation"] == "RedisTokenBlacklist"
                assert services["token_revocation_redis"].startswith("unreachable")
            finally:
                redis_server.proc.send_signal(signal.SIGCONT)
            assert (await client.get("/users/me", headers=logged_out)).status_code == 401
    finally:
        set_password_hasher(previous)
        configure_security(None)


class _Boom(RuntimeError):
    """The failure of the test route (weakly referenceable, unlike built-in exceptions)."""


class Padded(BaseModel):
    """A request body with 1 MB of padding."""

    padding: str
    n: int


async def test_failing_requests_with_big_bodies_leave_nothing_alive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """20 failing POSTs with 1 MB bodies: every exception, request and body is collectable
    afterwards, and the demo's error log holds only bounded summaries (no secrets)."""
    import gc
    import weakref

    from crown_nexus.core.error import wait_for_reports
    from crown_nexus.demo.routers.errors import RECENT_ERRORS

    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/big.db"))
    alive: list[weakref.ref[Any]] = []

    @app.post("/test/boom")
    async def boom(body: Padded, request: Request) -> None:
        exc = _Boom(f"failed on item {body.n}: password=hunter2")
        alive.extend(weakref.ref(o) for o in (exc, body, request))
        raise exc

    RECENT_ERRORS.clear()
    async with app_client(app) as client:
        for n in range(20):
            resp = await client.post("/test/boom", json={"padding": "x" * 1_000_000, "n": n})
            assert resp.status_code == 500
        await wait_for_reports()
        gc.collect()
        assert len(alive) == 60
        assert [ref for ref in alive if ref() is not None] == []
        entries = [e for e in RECENT_ERRORS.recent() if e.exception_type is _Boom]
        assert len(entries) == 20
        for entry in entries:
            assert "hunter2" not in entry.message and "hunter2" not in entry.traceback
            assert len(entry.message) + len(entry.traceback) + len(str(entry.context)) < 20_000
        recent = await client.get("/demo/errors/recent")
        assert recent.json()["data"]["errors"][0]["type"] == "_Boom"


def _items_body(count: int) -> bytes:
    item = b'{"product_id": 1, "quantity": 1}'
    return b'{"items": [' + b", ".join([item] * count) + b"]}"


async def test_huge_order_body_is_413_before_parsing(client: Any, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A 9.9 MB body of 330k items is refused 413 without being parsed at all."""
    from crown_nexus.demo.routers import orders

    parsed: list[int] = []
    real = orders._parse_order
    monkeypatch.setattr(orders, "_parse_order", lambda raw: parsed.append(len(raw)) or real(raw))
    body = _items_body(300_000)
    assert 9_000_000 < len(body) < 10 * 1024 * 1024  # under the app-wide limit
    resp = await client.post("/orders", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 413, resp.text[:300]
    assert resp.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert parsed == []

    async def chunks() -> Any:  # no Content-Length: the streamed size is what counts
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    resp = await client.post(
        "/orders", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert parsed == []
    # a small order still goes through the parser and is placed
    ok = await client.post("/orders", json={"items": [{"product_id": 1, "quantity": 1}]})
    assert ok.status_code == 202, ok.text
    assert len(parsed) == 1


async def test_more_than_50_items_under_the_cap_is_422(client: Any) -> None:
    """51 items (well under the byte cap) are refused by the 50-item limit: 422 at body.items."""
    resp = await client.post(
        "/orders", content=_items_body(51), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["details"][0]["loc"] == ["body", "items"]


async def test_malformed_order_json_is_422(client: Any) -> None:
    """Bytes that are not JSON are a 422 validation error, not a 500."""
    resp = await client.post(
        "/orders", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422, resp.text


def test_order_body_is_still_documented() -> None:
    """The capped body keeps its OpenAPI schema (inlined: no dangling $defs reference)."""
    import json

    schema = create_app(Settings()).openapi()["paths"]["/orders"]["post"]["requestBody"]
    body = schema["content"]["application/json"]["schema"]
    assert body["properties"]["items"]["maxItems"] == 50
    assert "$defs" not in json.dumps(schema)


async def test_health_does_not_report_the_cache_on_a_dead_or_stalled_redis(
    tmp_path,  # type: ignore[no-untyped-def]
    redis_server,
) -> None:
    """/health says the cache is on Redis only while Redis answers (killed or SIGSTOPped: memory)."""
    import asyncio
    import signal

    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/health.db",
        REDIS_URI=redis_server.url,
        CACHE_DEFAULT_BACKEND="redis",
    )

    async def cache_state(client: Any) -> dict[str, Any]:
        async with asyncio.timeout(2):  # a safety bound: the health check never hangs on Redis
            resp = await client.get("/health")
        assert resp.status_code == 200
        body = resp.json()
        return dict(body.get("data", body)["backends"]["services"]["cache"])

    async with app_client(create_app(settings)) as client:
        assert (await cache_state(client))["active"] == "redis"
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            stalled = await cache_state(client)
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        assert stalled["active"] == "memory" and stalled["redis"] == "unreachable"
        redis_server.stop()
        down = await cache_state(client)
        assert down["active"] == "memory"


async def test_invented_methods_do_not_reach_metrics_labels(client: Any) -> None:
    """Requests with made-up methods are counted as method="_OTHER" in the demo's /metrics."""
    for i in range(30):
        resp = await client.request(f"INVENTED{i}", "/products/1")
        assert resp.status_code in (405, 429)
    text = (await client.get("/metrics")).text
    assert 'method="_OTHER"' in text
    assert "INVENTED" not in text
