"""Middleware cost: crown-nexus's pure ASGI layers vs the same work as ``BaseHTTPMiddleware``.

Group ``middleware-stack``: one GET answering a small JSON body through
- ``bare``: the endpoint app alone;
- ``crown-nexus``: ErrorHandler + Compression + ResponseFormatter + CacheControl + Timeout
  (pure ASGI, as ``setup_app`` stacks them);
- ``base-http``: the same five jobs written as Starlette ``BaseHTTPMiddleware`` (the guide's
  "custom middleware" pattern) — the peer the pure ASGI design replaces.
Group ``middleware-error``: the same stacks answering an exception with the SPEC §3 body.
Each benchmark first checks the answer (status, envelope, Cache-Control).
Run: ``pytest benches/bench_middleware_stack.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import orjson
import pytest
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

from crown_nexus import accel
from crown_nexus.core.exceptions import ResourceNotFoundException, render_exception, utc_timestamp
from crown_nexus.middleware import (
    CacheControlMiddleware,
    CompressionMiddleware,
    ErrorHandlerMiddleware,
    ResponseFormatterMiddleware,
    TimeoutMiddleware,
)

PAYLOAD = {"id": 42, "name": "Widget", "tags": ["a", "b", "c"], "price": 9.99}
BODY = orjson.dumps(PAYLOAD)


async def endpoint(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/boom":
        raise ResourceNotFoundException(resource_type="Product", resource_id="1")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(BODY)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def crown_stack(app: Any) -> Any:
    app = ErrorHandlerMiddleware(app, production=True)
    app = CompressionMiddleware(app, minimum_size=1000)
    app = ResponseFormatterMiddleware(app)
    app = CacheControlMiddleware(app)
    return TimeoutMiddleware(app, timeout_seconds=30.0)


class BaseErrors(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        try:
            return await call_next(request)
        except Exception as exc:
            status, body, headers = render_exception(exc)
            return Response(body, status, headers, media_type="application/json")


class BaseCompression(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        body = b"".join([c async for c in response.body_iterator])
        headers = dict(response.headers)
        if "gzip" in request.headers.get("accept-encoding", "") and len(body) >= 1000:
            body = gzip.compress(body, 6)
            headers["content-encoding"] = "gzip"
        headers.pop("content-length", None)
        return Response(body, response.status_code, headers)


class BaseFormatter(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        body = b"".join([c async for c in response.body_iterator])
        headers = dict(response.headers)
        headers.pop("content-length", None)
        if 200 <= response.status_code < 300 and headers.get("content-type") == "application/json":
            body = orjson.dumps(
                {
                    "success": True,
                    "data": orjson.loads(body),
                    "meta": {"request_id": None, "timestamp": utc_timestamp()},
                }
            )
        return Response(body, response.status_code, headers)


class BaseCacheControl(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        if "cache-control" not in response.headers:
            ok = request.method in ("GET", "HEAD") and response.status_code in (200, 404)
            response.headers["Cache-Control"] = "no-cache" if ok else "no-store"
        return response


class BaseTimeout(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        async with asyncio.timeout(30.0):
            return await call_next(request)


def base_stack(app: Any) -> Any:
    app = BaseErrors(app)
    app = BaseCompression(app)
    app = BaseFormatter(app)
    app = BaseCacheControl(app)
    return BaseTimeout(app)


STACKS = {"bare": lambda app: app, "crown-nexus": crown_stack, "base-http": base_stack}


def scope_for(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"accept-encoding", b"gzip"), (b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }


async def one_request(app: Any, path: str) -> tuple[int, bytes, dict[bytes, bytes]]:
    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    await app(scope_for(path), receive, send)
    start = out[0]
    body = b"".join(m.get("body", b"") for m in out[1:])
    return start["status"], body, dict(start["headers"])


async def many(app: Any, path: str, n: int) -> tuple[int, bytes, dict[bytes, bytes]]:
    result = None
    for _ in range(n):
        result = await one_request(app, path)
    assert result is not None
    return result


BATCH = 50


@pytest.mark.parametrize("stack", list(STACKS))
def test_success(benchmark: Any, stack: str) -> None:
    """50 successful GETs (small JSON) through the stack."""
    benchmark.group = "middleware-stack"
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["stack"] = stack
    benchmark.extra_info["requests_per_round"] = BATCH
    app = STACKS[stack](endpoint)
    loop = asyncio.new_event_loop()
    try:
        status, body, headers = loop.run_until_complete(one_request(app, "/item"))
        assert status == 200
        if stack == "bare":
            assert orjson.loads(body) == PAYLOAD
        else:
            assert orjson.loads(body)["data"] == PAYLOAD
            assert headers[b"cache-control"] == b"no-cache"
        benchmark(lambda: loop.run_until_complete(many(app, "/item", BATCH)))
    finally:
        loop.close()


@pytest.mark.parametrize("stack", ["crown-nexus", "base-http"])
def test_error(benchmark: Any, stack: str) -> None:
    """50 GETs whose endpoint raises, rendered as the SPEC §3 body."""
    benchmark.group = "middleware-error"
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["stack"] = stack
    benchmark.extra_info["requests_per_round"] = BATCH
    app = STACKS[stack](endpoint)
    loop = asyncio.new_event_loop()
    try:
        status, body, _ = loop.run_until_complete(one_request(app, "/boom"))
        assert status == 404 and orjson.loads(body)["code"] == "RESOURCE_NOT_FOUND"
        benchmark(lambda: loop.run_until_complete(many(app, "/boom", BATCH)))
    finally:
        loop.close()
