"""RequestContextMiddleware and TracingMiddleware: ids in, ids out, ids in every log line."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest
from fastapi import FastAPI, Request

from crown_nexus.logging import get_current_request_id, get_log_context, get_logger
from crown_nexus.middleware import (
    ErrorHandlerMiddleware,
    RequestContextMiddleware,
    TracingMiddleware,
)
from crown_nexus.middleware.tracing import format_traceparent, parse_traceparent
from crown_nexus.testing import capture_logs

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ctx")
    async def ctx(request: Request) -> dict:
        get_logger("handler").info("handling")
        await asyncio.sleep(0)
        return {
            "request_id": get_current_request_id(),
            "state_id": request.state.request_id,
            "trace": get_log_context(),
        }

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("boom")

    app.add_middleware(ErrorHandlerMiddleware)
    app.add_middleware(TracingMiddleware, service_name="api-service")
    app.add_middleware(RequestContextMiddleware)
    return app


@pytest.fixture
async def client():
    """An httpx client on the test app (no server)."""
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_incoming_request_id_is_used_and_echoed(client) -> None:
    """A valid X-Request-ID is the request's id, in the context, state and response header."""
    with capture_logs() as logs:
        resp = await client.get("/ctx", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    body = resp.json()
    assert body["request_id"] == "abc-123" and body["state_id"] == "abc-123"
    handler = [e for e in logs if e["event"] == "handling"][0]
    assert handler["request_id"] == "abc-123"
    done = [e for e in logs if e["event"] == "Request completed"][0]
    assert done["status_code"] == 200 and done["path"] == "/ctx" and done["request_id"] == "abc-123"


@pytest.mark.parametrize("bad", ["", "x" * 200, "has space", "inject\u00e9", "a;b"])
async def test_invalid_request_id_is_replaced_by_a_uuid(client, bad: str) -> None:
    """An unusable X-Request-ID is ignored and a UUID4 generated instead."""
    headers = {"X-Request-ID": bad.encode("utf-8")} if bad else {}
    resp = await client.get("/ctx", headers=headers)
    rid = resp.headers["x-request-id"]
    assert uuid.UUID(rid).version == 4
    assert resp.json()["request_id"] == rid


async def test_concurrent_requests_keep_their_own_ids(client) -> None:
    """Concurrent requests never see each other's ids; the context is clean afterwards."""
    resps = await asyncio.gather(
        *(client.get("/ctx", headers={"X-Request-ID": f"r{i}"}) for i in range(10))
    )
    assert [r.json()["request_id"] for r in resps] == [f"r{i}" for i in range(10)]
    assert get_current_request_id() is None


async def test_request_id_header_even_on_errors(client) -> None:
    """An error rendered inside the stack still carries X-Request-ID, in header and body."""
    resp = await client.get("/boom", headers={"X-Request-ID": "err-1"})
    assert resp.status_code == 500
    assert resp.headers["x-request-id"] == "err-1"
    assert resp.json()["request_id"] == "err-1"


async def test_non_http_scopes_pass_through() -> None:
    """Lifespan scopes go straight to the app."""
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    await RequestContextMiddleware(inner)({"type": "lifespan"}, None, None)
    await TracingMiddleware(inner)({"type": "lifespan"}, None, None)
    assert seen == ["lifespan", "lifespan"]


async def test_incoming_traceparent_continues_the_trace(client) -> None:
    """A valid traceparent keeps its trace id; the response names a new span of that trace."""
    resp = await client.get("/ctx", headers={"traceparent": TRACEPARENT, "tracestate": "k=v"})
    out = parse_traceparent(resp.headers["traceparent"])
    assert out is not None
    trace_id, span_id, flags = out
    assert trace_id == "0af7651916cd43dd8448eb211c80319c" and flags == "01"
    assert span_id != "b7ad6b7169203331"
    assert resp.headers["tracestate"] == "k=v"
    ctx = resp.json()["trace"]
    assert ctx["trace_id"] == trace_id and ctx["span_id"] == span_id
    assert ctx["parent_span_id"] == "b7ad6b7169203331" and ctx["service"] == "api-service"


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
    ],
)
async def test_invalid_traceparent_starts_a_new_trace(client, bad: str) -> None:
    """An invalid traceparent is ignored: a fresh trace id, no parent, tracestate dropped."""
    resp = await client.get("/ctx", headers={"traceparent": bad, "tracestate": "k=v"})
    trace_id, _, _ = parse_traceparent(resp.headers["traceparent"])
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id) and trace_id != "0" * 32
    assert trace_id not in bad.lower() or bad.startswith("ff")
    assert "tracestate" not in resp.headers
    assert resp.json()["trace"]["parent_span_id"] is None


async def test_trace_ids_in_log_lines(client) -> None:
    """Log lines inside the request carry trace_id and span_id."""
    with capture_logs() as logs:
        resp = await client.get("/ctx", headers={"traceparent": TRACEPARENT})
    handler = [e for e in logs if e["event"] == "handling"][0]
    assert handler["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert handler["span_id"] == parse_traceparent(resp.headers["traceparent"])[1]
    assert get_log_context() == {}


def test_traceparent_round_trip() -> None:
    """format_traceparent output parses back to the same ids."""
    assert parse_traceparent(format_traceparent("a" * 32, "b" * 16, "00")) == (
        "a" * 32,
        "b" * 16,
        "00",
    )
    assert parse_traceparent(None) is None
    assert parse_traceparent(b"\xff") is None


async def test_guide_s13_examples_for_our_middleware() -> None:
    """Guide §13: the three add_middleware calls as written, together, on one app."""
    from fastapi import FastAPI

    from crown_nexus.middleware import MetricsMiddleware

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        return {"id": item_id, "request_id": get_current_request_id(), "trace": get_log_context()}

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    # --- guide §13's three calls, as written (add_middleware prepends: the last added is
    # outermost, so RequestContext -> Tracing -> Metrics as the guide orders them) ---
    app.add_middleware(MetricsMiddleware, ignore_paths=["/metrics", "/health"])
    app.add_middleware(TracingMiddleware, service_name="api-service")
    app.add_middleware(RequestContextMiddleware)
    # --- end ---

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        resp = await c.get("/items/5", headers={"X-Request-ID": "guide-13"})
        assert (await c.get("/health")).status_code == 200
    body = resp.json()
    assert body["request_id"] == "guide-13" and resp.headers["x-request-id"] == "guide-13"
    assert body["trace"]["service"] == "api-service"
    assert parse_traceparent(resp.headers["traceparent"])[0] == body["trace"]["trace_id"]


async def test_guide_s13_logging_integration_example() -> None:
    """Guide §13 'Logging System Integration': a dispatch using request_context, as written."""
    import uuid

    from fastapi import FastAPI, Request  # noqa: F401 - Request annotates the guide's dispatch
    from starlette.middleware.base import BaseHTTPMiddleware

    # --- guide §13, as written (inside a user's BaseHTTPMiddleware) ---
    from crown_nexus.logging import get_logger, request_context

    # In your middleware
    logger = get_logger("app.middleware.example")

    async def dispatch(self, request: Request, call_next):
        request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
        with request_context(request_id=request_id):
            logger.info("Processing request", path=request.url.path)
            # Process request
            return await call_next(request)

    # --- end ---

    class Example(BaseHTTPMiddleware):
        pass

    Example.dispatch = dispatch  # type: ignore[method-assign]
    app = FastAPI()

    @app.get("/x")
    async def x() -> dict:
        return {"request_id": get_current_request_id()}

    app.add_middleware(Example)
    transport = httpx.ASGITransport(app=app)
    with capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            resp = await c.get("/x", headers={"X-Request-ID": "user-mw"})
    assert resp.json()["request_id"] == "user-mw"
    line = [e for e in logs if e["event"] == "Processing request"][0]
    assert line["request_id"] == "user-mw" and line["path"] == "/x"


def test_generated_request_ids_are_random_version_4_uuids() -> None:
    """new_request_id() is str(uuid4()) in form: version 4, RFC 4122 variant, canonical text, unique."""
    from crown_nexus.middleware.request_context import new_request_id

    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for rid in ids:
        parsed = uuid.UUID(rid)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == rid
