"""HTTP tests of /demo/errors/{kind}: every error body of the reference service."""

from __future__ import annotations

from datetime import datetime

import pytest

from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}

CASES = [
    ("not_found", 404, "RESOURCE_NOT_FOUND", {"resource_type": "User", "resource_id": "123"}),
    (
        "already_exists",
        409,
        "RESOURCE_ALREADY_EXISTS",
        {"resource_type": "User", "field": "email", "identifier": "user@example.com"},
    ),
    ("authentication", 401, "AUTHENTICATION_ERROR", {"reason": "expired_token"}),
    (
        "permission_denied",
        403,
        "PERMISSION_DENIED",
        {"action": "edit", "resource_type": "Document", "permission": "documents:write"},
    ),
    ("business", 400, "BUSINESS_LOGIC_ERROR", {"reason": "insufficient_inventory"}),
    (
        "invalid_state",
        409,
        "INVALID_STATE",
        {"current_state": "approved", "expected_state": "pending"},
    ),
    (
        "operation_not_allowed",
        403,
        "OPERATION_NOT_ALLOWED",
        {"operation": "delete", "reason": "system_account"},
    ),
    ("security", 403, "SECURITY_ERROR", {"error": "Invalid or expired CSRF token"}),
    ("rate_limit", 429, "RATE_LIMIT_EXCEEDED", {"headers": {"Retry-After": "60"}}),
    ("database", 500, "DATABASE_ERROR", {"table": "users"}),
    ("configuration", 500, "CONFIGURATION_ERROR", None),
    ("service", 502, "SERVICE_ERROR", {"service_name": "stripe"}),
    ("network", 503, "NETWORK_ERROR", None),
    ("http", 418, "HTTP_ERROR", None),
]


@pytest.fixture
async def client(tmp_path):
    """A client on a fresh development demo app."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/e.db"))
    async with app_client(app) as c:
        yield c


def check(resp, status: int, code: str) -> dict:
    """Assert the SPEC §3 body and return it."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == KEYS
    assert body["success"] is False
    assert body["code"] == code
    ts = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert ts.utcoffset().total_seconds() == 0
    assert body["timestamp"].endswith("Z")
    return body


@pytest.mark.parametrize(("kind", "status", "code", "details"), CASES)
async def test_each_error_body(client, kind, status, code, details) -> None:
    """Each kind answers its status and code with the SPEC §3 body and a request id."""
    resp = await client.get(f"/demo/errors/{kind}", headers={"X-Request-ID": f"rid-{kind}"})
    body = check(resp, status, code)
    assert body["details"] == details
    assert resp.headers.get("cache-control") == ("no-cache" if status == 404 else "no-store")
    assert body["request_id"] == resp.headers["x-request-id"] == f"rid-{kind}"


async def test_authentication_header(client) -> None:
    """401 carries WWW-Authenticate: Bearer."""
    resp = await client.get("/demo/errors/authentication")
    check(resp, 401, "AUTHENTICATION_ERROR")
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_rate_limit_retry_after(client) -> None:
    """429 carries Retry-After."""
    resp = await client.get("/demo/errors/rate_limit")
    check(resp, 429, "RATE_LIMIT_EXCEEDED")
    assert resp.headers["retry-after"] == "60"


async def test_validation_error_list(client) -> None:
    """ValidationException details are its errors list."""
    body = check(await client.get("/demo/errors/validation"), 422, "VALIDATION_ERROR")
    assert body["details"] == [
        {
            "loc": ["username"],
            "msg": "Username must be at least 3 characters",
            "type": "value_error.length",
        },
        {"loc": ["email"], "msg": "Invalid email format", "type": "value_error.email"},
    ]


async def test_unexpected_in_development_names_type_only(client) -> None:
    """In development a 500 names the exception type, never its text."""
    body = check(await client.get("/demo/errors/unexpected"), 500, "INTERNAL_SERVER_ERROR")
    assert "RuntimeError" in body["message"]
    assert "hunter2" not in str(body) and "10.0.0.5" not in str(body)


async def test_unexpected_in_production_says_nothing(tmp_path) -> None:
    """In production a 500 says only 'Internal server error'; the /demo/errors routes are gone."""
    app = create_app(
        Settings(
            ENVIRONMENT="production",
            secret_key="p" * 48,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/p.db",
        )
    )

    @app.get("/unexpected")
    async def unexpected() -> None:
        raise RuntimeError("db password hunter2 at 10.0.0.5")

    async with app_client(app) as client:
        assert (await client.get("/demo/errors/unexpected")).status_code == 404
        resp = await client.get("/unexpected")
    body = check(resp, 500, "INTERNAL_SERVER_ERROR")
    assert body["message"] == "Internal server error"
    assert "RuntimeError" not in resp.text and "hunter2" not in resp.text


async def test_unknown_route_404(client) -> None:
    """Unknown routes answer 404 in the same body."""
    check(await client.get("/no/such/route"), 404, "RESOURCE_NOT_FOUND")


async def test_fastapi_validation_422(client) -> None:
    """An unknown kind is FastAPI's request validation error, rendered as 422 with loc/msg/type."""
    body = check(await client.get("/demo/errors/bogus"), 422, "VALIDATION_ERROR")
    assert len(body["details"]) == 1
    item = body["details"][0]
    assert set(item) == {"loc", "msg", "type"}
    assert item["loc"] == ["path", "kind"]


async def test_success_bodies_are_enveloped(client) -> None:
    """Successful JSON is wrapped as {success, data, meta}."""
    resp = await client.get("/health")
    body = resp.json()
    assert resp.status_code == 200
    assert body["success"] is True and "data" in body
    assert set(body["meta"]) == {"request_id", "timestamp"}


async def test_list_kinds(client) -> None:
    """GET /demo/errors lists every kind, enveloped like any successful JSON."""
    resp = await client.get("/demo/errors")
    assert resp.status_code == 200
    kinds = resp.json()["data"]["kinds"]
    assert "not_found" in kinds and "unexpected" in kinds
    assert {c[0] for c in CASES} <= set(kinds)


async def test_recent_errors_ring(client) -> None:
    """/demo/errors/recent lists reported 5xx errors newest first, without their text."""
    await client.get("/demo/errors/unexpected", headers={"X-Request-ID": "rid-recent-1"})
    await client.get("/demo/errors/database", headers={"X-Request-ID": "rid-recent-2"})
    resp = await client.get("/demo/errors/recent?limit=2")
    assert resp.status_code == 200
    items = resp.json()["data"]["errors"]
    assert [i["request_id"] for i in items] == ["rid-recent-2", "rid-recent-1"]
    assert items[0]["code"] == "DATABASE_ERROR"
    assert items[1]["type"] == "RuntimeError" and items[1]["code"] == "INTERNAL_SERVER_ERROR"
    assert "hunter2" not in resp.text


async def test_recent_errors_hidden_in_production(tmp_path) -> None:
    """In production /demo/errors/recent is a 404."""
    app = create_app(
        Settings(
            ENVIRONMENT="production",
            secret_key="p" * 48,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/r.db",
        )
    )
    async with app_client(app) as client:
        resp = await client.get("/demo/errors/recent")
    check(resp, 404, "RESOURCE_NOT_FOUND")
