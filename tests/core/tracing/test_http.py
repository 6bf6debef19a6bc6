"""One trace through the demo over HTTP: FastAPI's server span continues the incoming
traceparent, the stack's own work and the library's I/O are child spans, events carry it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.trace import SpanKind, StatusCode

from crown_nexus.demo.app import create_app
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.core.tracing.conftest import Spans, span_id_of, trace_id_of
from tests.demo._auth import USER, bearer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _data(resp: Any) -> Any:
    body = resp.json()
    return body["data"] if isinstance(body, dict) and "data" in body and "success" in body else body


@pytest.fixture
async def client(tmp_path, redis_url: str, redis_client) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """The demo on SQLite, with its cache and rate limits on the real Redis (flushed)."""
    settings = Settings(
        ENVIRONMENT="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/trace.db",
        REDIS_URI=redis_url,
        CACHE_DEFAULT_BACKEND="redis",
    )
    app = create_app(settings)
    async with app_client(app) as c:
        yield c


def _in_trace(spans: Spans, trace_id: str = TRACE_ID) -> list[Any]:
    return [s for s in spans.all() if trace_id_of(s) == trace_id]


def _parent(span: Any) -> str | None:
    return None if span.parent is None else format(span.parent.span_id, "016x")


def _ancestors(span: Any, spans: Spans) -> list[str]:
    """Names of ``span``'s ancestors, nearest first (within the exported spans)."""
    by_id = {span_id_of(s): s for s in spans.all()}
    names = []
    current = by_id.get(_parent(span) or "")
    while current is not None:
        names.append(current.name)
        current = by_id.get(_parent(current) or "")
    return names


async def test_request_continues_the_incoming_trace(client: Any, spans: Spans) -> None:
    """FastAPI's SERVER span continues traceparent (never a second one from the middleware);
    security checks, rate limit (and its Redis call), cache and compression are its children;
    the response's traceparent names the server span."""
    resp = await client.get(
        "/products/1", headers={"traceparent": TRACEPARENT, "accept-encoding": "gzip"}
    )
    assert resp.status_code == 200
    servers = [s for s in spans.all() if s.kind is SpanKind.SERVER]
    assert len(servers) == 1, [(s.name, s.instrumentation_scope) for s in servers]
    server = servers[0]
    assert server.instrumentation_scope is not None
    assert server.instrumentation_scope.name == "fastapi"
    assert trace_id_of(server) == TRACE_ID and _parent(server) == PARENT_ID
    assert server.name == "GET /products/{product_id}"
    attrs = dict(server.attributes or {})
    assert attrs["http.route"] == "/products/{product_id}"
    assert attrs["http.response.status_code"] == 200
    assert attrs["url.path"] == "/products/1" and attrs["http.request.method"] == "GET"
    flags = format(int(server.context.trace_flags), "02x")
    assert resp.headers["traceparent"] == f"00-{TRACE_ID}-{span_id_of(server)}-{flags}"

    names = {s.name for s in _in_trace(spans)}
    for expected in ("security.request_checks", "rate_limit.check", "rate_limit.redis",
                     "cache.get", "cache.set"):
        assert expected in names, (expected, sorted(names))
    assert "rate_limit.check" in _ancestors(spans.one("rate_limit.redis"), spans)
    for name in ("security.request_checks", "rate_limit.check", "cache.get"):
        assert server.name in _ancestors(spans.named(name)[0], spans), name
    get = spans.one("cache.get")
    assert (get.attributes or {})["cache.hit"] is False
    assert (get.attributes or {})["cache.backend"] == "redis"
    assert "fastapi.endpoint" in _ancestors(get, spans)

    spans.clear()
    await client.get("/products/1", headers={"traceparent": TRACEPARENT})
    assert (spans.one("cache.get").attributes or {})["cache.hit"] is True


async def test_request_without_traceparent_starts_a_trace(client: Any, spans: Spans) -> None:
    """Without traceparent the server span is a root whose ids reach the response; a page is a
    span over its two queries."""
    resp = await client.get("/catalog/products?page=1&page_size=50")
    assert resp.status_code == 200
    server = next(s for s in spans.all() if s.kind is SpanKind.SERVER)
    assert server.parent is None
    assert resp.headers["traceparent"].split("-")[1:3] == [trace_id_of(server), span_id_of(server)]
    page = spans.one("pagination.offset")
    assert trace_id_of(page) == trace_id_of(server)
    for query in ("pagination.count", "pagination.rows"):
        child = spans.one(query)
        assert _parent(child) == span_id_of(page) and child.kind is SpanKind.CLIENT


async def _wait_completed(client: Any, order_id: str) -> None:
    async with asyncio.timeout(15):
        while True:
            order = _data(await client.get(f"/orders/{order_id}"))
            if order["status"] == "completed" and len(order["events"]) == 4:
                return
            await asyncio.sleep(0.05)


async def test_order_events_stay_in_the_request_trace(client: Any, spans: Spans) -> None:
    """POST /orders → event.publish (outbox) → outbox.deliver → event.handle → the next events:
    every span of the workflow is in the request's trace, each handler under its event."""
    client.headers.update(await bearer(client, USER))  # orders need an authenticated caller
    resp = await client.post(
        "/orders",
        json={"items": [{"product_id": 1, "quantity": 1}]},
        headers={"traceparent": TRACEPARENT},
    )
    assert resp.status_code == 202
    await _wait_completed(client, _data(resp)["id"])
    ours = _in_trace(spans)
    publish = next(s for s in ours if s.name == "event.publish order.created")
    assert publish.kind is SpanKind.PRODUCER
    assert "fastapi.endpoint" in _ancestors(publish, spans)
    chain = ["order.created", "inventory.reserved", "payment.succeeded", "order.completed"]
    for name in chain:
        handle = [s for s in ours if s.name == f"event.handle {name}"]
        assert len(handle) == 1, (name, sorted(s.name for s in ours))
        assert handle[0].kind is SpanKind.CONSUMER
        assert handle[0].status.status_code is not StatusCode.ERROR
        up = _ancestors(handle[0], spans)
        assert f"outbox.deliver {name}" == up[0] and f"event.publish {name}" == up[1], up
    assert _ancestors(spans.named("event.handle order.completed")[0], spans)[-1] == (
        "POST /orders"
    )


async def test_middleware_makes_the_server_span_when_fastapi_does_not(
    spans: Spans, tmp_path: Any
) -> None:
    """An app whose FastAPI telemetry is off still gets one SERVER span (stable HTTP semantic
    conventions), made by TracingMiddleware, continuing traceparent."""
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    setup_app(app, Settings(ENVIRONMENT="test", database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db"))
    async with app_client(app) as client:
        resp = await client.get("/items/7", headers={"traceparent": TRACEPARENT})
        missing = await client.get("/nope")
    assert resp.status_code == 200 and missing.status_code == 404
    servers = [s for s in spans.all() if s.kind is SpanKind.SERVER]
    assert len(servers) == 2
    server = next(s for s in servers if (s.attributes or {}).get("url.path") == "/items/7")
    assert server.instrumentation_scope is not None
    assert server.instrumentation_scope.name == "crown_nexus.http"
    assert trace_id_of(server) == TRACE_ID and _parent(server) == PARENT_ID
    attrs = dict(server.attributes or {})
    assert attrs["http.request.method"] == "GET" and attrs["url.scheme"] == "http"
    assert attrs["http.route"] == "/items/{item_id}" and server.name == "GET /items/{item_id}"
    assert attrs["http.response.status_code"] == 200
    assert attrs["server.address"] == "testserver"
    assert resp.headers["traceparent"] == (
        f"00-{TRACE_ID}-{span_id_of(server)}-{int(server.context.trace_flags):02x}"
    )
    other = next(s for s in servers if s is not server)
    assert (other.attributes or {})["http.response.status_code"] == 404
    assert other.parent is None


async def test_compression_is_a_span_of_the_request(spans: Spans, tmp_path: Any) -> None:
    """Gzipping a body is a span under the server span, both where the formatter compresses
    (JSON) and where the gzip layer does (other media)."""
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    @app.get("/big.json")
    async def big_json() -> dict[str, str]:
        return {"text": "crown nexus " * 400}

    @app.get("/big.txt")
    async def big_text() -> PlainTextResponse:
        return PlainTextResponse("crown nexus " * 400)

    setup_app(app, Settings(ENVIRONMENT="test", database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db"))
    async with app_client(app) as client:
        for path in ("/big.json", "/big.txt"):
            spans.clear()
            resp = await client.get(path, headers={"accept-encoding": "gzip"})
            assert resp.status_code == 200 and resp.headers["content-encoding"] == "gzip"
            server = next(s for s in spans.all() if s.kind is SpanKind.SERVER)
            gzip_span = spans.named("compression.gzip")[0]
            assert server.name in _ancestors(gzip_span, spans), path
            assert trace_id_of(gzip_span) == trace_id_of(server)
    attrs = gzip_span.attributes or {}
    assert attrs["crown_nexus.compression.body_bytes"] == len("crown nexus " * 400)


async def test_password_hashing_is_traced(spans: Spans) -> None:
    """Hashing and verifying a password are spans (the wait for a hashing thread included)."""
    from crown_nexus.core.security import get_security_service

    service = get_security_service()
    hashed = await service.hash_password("correct horse battery staple")
    assert await service.verify_password("wrong", hashed) is False
    assert spans.one("password.hash").instrumentation_scope.name == "crown_nexus.security"  # type: ignore[union-attr]
    assert (spans.one("password.verify").attributes or {})["crown_nexus.password.valid"] is False
