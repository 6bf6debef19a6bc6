"""HTTP-level tests of the reference service's rate limits (guide §8)."""

from __future__ import annotations

import pytest

from crown_nexus.demo.app import create_app
from crown_nexus.demo.routers.rate_limits import AUTH_RULE, GLOBAL_RULE
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.demo._auth import USER, bearer

BODY_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}


def data_of(body: dict) -> dict:  # type: ignore[type-arg]
    """The payload, whether or not ResponseFormatterMiddleware enveloped it."""
    return body.get("data", body) if body.get("success") is True else body


@pytest.fixture
def settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """Embedded defaults on a private SQLite file."""
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/rl.db")


async def test_auth_endpoints_limited_more_strictly(settings: Settings) -> None:
    """21 auth requests: the 21st is a 429 with Retry-After, X-RateLimit-* and the SPEC §3 body."""
    n = AUTH_RULE.requests_per_window
    assert n < GLOBAL_RULE.requests_per_window
    app = create_app(settings)
    async with app_client(app) as client:
        admitted = [await client.post("/auth/login", json={}) for _ in range(n)]
        refused = await client.post("/auth/login", json={})
        elsewhere = await client.get("/rate-limits")
    assert all(r.status_code != 429 for r in admitted)
    assert [r.headers["X-RateLimit-Remaining"] for r in admitted[-2:]] == ["1", "0"]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == str(n)
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Policy"] == f'"auth";q={n};w=60'
    body = refused.json()
    assert set(body) == BODY_KEYS
    assert body["success"] is False and body["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["details"]["retry_after"] == int(refused.headers["Retry-After"])
    if "x-request-id" in refused.headers:  # RequestContextMiddleware wraps the limiter
        assert body["request_id"] == refused.headers["x-request-id"]
    assert elsewhere.status_code == 200
    assert elsewhere.headers["RateLimit-Policy"] == '"global";q=600;w=60'


async def test_status_endpoint_lists_rules_and_client_state(settings: Settings) -> None:
    """GET /rate-limits shows both rules and what this client has left."""
    app = create_app(settings)
    async with app_client(app) as client:
        await client.get("/rate-limits")
        resp = await client.get("/rate-limits")
    assert resp.status_code == 200
    data = data_of(resp.json())
    assert [r["name"] for r in data["rules"]] == ["global", "auth"]
    assert data["rules"][1]["algorithm"] == "sliding_log"
    assert data["client"]["remaining"] == 598
    assert resp.headers["X-RateLimit-Remaining"] == "598"


async def test_health_is_excluded(settings: Settings) -> None:
    """/health is never limited and carries no rate-limit headers."""
    app = create_app(settings)
    async with app_client(app) as client:
        resp = await client.get("/health")
    assert resp.status_code == 200
    assert "X-RateLimit-Limit" not in resp.headers


async def test_reports_limited_in_the_endpoint(settings: Settings) -> None:
    """POST /rate-limits/reports: 3 per hour per user, then 429 with the headers and SPEC §3
    body; another user behind the same address still has their own 3; anonymous is 401."""
    app = create_app(settings)
    async with app_client(app) as client:
        anonymous = await client.post("/rate-limits/reports")
        as_user = await bearer(client, USER)
        ok = [await client.post("/rate-limits/reports", headers=as_user) for _ in range(3)]
        refused = await client.post("/rate-limits/reports", headers=as_user)
        other = await client.post("/rate-limits/reports", headers=await bearer(client))
    assert anonymous.status_code == 401
    assert other.status_code == 201  # per user, not per IP: the same client address
    assert data_of(other.json())["rate_limit"]["current"] == 1
    assert [r.status_code for r in ok] == [201, 201, 201]
    assert [data_of(r.json())["rate_limit"]["current"] for r in ok] == [1, 2, 3]
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["message"] == "Report generation limit exceeded"
    assert refused.json()["details"]["limit"] == 3


async def test_demo_uses_redis_when_configured(settings: Settings, redis_url: str) -> None:
    """With REDIS_URI set the demo's limits live in Redis (shared by every worker)."""
    from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend

    app = create_app(settings.model_copy(update={"REDIS_URI": redis_url}))
    service = app.state.rate_limiting_service
    assert isinstance(service.backend, RedisRateLimitBackend)
    async with app_client(app) as client:
        resp = await client.post("/rate-limits/reports", headers=await bearer(client, USER))
    assert resp.status_code == 201
    await service.close()


async def test_rotating_through_one_ipv6_64_does_not_escape_the_limit(settings: Settings) -> None:
    """61 refreshes, each from another address of one IPv6 /64: the /64 shares one limit, so the
    /auth/ rule answers 429 after its 20; another /64 is unaffected."""
    import httpx

    app = create_app(settings)
    n = AUTH_RULE.requests_per_window
    statuses: list[int] = []
    async with app.router.lifespan_context(app):
        for i in range(61):
            transport = httpx.ASGITransport(app=app, client=(f"2001:db8:77:1::{i + 1:x}", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                resp = await c.post("/auth/refresh", json={"refresh_token": "x"})
            statuses.append(resp.status_code)
        transport = httpx.ASGITransport(app=app, client=("2001:db8:77:2::1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            other = await c.post("/auth/refresh", json={"refresh_token": "x"})
    assert 429 not in statuses[:n]
    assert statuses[n:] == [429] * (61 - n)
    assert int(resp.headers["Retry-After"]) >= 1 and resp.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert other.status_code != 429
