"""Idempotency-Key: the stores (memory and real Redis, one suite) and IdempotencyMiddleware over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from crown_nexus.core.idempotency import (
    ClaimState,
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    StoredResponse,
    create_idempotency_store,
)
from crown_nexus.core.idempotency._base import decode_record
from crown_nexus.core.security import configure_security
from crown_nexus.integrations.fastapi import middleware_stack, setup_app
from crown_nexus.middleware.idempotency import IdempotencyMiddleware, parse_idempotency_key
from crown_nexus.settings import Settings

SPEC_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}
RESPONSE = StoredResponse(201, (("content-type", "application/json"), ("x-a", "1")), b'{"id":1}')


@pytest.fixture(autouse=True)
def _reset_security():
    """The shared security service is reset after each test."""
    yield
    configure_security(None)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[IdempotencyStore]:
    """Each store implementation (Redis: the real server, a private key prefix)."""
    if request.param == "memory":
        yield MemoryIdempotencyStore()
        return
    url = request.getfixturevalue("redis_url")
    redis_store = RedisIdempotencyStore(url, prefix=f"test:idem:{uuid.uuid4().hex}:")
    try:
        yield redis_store
    finally:
        keys = [k async for k in redis_store.client.scan_iter(match=redis_store.prefix + "*")]
        if keys:
            await redis_store.client.delete(*keys)
        await redis_store.close()


# --- the stores ------------------------------------------------------------------------------


async def test_claim_then_in_progress_then_completed(store: IdempotencyStore) -> None:
    """A free key is claimed once; later claims see it in progress, then the stored response."""
    first = await store.claim("k", "fp1", 10)
    assert first.state is ClaimState.CLAIMED and first.owner
    second = await store.claim("k", "fp2", 10)
    assert second.state is ClaimState.IN_PROGRESS and second.fingerprint == "fp1"
    assert await store.complete("k", first.owner, "fp1", RESPONSE, 60) is True
    third = await store.claim("k", "fp1", 10)
    assert third.state is ClaimState.COMPLETED and third.fingerprint == "fp1"
    assert third.response == RESPONSE


async def test_only_the_owner_completes_or_releases(store: IdempotencyStore) -> None:
    """Another owner cannot release or overwrite a claim; the owner's release frees the key."""
    claim = await store.claim("k", "fp", 10)
    assert await store.release("k", "someone-else") is False
    assert await store.complete("k", "someone-else", "fp", RESPONSE, 60) is False
    assert (await store.claim("k", "fp", 10)).state is ClaimState.IN_PROGRESS
    assert await store.release("k", str(claim.owner)) is True
    assert (await store.claim("k", "fp", 10)).state is ClaimState.CLAIMED


async def test_claims_and_responses_expire(store: IdempotencyStore) -> None:
    """A claim lasts lock_ttl and a stored response its ttl; then the key is free again."""
    await store.claim("lock", "fp", 0.05)
    done = await store.claim("done", "fp", 10)
    await store.complete("done", str(done.owner), "fp", RESPONSE, 0.05)
    await asyncio.sleep(0.15)
    assert (await store.claim("lock", "fp", 10)).state is ClaimState.CLAIMED
    assert (await store.claim("done", "fp", 10)).state is ClaimState.CLAIMED


async def test_stale_owner_cannot_overwrite_a_new_claim(store: IdempotencyStore) -> None:
    """After a claim expired and another request took the key, the old owner stores nothing."""
    old = await store.claim("k", "fp", 0.05)
    await asyncio.sleep(0.12)
    new = await store.claim("k", "fp", 10)
    assert new.state is ClaimState.CLAIMED
    assert await store.complete("k", str(old.owner), "fp", RESPONSE, 60) is False
    assert await store.complete("k", str(new.owner), "fp", RESPONSE, 60) is True


async def test_concurrent_claims_have_one_winner(store: IdempotencyStore) -> None:
    """Twenty simultaneous claims of one key: exactly one is CLAIMED."""
    claims = await asyncio.gather(*(store.claim("race", "fp", 10) for _ in range(20)))
    assert sum(c.state is ClaimState.CLAIMED for c in claims) == 1


def test_foreign_values_are_refused() -> None:
    """A value that is not an idempotency record raises ValueError, not garbage."""
    for bad in ("", "x:1", "d:{not json", 'd:{"f":"a"}'):
        with pytest.raises(ValueError):
            decode_record(bad)


def test_create_store_picks_redis_only_with_a_url() -> None:
    """create_idempotency_store: memory without a URL."""
    assert isinstance(create_idempotency_store(None), MemoryIdempotencyStore)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b"abc-123", "abc-123"),
        (b'"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (b"x" * 255, "x" * 255),
        (b"", None),
        (b'""', None),
        (b"x" * 256, None),
        (b"has space", None),
        ("caf\u00e9".encode(), None),
        (b"tab\tkey", None),
    ],
)
def test_key_validation(raw: bytes, key: str | None) -> None:
    """1..255 visible ASCII characters, optionally as a Structured Field string."""
    assert parse_idempotency_key(raw) == key


# --- the middleware over HTTP ------------------------------------------------------------------


def _app(store: IdempotencyStore | None = None, settings: Settings | None = None,
         **options: Any) -> tuple[FastAPI, dict[str, Any]]:
    app = FastAPI()
    state: dict[str, Any] = {
        "calls": 0, "gate": None, "status": 201, "started": asyncio.Event()
    }

    @app.post("/orders")
    async def create(request: Request) -> JSONResponse:
        state["calls"] += 1
        state["started"].set()
        if state["gate"] is not None:
            await state["gate"].wait()
        body = await request.json()
        return JSONResponse(
            {"order": state["calls"], "echo": body},
            status_code=state["status"],
            headers={"X-Order": str(state["calls"])},
        )

    @app.patch("/orders/{oid}")
    async def patch(oid: str) -> dict[str, Any]:
        state["calls"] += 1
        return {"patched": oid, "n": state["calls"]}

    @app.put("/orders/{oid}")
    async def put(oid: str) -> dict[str, Any]:
        state["calls"] += 1
        return {"put": oid}

    opts = dict(options)
    if store is not None:
        opts["store"] = store
    setup_app(
        app,
        settings or Settings(secret_key="idempotency-test-secret-0123456789abcdef"),
        manage_services=False,
        middleware_options={"IdempotencyMiddleware": opts} if opts else None,
    )
    return app, state


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f'"{uuid.uuid4()}"'}


async def test_repeat_with_same_key_and_body_replays_without_running(store) -> None:
    """Same key and body: the handler runs once; the repeat gets the same status, headers, body."""
    app, state = _app(store)
    headers = _key()
    async with _client(app) as client:
        first = await client.post("/orders", json={"sku": "A", "qty": 1}, headers=headers)
        second = await client.post("/orders", json={"sku": "A", "qty": 1}, headers=headers)
    assert state["calls"] == 1
    assert first.status_code == second.status_code == 201
    # the application's body is replayed; the envelope's request_id/timestamp are this request's
    assert first.json()["data"] == second.json()["data"] == {
        "order": 1, "echo": {"sku": "A", "qty": 1}
    }
    assert second.headers["x-order"] == "1"
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


async def test_same_key_with_another_body_is_422(store) -> None:
    """The attack: reusing a key for a different payload never returns the first response."""
    app, state = _app(store)
    headers = _key()
    async with _client(app) as client:
        await client.post("/orders", json={"amount": 1}, headers=headers)
        resp = await client.post("/orders", json={"amount": 1000}, headers=headers)
    assert resp.status_code == 422
    body = resp.json()
    assert set(body) == SPEC_KEYS and body["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert "amount" not in resp.text
    assert state["calls"] == 1


async def test_duplicate_while_in_flight_is_409_then_replays(store) -> None:
    """A duplicate arriving while the first runs gets 409 + Retry-After; after it, the replay."""
    app, state = _app(store)
    state["gate"] = asyncio.Event()
    headers = _key()
    async with _client(app) as client:
        first = asyncio.create_task(client.post("/orders", json={"a": 1}, headers=headers))
        await asyncio.wait_for(state["started"].wait(), 5)
        dup = await client.post("/orders", json={"a": 1}, headers=headers)
        assert dup.status_code == 409
        assert dup.headers["retry-after"] == "1"
        assert dup.json()["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"
        state["gate"].set()
        assert (await first).status_code == 201
        again = await client.post("/orders", json={"a": 1}, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert state["calls"] == 1


async def test_server_errors_are_not_stored(store) -> None:
    """A 5xx answer releases the key: the retry runs the handler again and its answer is kept."""
    app, state = _app(store)
    state["status"] = 503
    headers = _key()
    async with _client(app) as client:
        failed = await client.post("/orders", json={"a": 1}, headers=headers)
        assert failed.status_code == 503
        state["status"] = 201
        ok = await client.post("/orders", json={"a": 1}, headers=headers)
        replay = await client.post("/orders", json={"a": 1}, headers=headers)
    assert ok.status_code == 201 and "idempotent-replayed" not in ok.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert state["calls"] == 2


async def test_keys_are_scoped_to_the_caller_method_and_path(store) -> None:
    """Another caller, method or path with the same key is a different request."""
    app, state = _app(store)
    headers = _key()
    async with _client(app) as client:
        a = await client.post("/orders", json={}, headers={**headers, "Authorization": "Bearer a"})
        b = await client.post("/orders", json={}, headers={**headers, "Authorization": "Bearer b"})
        c = await client.patch("/orders/1", headers=headers)
        d = await client.patch("/orders/2", headers=headers)
        e = await client.patch("/orders/2", headers=headers)
    assert "idempotent-replayed" not in a.headers and "idempotent-replayed" not in b.headers
    assert c.json()["data"]["patched"] == "1" and d.json()["data"]["patched"] == "2"
    assert e.headers["idempotent-replayed"] == "true" and e.json()["data"] == d.json()["data"]
    assert state["calls"] == 4


async def test_invalid_key_is_400_and_other_methods_ignore_the_header() -> None:
    """A malformed key is 400 before the handler runs; PUT and requests without a key run as usual."""
    app, state = _app(MemoryIdempotencyStore())
    async with _client(app) as client:
        for bad in ("", "x" * 256, "two words", '"unterminated'):
            resp = await client.post("/orders", json={}, headers={"Idempotency-Key": bad})
            if bad == '"unterminated':  # a bare key may contain a quote: it is visible ASCII
                assert resp.status_code == 201
                continue
            assert resp.status_code == 400, bad
            assert resp.json()["code"] == "IDEMPOTENCY_KEY_INVALID"
        await client.put("/orders/1", headers={"Idempotency-Key": "k"})
        await client.put("/orders/1", headers={"Idempotency-Key": "k"})
        await client.post("/orders", json={})
        await client.post("/orders", json={})
    assert state["calls"] == 5


async def test_oversized_response_is_not_stored() -> None:
    """A body over max_response_bytes is sent but not kept: the repeat runs again."""
    app, state = _app(MemoryIdempotencyStore(), max_response_bytes=10)
    headers = _key()
    async with _client(app) as client:
        await client.post("/orders", json={"pad": "x" * 50}, headers=headers)
        again = await client.post("/orders", json={"pad": "x" * 50}, headers=headers)
    assert "idempotent-replayed" not in again.headers
    assert state["calls"] == 2


async def test_store_down_is_503_and_the_handler_does_not_run(redis_server) -> None:
    """Redis unreachable: 503 IDEMPOTENCY_UNAVAILABLE, never a second unguarded run."""
    url = redis_server.url
    redis_server.stop()
    app, state = _app(RedisIdempotencyStore(url, timeout=0.5))
    async with _client(app) as client:
        resp = await client.post("/orders", json={}, headers=_key())
    assert resp.status_code == 503
    assert resp.json()["code"] == "IDEMPOTENCY_UNAVAILABLE"
    assert state["calls"] == 0


async def test_two_workers_sharing_redis(redis_url: str) -> None:
    """Two app instances (workers) configured with the same Redis: the second replays the first."""
    settings = Settings(
        secret_key="idempotency-test-secret-0123456789abcdef", REDIS_URI=redis_url
    )
    app1, state1 = _app(settings=settings)
    app2, state2 = _app(settings=settings)
    headers = _key()
    async with _client(app1) as c1, _client(app2) as c2:
        first = await c1.post("/orders", json={"sku": "Z"}, headers=headers)
        second = await c2.post("/orders", json={"sku": "Z"}, headers=headers)
        other = await c2.post("/orders", json={"sku": "Y"}, headers=headers)
    assert state1["calls"] == 1 and state2["calls"] == 0
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["data"] == first.json()["data"]
    assert other.status_code == 422


async def test_concurrent_duplicates_across_workers_run_once(redis_url: str) -> None:
    """Ten identical requests at once, spread over two workers sharing Redis: one handler run."""
    settings = Settings(
        secret_key="idempotency-test-secret-0123456789abcdef", REDIS_URI=redis_url
    )
    app1, state1 = _app(settings=settings)
    app2, state2 = _app(settings=settings)
    headers = _key()
    async with _client(app1) as c1, _client(app2) as c2:
        results = await asyncio.gather(
            *((c1 if i % 2 else c2).post("/orders", json={"n": 1}, headers=headers)
              for i in range(10))
        )
    assert state1["calls"] + state2["calls"] == 1
    assert {r.status_code for r in results} <= {201, 409}


def test_settings_choose_the_store() -> None:
    """idempotency_store=memory ignores Redis; enabled/ttl reach the middleware's options."""
    stack = dict(
        middleware_stack(
            Settings(
                REDIS_URI="redis://127.0.0.1:1/0",
                idempotency_store="memory",
                idempotency_ttl_seconds=60,
                idempotency_enabled=False,
            )
        )
    )
    opts = stack[IdempotencyMiddleware]
    assert opts == {"enabled": False, "ttl_seconds": 60, "redis_url": None}
    auto = dict(middleware_stack(Settings(REDIS_URI="redis://127.0.0.1:1/0")))
    assert auto[IdempotencyMiddleware]["redis_url"] == "redis://127.0.0.1:1/0"


async def test_lifespan_shutdown_closes_the_store_it_created(redis_url: str) -> None:
    """A Redis store the middleware built from a URL is closed when the server shuts down."""

    async def inner(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    mw = IdempotencyMiddleware(inner, redis_url=redis_url)
    assert isinstance(mw.store, RedisIdempotencyStore)
    await mw.store.client.ping()
    closed: list[bool] = []
    original = mw.store.close

    async def close() -> None:
        closed.append(True)
        await original()

    mw.store.close = close  # type: ignore[method-assign]
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await mw({"type": "lifespan"}, receive, send)
    assert closed == [True]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_memory_store_is_bounded_in_bytes() -> None:
    """Stored responses never hold more than max_bytes: the oldest keys go first."""
    from crown_nexus.core.idempotency._base import StoredResponse

    store = MemoryIdempotencyStore(max_bytes=10_000)
    body = b"x" * 3000
    for i in range(10):
        claim = await store.claim(f"k{i}", "fp", 60)
        assert await store.complete(
            f"k{i}", claim.owner or "", "fp", StoredResponse(200, (), body), 60
        )
    assert store._bytes <= 10_000
    assert sum(len(v) for _, v in store._data.values()) == store._bytes
    assert "k9" in store._data and "k0" not in store._data


async def test_memory_store_default_bound_is_16_mib() -> None:
    """By default 40 stored answers of 1 MiB keep at most 16 MiB of records (the newest)."""
    from crown_nexus.core.idempotency._base import StoredResponse

    store = MemoryIdempotencyStore()
    body = b"y" * (1024 * 1024)
    for i in range(40):
        claim = await store.claim(f"big{i}", "fp", 60)
        assert await store.complete(
            f"big{i}", claim.owner or "", "fp", StoredResponse(200, (), body), 60
        )
    assert store._bytes <= 16 * 1024 * 1024
    assert "big39" in store._data and "big0" not in store._data
