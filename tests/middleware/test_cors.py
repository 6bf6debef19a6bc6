"""crown_nexus.middleware.cors.CORSMiddleware answers exactly as Starlette's CORSMiddleware."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware as StarletteCORSMiddleware

from crown_nexus.middleware.cors import CORSMiddleware

CONFIGS: list[dict[str, Any]] = [
    {"allow_origins": ["https://a.example"], "allow_credentials": True, "allow_methods": ["*"],
     "allow_headers": ["*"]},
    {"allow_origins": ["*"]},
    {"allow_origins": ["*"], "allow_credentials": True},
    {"allow_origin_regex": r"https://.*\.example", "expose_headers": ["X-A", "X-B"]},
    {"allow_origins": ["https://a.example"], "allow_private_network": True},
]
RESPONSE_HEADERS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"vary", b"Accept-Encoding")],
    [(b"vary", b"Accept-Encoding"), (b"content-type", b"x"), (b"vary", b"Cookie")],
    [(b"access-control-allow-origin", b"zz"), (b"access-control-allow-credentials", b"no"),
     (b"Access-Control-Allow-Origin", b"up")],
]
REQUESTS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"origin", b"https://a.example")],
    [(b"origin", b"https://b.example"), (b"origin", b"https://a.example")],
    [(b"origin", b"https://evil.test"), (b"cookie", b"a=1")],
    [(b"origin", b"https://a.example"), (b"access-control-request-method", b"GET"),
     (b"access-control-request-headers", b"X-Y")],
    [(b"origin", b"https://x.example"), (b"access-control-request-method", b"PUT"),
     (b"access-control-request-private-network", b"true")],
]


def _app(headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"x"})

    return app


async def _run(mw: Any, method: str, request_headers: list[tuple[bytes, bytes]]) -> list[Any]:
    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    scope = {"type": "http", "method": method, "path": "/", "headers": list(request_headers),
             "query_string": b""}
    await mw(scope, receive, send)
    return [(m["type"], m.get("status"), m.get("headers"), m.get("body")) for m in out]


@pytest.mark.parametrize("config", CONFIGS)
async def test_same_answers_as_starlette(config: dict[str, Any]) -> None:
    """Every combination of response headers, request headers and method gets the very same
    messages (status, headers in order, body) from both middleware, preflights included."""
    for response_headers, request_headers, method in itertools.product(
        RESPONSE_HEADERS, REQUESTS, ["GET", "OPTIONS"]
    ):
        ours = await _run(CORSMiddleware(_app(response_headers), **config), method, request_headers)
        theirs = await _run(
            StarletteCORSMiddleware(_app(response_headers), **config), method, request_headers
        )
        assert ours == theirs, (response_headers, request_headers, method)


def test_is_starlettes_cors() -> None:
    """It is a Starlette CORSMiddleware (isinstance checks and its attributes keep working)."""
    mw = CORSMiddleware(_app([]), allow_origins=["https://a.example"])
    assert isinstance(mw, StarletteCORSMiddleware) and mw.allow_origins == ["https://a.example"]
