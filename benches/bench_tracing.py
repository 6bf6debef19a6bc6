"""Cost of tracing on the request path: the full ``setup_app`` stack with and without
``TracingMiddleware``, with no tracer provider (the default) and with an SDK provider that has
no exporter.

Group ``middleware-tracing``: 50 GETs answering a small JSON body through
- ``bare-fastapi``: the FastAPI app alone (no crown-nexus middleware);
- ``stack-without-tracing``: ``setup_app``'s stack minus ``TracingMiddleware``;
- ``stack-with-tracing``: the whole stack (``TracingMiddleware`` in it), no provider: the
  tracing layer must cost next to nothing here;
- ``stack-with-tracing-sdk``: the whole stack with an SDK ``TracerProvider`` and no exporter
  (FastAPI's server and endpoint spans and crown-nexus's spans are recorded, then dropped).
  OpenTelemetry sets the global provider once per process, so this one only runs when
  ``CROWN_NEXUS_BENCH_OTEL_SDK=1`` (run the file a second time with it set; the others are then
  skipped).
Group ``tracing-layer``: ``TracingMiddleware`` alone around a plain ASGI endpoint (``bare``
is the endpoint alone), with and without an incoming ``traceparent``: the layer's own cost per
request (with ``CROWN_NEXUS_BENCH_OTEL_SDK=1`` it starts its own ``SERVER`` span, there being no
FastAPI span around it).
Run: ``pytest benches/bench_tracing.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
import pytest
from fastapi import FastAPI

from crown_nexus import accel
from crown_nexus.core.tracing import tracing_enabled
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.settings import Settings

SDK = os.environ.get("CROWN_NEXUS_BENCH_OTEL_SDK") == "1"
if SDK:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())  # recording spans, no processor, no exporter

PAYLOAD = {"id": 42, "name": "Widget", "tags": ["a", "b", "c"], "price": 9.99}
BATCH = 50


def make_app(variant: str) -> Any:
    app = FastAPI()

    @app.get("/item")
    async def item() -> dict[str, Any]:
        return PAYLOAD

    if variant == "bare-fastapi":
        return app
    settings = Settings(ENVIRONMENT="test", database_url="sqlite+aiosqlite:///:memory:")
    exclude = ["TracingMiddleware"] if variant == "stack-without-tracing" else []
    return setup_app(app, settings, exclude_middleware=exclude, manage_services=False)


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
        "headers": [
            (b"host", b"bench"),
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }


async def one_request(app: Any) -> tuple[int, bytes, dict[bytes, bytes]]:
    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    await app(scope_for("/item"), receive, send)
    body = b"".join(m.get("body", b"") for m in out[1:])
    return out[0]["status"], body, dict(out[0]["headers"])


async def many(app: Any, n: int) -> None:
    for _ in range(n):
        await one_request(app)


VARIANTS = ["bare-fastapi", "stack-without-tracing", "stack-with-tracing", "stack-with-tracing-sdk"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_request_path(benchmark: Any, variant: str) -> None:
    """50 GETs through the variant's app (see the module docstring)."""
    if (variant == "stack-with-tracing-sdk") != SDK:
        pytest.skip("the SDK variant runs alone, with CROWN_NEXUS_BENCH_OTEL_SDK=1")
    benchmark.group = "middleware-tracing"
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["variant"] = variant
    benchmark.extra_info["requests_per_round"] = BATCH
    assert tracing_enabled() is SDK
    app = make_app(variant)
    loop = asyncio.new_event_loop()
    try:
        status, body, headers = loop.run_until_complete(one_request(app))
        assert status == 200
        data = orjson.loads(body)
        assert (data if variant == "bare-fastapi" else data["data"]) == PAYLOAD
        if variant.startswith("stack-with-tracing"):
            assert headers[b"traceparent"].startswith(b"00-4bf92f3577b34da6a3ce929d0e0e4736-")
        benchmark(lambda: loop.run_until_complete(many(app, BATCH)))
    finally:
        loop.close()


async def _endpoint(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.parametrize("variant", ["bare", "layer-new-trace", "layer-continued-trace"])
def test_tracing_layer(benchmark: Any, variant: str) -> None:
    """50 GETs through TracingMiddleware alone (see the module docstring)."""
    from crown_nexus.middleware.tracing import TracingMiddleware

    benchmark.group = "tracing-layer"
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["variant"] = variant
    benchmark.extra_info["sdk"] = SDK
    benchmark.extra_info["requests_per_round"] = BATCH
    app: Any = _endpoint if variant == "bare" else TracingMiddleware(_endpoint)
    headers = scope_for("/item")["headers"]
    if variant != "layer-continued-trace":
        headers = headers[:1]  # host only

    async def many_layer(n: int) -> dict[bytes, bytes]:
        out: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            out.append(message)

        for _ in range(n):
            out.clear()
            scope = {**scope_for("/item"), "headers": headers}
            await app(scope, receive, send)
        return dict(out[0]["headers"])

    loop = asyncio.new_event_loop()
    try:
        got = loop.run_until_complete(many_layer(1))
        if variant == "layer-continued-trace":
            assert got[b"traceparent"].startswith(b"00-4bf92f3577b34da6a3ce929d0e0e4736-")
        elif variant == "layer-new-trace":
            assert len(got[b"traceparent"]) == 55
        benchmark(lambda: loop.run_until_complete(many_layer(BATCH)))
    finally:
        loop.close()
