"""Security review, finding 13: production mode exposed internals.

``/docs``, ``/openapi.json`` and ``/demo/errors/*`` were live, ``/metrics`` anonymous and exempt
from rate limits, ``/health`` listed versions and backends, 5xx bodies carried details. In
production these are now off or for operators only, and 5xx bodies are generic.
"""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher

from crown_nexus.core.exceptions import DatabaseException, ServiceException
from crown_nexus.core.security import configure_security
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

SECRET = "production-mode-secret-0123456789-abcdefgh"
METRICS_TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def cheap_argon2():  # type: ignore[no-untyped-def]
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


def _app(tmp_path: Any, environment: str = "production", **extra: Any) -> Any:
    app = create_app(
        Settings(
            ENVIRONMENT=environment,
            secret_key=SECRET,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/prod.db",
            metrics_token=METRICS_TOKEN,
            **extra,
        )
    )

    @app.get("/boom/{kind}")
    async def boom(kind: str) -> None:
        if kind == "db":
            raise DatabaseException(message="insert into users failed", details={"table": "users"})
        raise ServiceException(message="payments-svc at 10.0.0.7 refused", details={"service": "payments-svc"})

    return app


async def test_docs_and_demo_errors_are_off(tmp_path: Any) -> None:
    """No interactive docs, OpenAPI document or deliberate-failure routes in production."""
    async with app_client(_app(tmp_path)) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/demo/errors/internal"):
            assert (await client.get(path)).status_code == 404, path
    async with app_client(_app(tmp_path, "development")) as client:
        assert (await client.get("/openapi.json")).status_code == 200
    async with app_client(_app(tmp_path, docs_enabled=True)) as client:
        assert (await client.get("/openapi.json")).status_code == 200


async def test_metrics_need_the_token_or_an_admin(tmp_path: Any) -> None:
    """Anonymous and wrong-token scrapes are 401; the token or an admin reads; it is rate limited."""
    async with app_client(_app(tmp_path)) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert ok.status_code == 200 and "text/plain" in ok.headers["content-type"]
        assert "x-ratelimit-limit" in ok.headers
        login = await client.post(
            "/auth/login", json={"email": "admin@example.com", "password": "Crown-Admin-2024!"}
        )
        token = login.json()["data"]["access_token"]
        admin = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert admin.status_code == 200
        login = await client.post(
            "/auth/login", json={"email": "user@example.com", "password": "Crown-User-2024!"}
        )
        token = login.json()["data"]["access_token"]
        user = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert user.status_code == 401


async def test_health_says_only_the_status(tmp_path: Any) -> None:
    """Anonymous /health shows no version, implementations or backends; operators see them."""
    async with app_client(_app(tmp_path)) as client:
        anonymous = (await client.get("/health")).json()
        body = anonymous.get("data", anonymous)
        assert body == {"status": "ok"}
        operator = (await client.get("/health", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).json()
        body = operator.get("data", operator)
        assert "version" in body and "backends" in body


@pytest.mark.parametrize("kind", ["db", "svc"])
async def test_server_errors_are_generic(tmp_path: Any, kind: str) -> None:
    """A 5xx body names no table, service or address in production."""
    async with app_client(_app(tmp_path)) as client:
        resp = await client.get(f"/boom/{kind}")
    assert resp.status_code in (500, 502)
    body = resp.json()
    assert body["details"] is None
    for secret in ("users", "payments-svc", "10.0.0.7", "insert"):
        assert secret not in resp.text
    assert body["code"] in ("DATABASE_ERROR", "SERVICE_ERROR")
