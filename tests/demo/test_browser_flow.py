"""The demo's browser flow over HTTP: a cookie session with CSRF tokens, and Idempotency-Key on orders."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from crown_nexus.core.security import configure_security
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.demo.app import create_app
from crown_nexus.demo.models_orders import Order
from crown_nexus.demo.models_users import ApiKey
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.demo._auth import bearer

USER = {"email": "user@example.com", "password": "Crown-User-2024!"}
SPEC_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}
BASE = "https://testserver"  # the session cookies are Secure


@pytest.fixture(autouse=True)
def cheap_argon2():
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


def _settings(tmp_path, **extra: Any) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/browser.db",
        secret_key="demo-browser-test-secret-0123456789abcdef",
        **extra,
    )


def _data(resp) -> Any:
    body = resp.json()
    if isinstance(body, dict) and body.get("success") is True and "data" in body:
        return body["data"]
    return body


def _assert_csrf_403(resp) -> None:
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert set(body) == SPEC_KEYS and body["code"] == "CSRF_TOKEN_INVALID"


async def _count(app, model) -> int:
    async with app.state.sessionmaker() as db:
        return int(await db.scalar(select(func.count()).select_from(model)))


async def _cookie_login(client) -> str:
    resp = await client.post("/auth/login?session=cookie", json=USER)
    assert resp.status_code == 200, resp.text
    body = _data(resp)
    assert set(body) == {"session", "expires_in", "csrf_token"}  # no token in the page's reach
    session_cookie = next(
        c for c in resp.headers.get_list("set-cookie") if c.startswith("access_token=")
    )
    lowered = session_cookie.lower()
    assert "httponly" in lowered and "secure" in lowered and "samesite=lax" in lowered
    assert client.cookies.get("csrf_token") == body["csrf_token"]
    return str(body["csrf_token"])


async def test_browser_session_with_csrf(tmp_path) -> None:
    """Cookie login; unsafe requests need the session's CSRF header; cross-site posts get 403."""
    app = create_app(_settings(tmp_path))
    async with app_client(app, base_url=BASE) as browser:
        csrf = await _cookie_login(browser)
        me = await browser.get("/users/me")
        assert me.status_code == 200 and _data(me)["auth_method"] == "cookie"

        made = await browser.post(
            "/auth/api-keys", json={"name": "k1", "permissions": []},
            headers={"X-CSRF-Token": csrf},
        )
        assert made.status_code == 201, made.text

        _assert_csrf_403(await browser.post("/auth/api-keys", json={"name": "k2"}))
        # the attack: another site's auto-submitted form, the browser attaching the cookie
        forged = await browser.post(
            "/auth/api-keys",
            content=b"name=evil",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": "https://evil.example",
                "Sec-Fetch-Site": "cross-site",
            },
        )
        _assert_csrf_403(forged)
        assert await _count(app, ApiKey) == 1

        out = await browser.post("/auth/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 200, out.text
        assert browser.cookies.get("access_token") is None
        assert (await browser.get("/users/me")).status_code == 401


async def test_logged_out_cookie_no_longer_authenticates(tmp_path) -> None:
    """A session cookie replayed after logout (revoked login) authenticates nothing."""
    app = create_app(_settings(tmp_path))
    async with app_client(app, base_url=BASE) as browser:
        csrf = await _cookie_login(browser)
        stolen = browser.cookies.get("access_token")
        assert (await browser.post("/auth/logout", headers={"X-CSRF-Token": csrf})).status_code == 200
        browser.cookies.clear()
        replay = await browser.get("/users/me", headers={"Cookie": f"access_token={stolen}"})
        assert replay.status_code == 401
        # a stale cookie never blocks signing in again
        again = await browser.post(
            "/auth/login?session=cookie", json=USER, headers={"Cookie": f"access_token={stolen}"}
        )
        assert again.status_code == 200


async def test_bearer_clients_are_unaffected(tmp_path) -> None:
    """Token clients send no CSRF token: login, create an API key, use it — all as before."""
    app = create_app(_settings(tmp_path))
    async with app_client(app, base_url=BASE) as client:
        pair = _data(await client.post("/auth/login", json=USER))
        client.cookies.clear()
        auth = {"Authorization": f"Bearer {pair['access_token']}"}
        made = await client.post("/auth/api-keys", json={"name": "ci"}, headers=auth)
        assert made.status_code == 201, made.text
        key = _data(made)["api_key"]
        me = await client.get("/users/me", headers={"X-API-Key": key})
        assert me.status_code == 200 and _data(me)["auth_method"] == "api_key"


async def test_order_posted_twice_with_one_key_is_created_once(tmp_path) -> None:
    """Two identical POST /orders with one Idempotency-Key make one order; another body is 422."""
    app = create_app(_settings(tmp_path))
    key = {"Idempotency-Key": f'"{uuid.uuid4()}"'}
    order = {"items": [{"product_id": 1, "quantity": 1}]}
    async with app_client(app, base_url=BASE) as client:
        client.headers.update(await bearer(client, USER))  # orders need an authenticated caller
        first = await client.post("/orders", json=order, headers=key)
        second = await client.post("/orders", json=order, headers=key)
        assert first.status_code == second.status_code == 202
        assert _data(first)["id"] == _data(second)["id"]
        assert second.headers["idempotent-replayed"] == "true"
        other = await client.post(
            "/orders", json={**order, "items": [{"product_id": 1, "quantity": 9}]}, headers=key
        )
        assert other.status_code == 422 and other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert await _count(app, Order) == 1


async def test_browser_order_needs_csrf_and_is_idempotent(tmp_path) -> None:
    """A browser session places an order with its CSRF token and a key; a resend is a replay."""
    app = create_app(_settings(tmp_path))
    order = {"items": [{"product_id": 2, "quantity": 1}]}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    async with app_client(app, base_url=BASE) as browser:
        csrf = await _cookie_login(browser)
        _assert_csrf_403(await browser.post("/orders", json=order, headers=key))
        headers = {**key, "X-CSRF-Token": csrf}
        first = await browser.post("/orders", json=order, headers=headers)
        again = await browser.post("/orders", json=order, headers=headers)
        assert first.status_code == 202 and again.headers["idempotent-replayed"] == "true"
        assert _data(first)["id"] == _data(again)["id"]
        assert await _count(app, Order) == 1


async def test_idempotency_shared_by_two_demo_workers(tmp_path, redis_url: str) -> None:
    """Two demo instances on one database and one Redis: a resend to the other worker replays."""
    settings = _settings(tmp_path, REDIS_URI=redis_url)
    one, two = create_app(settings), create_app(settings)
    order = {"items": [{"product_id": 1, "quantity": 2}]}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    async with app_client(one, base_url=BASE) as c1, app_client(two, base_url=BASE) as c2:
        key.update(await bearer(c1, USER))  # one login, honoured by both workers
        first = await c1.post("/orders", json=order, headers=key)
        second = await c2.post("/orders", json=order, headers=key)
        assert first.status_code == 202 and second.headers["idempotent-replayed"] == "true"
        assert _data(first)["id"] == _data(second)["id"]
        assert await _count(one, Order) == 1
