"""Security review, finding 12: errors from the outer layers lacked security and CORS headers.

A 413, 400, 429 or 504 answered by a middleware (not a route) went out without the security
headers and without the CORS grant, so a browser could not even read the 429; and a body that
arrived chunked past the limit was answered 400 (FastAPI's "error parsing the body") instead of
413. Both are tested over the full stack.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from crown_nexus.core.rate_limiting import RateLimitRule, RateLimitStrategy
from crown_nexus.core.security import configure_security
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

ORIGIN = "https://app.example"
SECRET = "outer-errors-secret-0123456789-abcdefghij"


@pytest.fixture(autouse=True)
def _reset() -> Any:
    yield
    configure_security(None)


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.post("/items")
    async def items(body: dict[str, Any]) -> dict[str, int]:
        return {"keys": len(body)}

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(2)
        return {"done": True}

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    rule = RateLimitRule(
        requests_per_window=3, window_seconds=60, strategy=RateLimitStrategy.IP,
        path_pattern="/ok", name="tiny",
    )
    settings = Settings(
        secret_key=SECRET, cors_origins=[ORIGIN], suspicious_content_mode="enforce"
    )
    setup_app(
        app,
        settings,
        middleware_options={
            "RateLimitMiddleware": {"rules": [rule], "use_redis": False},
            "SecureRequestMiddleware": {"max_body_size": 1024},
            "TimeoutMiddleware": {"timeout_seconds": 0.1},
        },
    )
    return app


def _assert_dressed(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "x-frame-options" in resp.headers
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert resp.headers["access-control-allow-credentials"] == "true"
    body = resp.json()
    assert body["success"] is False and body["request_id"]


async def test_every_outer_refusal_carries_security_and_cors_headers() -> None:
    """413 (declared), 414, 431, 400, 429 and 504 answered by middleware are fully dressed."""
    headers = {"Origin": ORIGIN}
    async with app_client(_app()) as client:
        _assert_dressed(await client.post("/upload", content=b"x" * 4096, headers=headers), 413)
        _assert_dressed(await client.get("/slow?q=" + "a" * 9000, headers=headers), 414)
        _assert_dressed(await client.get("/slow", headers={**headers, "X-Big": "b" * 9000}), 431)
        _assert_dressed(await client.get("/slow?q=<script>alert(1)</script>", headers=headers), 400)
        for _ in range(3):
            assert (await client.get("/ok", headers=headers)).status_code == 200
        limited = await client.get("/ok", headers=headers)
        _assert_dressed(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        _assert_dressed(await client.get("/slow", headers=headers), 504)


async def _chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b"y" * size
        sent += size


@pytest.mark.parametrize("path", ["/upload", "/items"])
async def test_chunked_body_past_the_limit_is_413(path: str) -> None:
    """A body with no Content-Length that grows past the limit is 413, not FastAPI's 400."""
    async with app_client(_app()) as client:
        resp = await client.post(path, content=_chunks(8192), headers={"Origin": ORIGIN})
    _assert_dressed(resp, 413)
    assert resp.json()["code"] == "PAYLOAD_TOO_LARGE"


async def test_chunked_body_within_the_limit_is_served() -> None:
    """A small chunked body still reaches the route."""
    async with app_client(_app()) as client:
        resp = await client.post("/upload", content=_chunks(512))
    assert resp.status_code == 200
