"""Middleware cost: crown-nexus's pure ASGI layers vs the same work as ``BaseHTTPMiddleware``.

Group ``middleware-stack``: one GET answering a small JSON body through
- ``bare``: the endpoint app alone;
- ``crown-nexus``: ErrorHandler + Compression + ResponseFormatter + CacheControl + Timeout
  (pure ASGI, as ``setup_app`` stacks them);
- ``base-http``: the same five jobs written as Starlette ``BaseHTTPMiddleware`` (the guide's
  "custom middleware" pattern) — the peer the pure ASGI design replaces.
Group ``middleware-error``: the same stacks answering an exception with the SPEC §3 body.
Groups ``middleware-layers-hello`` / ``middleware-layers-items``: the real FastAPI app of the
HTTP benchmark (``benches/http/``: ``GET /hello`` and ``GET /items?page=1``, 20 pydantic items)
called in-process as ``bare`` FastAPI, with the ``full`` ``setup_app`` stack (every layer of MIDDLEWARE_ORDER; production
settings, CORS, a rate rule that never refuses), and the full stack minus each one layer
(``minus-<Layer>``). Each ``minus`` row runs a batch of the full stack before each timed round
and stores the paired marginal cost of its layer, ``full - minus`` in µs per request
(``extra_info["marginal_us_median"]``). ``python benches/bench_middleware_stack.py`` prints the
same per-layer table directly (alternating rounds, best round per row).
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


# ---------------------------------------------------------------------------- per-layer cost
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "http"))
os.environ.setdefault("CROWN_NEXUS_SECRET_KEY", "bench-only-" + "k" * 53)

from _routes import ORIGIN, add_routes  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from crown_nexus.core.rate_limiting import RateLimitRule  # noqa: E402
from crown_nexus.integrations.fastapi import MIDDLEWARE_ORDER, setup_app  # noqa: E402
from crown_nexus.settings import Settings  # noqa: E402

LAYERS = [name for name, _ in MIDDLEWARE_ORDER]
LAYER_ROWS = ["bare", "full", *(f"minus-{name}" for name in LAYERS)]
LAYER_ROUTES = {"hello": "/hello", "items": "/items"}
LAYER_BATCH = 40
LAYER_ROUNDS = 30


def layered_app(row: str) -> Any:
    """The benchmark app: ``bare``, ``full`` (every layer) or ``minus-<Layer>``."""
    app = add_routes(FastAPI(openapi_url=None, docs_url=None, redoc_url=None))
    if row == "bare":
        return app
    settings = Settings(ENVIRONMENT="production", cors_origins=[ORIGIN])
    exclude = [row.split("-", 1)[1]] if row.startswith("minus-") else []
    setup_app(
        app,
        settings,
        exclude_middleware=exclude,
        middleware_options={
            "RateLimitMiddleware": {
                "rules": [RateLimitRule(requests_per_window=1_000_000_000, window_seconds=60)],
                "use_redis": False,
            },
        },
    )
    return app


def http_scope(path: str) -> dict[str, Any]:
    """A GET as the HTTP benchmark's client sends it (gzip accepted, an Origin)."""
    raw, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw,
        "raw_path": raw.encode(),
        "query_string": (query or "page=1").encode() if raw == "/items" else query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"accept-encoding", b"gzip"),
            (b"origin", ORIGIN.encode()),
            (b"user-agent", b"wrk"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def asgi_get(app: Any, path: str) -> tuple[int, bytes, dict[bytes, bytes]]:
    """One in-process request; returns status, (decompressed) body and headers."""
    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    await app(http_scope(path), receive, send)
    start = out[0]
    headers = dict(start["headers"])
    body = b"".join(m.get("body", b"") for m in out[1:])
    if headers.get(b"content-encoding") == b"gzip":
        body = gzip.decompress(body)
    return start["status"], body, headers


def check_layered(row: str, route: str, status: int, body: bytes, headers: dict[bytes, bytes]) -> None:
    """Assert the app answered as its row promises."""
    assert status == 200, (row, route, status, body[:200])
    doc = orjson.loads(body)
    enveloped = row not in ("bare", "minus-ResponseFormatterMiddleware")
    data = doc["data"] if enveloped else doc
    if route == "hello":
        assert data == {"message": "hello"}
    else:
        assert isinstance(data, list) and len(data) == 20
    if row == "full":
        for name in (b"x-request-id", b"traceparent", b"x-ratelimit-limit",
                     b"access-control-allow-origin", b"content-security-policy", b"cache-control"):
            assert name in headers, name
        assert route != "items" or headers.get(b"content-encoding") == b"gzip"


async def _batch(app: Any, path: str, n: int) -> None:
    for _ in range(n):
        await asgi_get(app, path)


@pytest.mark.parametrize("route", list(LAYER_ROUTES))
@pytest.mark.parametrize("row", LAYER_ROWS)
def test_layer_cost(benchmark: Any, row: str, route: str) -> None:
    """40 in-process GETs through bare FastAPI, the full stack, or the stack minus one layer."""
    benchmark.group = f"middleware-layers-{route}"
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["row"] = row
    benchmark.extra_info["requests_per_round"] = LAYER_BATCH
    path = LAYER_ROUTES[route]
    app = layered_app(row)
    full = layered_app("full") if row.startswith("minus-") else None
    loop = asyncio.new_event_loop()
    try:
        check_layered(row, route, *loop.run_until_complete(asgi_get(app, path)))
        if full is None:
            benchmark.pedantic(
                lambda: loop.run_until_complete(_batch(app, path, LAYER_BATCH)),
                rounds=LAYER_ROUNDS, warmup_rounds=2, iterations=1,
            )
            return
        full_times: list[float] = []
        own_times: list[float] = []

        def setup() -> None:
            started = time.perf_counter()
            loop.run_until_complete(_batch(full, path, LAYER_BATCH))
            full_times.append(time.perf_counter() - started)

        def target() -> None:
            started = time.perf_counter()
            loop.run_until_complete(_batch(app, path, LAYER_BATCH))
            own_times.append(time.perf_counter() - started)

        benchmark.pedantic(target, setup=setup, rounds=LAYER_ROUNDS, warmup_rounds=2, iterations=1)
        diffs = sorted((f - o) / LAYER_BATCH * 1e6 for f, o in zip(full_times, own_times))
        benchmark.extra_info["marginal_us_median"] = round(diffs[len(diffs) // 2], 2)
    finally:
        loop.close()


def layer_table(rounds: int = 25, batch: int = 40, routes: tuple[str, ...] = ("hello", "items")) -> dict[str, Any]:
    """Per-request µs of every row (best of alternating rounds) and each layer's marginal cost."""
    apps = {row: layered_app(row) for row in LAYER_ROWS}
    loop = asyncio.new_event_loop()
    table: dict[str, Any] = {}
    try:
        for route in routes:
            path = LAYER_ROUTES[route]
            for row, app in apps.items():
                check_layered(row, route, *loop.run_until_complete(asgi_get(app, path)))
                loop.run_until_complete(_batch(app, path, batch))  # warm
            times: dict[str, list[float]] = {row: [] for row in apps}
            for _ in range(rounds):
                for row, app in apps.items():
                    started = time.perf_counter()
                    loop.run_until_complete(_batch(app, path, batch))
                    times[row].append((time.perf_counter() - started) / batch * 1e6)
            # the best round of each row: on a shared machine the minimum is the estimate
            # least disturbed by other processes (rounds alternate, so all rows had the chance)
            med = {row: min(v) for row, v in times.items()}
            table[route] = {
                "us": {row: round(v, 1) for row, v in med.items()},
                "marginal_us": {
                    layer: round(med["full"] - med[f"minus-{layer}"], 1) for layer in LAYERS
                },
            }
    finally:
        loop.close()
    return table


def print_layer_table(table: dict[str, Any], file: Any = None) -> None:
    """The table ``layer_table`` measured, one column per route."""
    routes = list(table)
    out = file if file is not None else sys.stdout

    def print(*args: Any) -> None:  # noqa: A001 - the table goes to ``out``
        out.write(" ".join(str(a) for a in args) + "\n")

    print(f"{'row':<34}" + "".join(f"{r + ' µs/req':>16}" for r in routes))
    for row in ("bare", "full"):
        print(f"{row:<34}" + "".join(f"{table[r]['us'][row]:>16.1f}" for r in routes))
    print(f"{'full / bare (in-process)':<34}" + "".join(
        f"{table[r]['us']['full'] / table[r]['us']['bare']:>15.2f}x" for r in routes))
    print("marginal cost of each layer (full - full without it):")
    for layer in LAYERS:
        print(f"  {layer:<32}" + "".join(f"{table[r]['marginal_us'][layer]:>16.1f}" for r in routes))


if __name__ == "__main__":
    # the production log lines are written (their cost is part of the stack) to /dev/null;
    # the table goes to the real stdout
    table_out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    print_layer_table(layer_table(), file=table_out)
    table_out.flush()
