"""install_exception_handlers: every error a FastAPI app raises renders the SPEC §3 body."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from crown_nexus.core.exceptions import (
    AuthenticationException,
    RateLimitException,
    install_exception_handlers,
)
from crown_nexus.logging import request_context
from crown_nexus.settings import Settings

KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}


class Item(BaseModel):
    """A body with one constrained field."""

    name: str
    price: float


def make_app(environment: str = "development") -> FastAPI:
    app = FastAPI()
    app.state.settings = Settings(
        ENVIRONMENT=environment, secret_key="x" * 40 if environment == "production" else "dev"
    )
    install_exception_handlers(app)

    @app.get("/auth")
    async def auth() -> None:
        raise AuthenticationException(message="Invalid credentials")

    @app.get("/limited")
    async def limited() -> None:
        raise RateLimitException(message="Too many requests", reset_seconds=5)

    @app.get("/http")
    async def http() -> None:
        raise HTTPException(status_code=409, detail={"why": "conflict"}, headers={"X-A": "b"})

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError("secret internal detail")

    @app.get("/with-id")
    async def with_id() -> None:
        raise AuthenticationException()

    @app.post("/items")
    async def items(item: Item, count: int = 1) -> dict[str, int]:
        return {"count": count}

    return app


def with_request_id(app, request_id: str):
    """A pure ASGI wrapper that runs every request in a logging request context."""

    async def wrapped(scope, receive, send):
        with request_context(request_id=request_id):
            await app(scope, receive, send)

    return wrapped


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def check_body(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == KEYS
    assert body["success"] is False
    assert body["code"] == code
    assert datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    return body


async def test_app_exception_status_code_headers(client) -> None:
    """AppException keeps its status, code and headers."""
    resp = await client.get("/auth")
    body = check_body(resp, 401, "AUTHENTICATION_ERROR")
    assert body["message"] == "Invalid credentials"
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_rate_limit_retry_after(client) -> None:
    """RateLimitException answers 429 with Retry-After."""
    resp = await client.get("/limited")
    check_body(resp, 429, "RATE_LIMIT_EXCEEDED")
    assert resp.headers["retry-after"] == "5"


async def test_request_validation_error_is_422_with_errors(client) -> None:
    """FastAPI's RequestValidationError renders as 422 with loc/msg/type items only."""
    resp = await client.post("/items?count=abc", json={"name": "x", "price": "free"})
    body = check_body(resp, 422, "VALIDATION_ERROR")
    assert isinstance(body["details"], list) and len(body["details"]) == 2
    for item in body["details"]:
        assert set(item) == {"loc", "msg", "type"}
    locs = [item["loc"] for item in body["details"]]
    assert ["body", "price"] in locs and ["query", "count"] in locs


async def test_malformed_json_body_is_422(client) -> None:
    """A body that is not JSON is a client error, never a 500."""
    resp = await client.post(
        "/items", content=b"{not json", headers={"content-type": "application/json"}
    )
    check_body(resp, 422, "VALIDATION_ERROR")


async def test_http_exception_keeps_status_and_headers(client) -> None:
    """Starlette's HTTPException keeps its status, headers and structured detail."""
    resp = await client.get("/http")
    body = check_body(resp, 409, "RESOURCE_ALREADY_EXISTS")
    assert body["details"] == {"why": "conflict"}
    assert resp.headers["x-a"] == "b"


async def test_unknown_route_and_method(client) -> None:
    """Unknown routes are 404 and wrong methods 405, in the same body."""
    check_body(await client.get("/missing"), 404, "RESOURCE_NOT_FOUND")
    check_body(await client.delete("/auth"), 405, "METHOD_NOT_ALLOWED")


async def test_unexpected_exception_development(client) -> None:
    """In development a 500 names the exception type but not its text."""
    body = check_body(await client.get("/boom"), 500, "INTERNAL_SERVER_ERROR")
    assert "ValueError" in body["message"]
    assert "secret" not in body["message"]


async def test_unexpected_exception_production() -> None:
    """In production a 500 says nothing about the exception."""
    transport = httpx.ASGITransport(app=make_app("production"), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = check_body(await c.get("/boom"), 500, "INTERNAL_SERVER_ERROR")
    assert body["message"] == "Internal server error"
    assert body["details"] is None


async def test_request_id_comes_from_logging_context() -> None:
    """request_id in the body is the current request id."""
    app = with_request_id(make_app(), "rid-123")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = check_body(await c.get("/with-id"), 401, "AUTHENTICATION_ERROR")
    assert body["request_id"] == "rid-123"


async def test_server_side_app_exceptions_are_reported_client_ones_not() -> None:
    """5xx AppExceptions reach the reporters through the handlers; 4xx ones do not."""
    from crown_nexus.core.exceptions import DatabaseException
    from crown_nexus.testing import capture_errors

    app = make_app()

    @app.get("/db")
    async def db() -> None:
        raise DatabaseException(message="insert failed")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with capture_errors() as errors:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            check_body(await c.get("/db"), 500, "DATABASE_ERROR")
            check_body(await c.get("/auth"), 401, "AUTHENTICATION_ERROR")
    assert [e.type for e in errors.recent()] == ["DatabaseException"]
    assert errors.recent()[0].context.function == "GET /db"
