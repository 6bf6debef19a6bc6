"""HTTP attacks on the reference service's POST /auth/login: the per-account failed-login backoff."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from crown_nexus.core.security import configure_security
from crown_nexus.core.security.login_throttle import THROTTLED_MESSAGE
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import freeze_time

USER = {"email": "user@example.com", "password": "Crown-User-2024!"}
WRONG = {"email": "user@example.com", "password": "guess-123"}
SPEC_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}
ATTACKER = "198.51.100.66"
VICTIM = "203.0.113.20"
THROTTLE_CLOCK = [("crown_nexus.core.security.login_throttle", "_now", "time")]


@pytest.fixture(autouse=True)
def cheap_argon2():  # type: ignore[no-untyped-def]
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


def _settings(tmp_path, name: str = "auth", **extra: Any) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/{name}.db",
        secret_key="demo-throttle-test-secret-0123456789abcdef",
        **extra,
    )


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """Run the app's lifespan; yield a factory of clients calling from a given IP address."""
    clients: list[httpx.AsyncClient] = []

    def from_ip(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(client)
        return client

    async with app.router.lifespan_context(app):
        try:
            yield from_ip
        finally:
            for client in clients:
                await client.aclose()


def _assert_throttled(resp: httpx.Response) -> int:
    assert resp.status_code == 429, resp.text
    body = resp.json()
    assert set(body) == SPEC_KEYS
    assert body["success"] is False and body["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["message"] == THROTTLED_MESSAGE
    retry_after = int(resp.headers["Retry-After"])
    assert retry_after >= 1 and body["details"]["retry_after"] == retry_after
    return retry_after


async def test_24_wrong_passwords_are_throttled_and_the_victim_still_logs_in(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """24 guesses at one account: 401 five times, then 429 + Retry-After without the password
    being checked; the owner logging in from their own network still gets in."""
    app = create_app(_settings(tmp_path))
    service = app.state.security_service
    checked: list[str] = []
    real_verify = service.verify_and_rehash

    async def counting(password: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(password)
        return await real_verify(password, *args, **kwargs)

    monkeypatch.setattr(service, "verify_and_rehash", counting)
    async with serving(app) as from_ip:
        attacker, victim = from_ip(ATTACKER), from_ip(VICTIM)
        responses = [await attacker.post("/auth/login", json=WRONG) for _ in range(24)]
        assert [r.status_code for r in responses[:5]] == [401] * 5
        assert all(r.status_code == 429 for r in responses[5:])
        for resp in responses[5:20]:  # the throttle answers (the per-IP /auth/ rule comes later)
            _assert_throttled(resp)
        assert checked == ["guess-123"] * 5  # no password check while throttled
        # even the right password is refused from the throttled network (by now the per-IP
        # /auth/ rule refuses it too)
        assert (await attacker.post("/auth/login", json=USER)).status_code == 429
        ok = await victim.post("/auth/login", json=USER)
        assert ok.status_code == 200, ok.text
        assert "access_token" in ok.json().get("data", ok.json())


async def test_unknown_accounts_count_the_same(tmp_path) -> None:
    """Guessing at an email that does not exist is throttled exactly like a real account, so
    the answers reveal nothing about which accounts exist."""
    app = create_app(_settings(tmp_path))
    async with serving(app) as from_ip:
        attacker = from_ip(ATTACKER)
        ghost = {"email": "nobody@example.com", "password": "guess-123"}
        real = [await attacker.post("/auth/login", json=WRONG) for _ in range(6)]
        fake = [await attacker.post("/auth/login", json=ghost) for _ in range(6)]
    assert [r.status_code for r in real] == [r.status_code for r in fake] == [401] * 5 + [429]
    assert real[0].json()["message"] == fake[0].json()["message"] == "Invalid credentials"
    assert _assert_throttled(real[5]) == _assert_throttled(fake[5]) == 1


async def test_backoff_grows_then_expires_and_success_resets(tmp_path) -> None:
    """The delay doubles with each further failure, expires on the clock, and a successful
    login starts the count again."""
    app = create_app(_settings(tmp_path))
    with freeze_time(hooks=THROTTLE_CLOCK) as clock:
        async with serving(app) as from_ip:
            attacker = from_ip(ATTACKER)
            for _ in range(5):
                assert (await attacker.post("/auth/login", json=WRONG)).status_code == 401
            assert _assert_throttled(await attacker.post("/auth/login", json=USER)) == 1
            clock.advance(1.0)
            assert (await attacker.post("/auth/login", json=WRONG)).status_code == 401
            assert _assert_throttled(await attacker.post("/auth/login", json=USER)) == 2
            clock.advance(2.0)
            assert (await attacker.post("/auth/login", json=USER)).status_code == 200
            after = [await attacker.post("/auth/login", json=WRONG) for _ in range(4)]
            assert [r.status_code for r in after] == [401] * 4


async def test_delay_is_capped(tmp_path) -> None:
    """However long the guessing goes on, the account is never refused for more than
    login_throttle_max_delay seconds."""
    app = create_app(_settings(tmp_path, login_throttle_max_delay=8.0))
    with freeze_time(hooks=THROTTLE_CLOCK) as clock:
        async with serving(app) as from_ip:
            attacker = from_ip(ATTACKER)
            waits = []
            for _ in range(12):
                resp = await attacker.post("/auth/login", json=WRONG)
                if resp.status_code == 429:
                    waits.append(_assert_throttled(resp))
                    clock.advance(float(waits[-1]))
            assert max(waits) == 8
            clock.advance(8.0)
            assert (await attacker.post("/auth/login", json=USER)).status_code == 200


async def test_throttle_is_shared_by_workers_through_redis(tmp_path, redis_url: str, redis_client) -> None:
    """Two app instances (two workers) on one Redis: failures on either count for both."""
    one = create_app(_settings(tmp_path, "one", REDIS_URI=redis_url))
    two = create_app(_settings(tmp_path, "two", REDIS_URI=redis_url))
    async with serving(one) as via_one, serving(two) as via_two:
        first, second = via_one(ATTACKER), via_two(ATTACKER)
        statuses = [(await first.post("/auth/login", json=WRONG)).status_code for _ in range(3)]
        statuses += [(await second.post("/auth/login", json=WRONG)).status_code for _ in range(2)]
        assert statuses == [401] * 5
        _assert_throttled(await first.post("/auth/login", json=USER))
        assert (await via_two(VICTIM).post("/auth/login", json=USER)).status_code == 200
    keys = [k async for k in redis_client.scan_iter(match="crown_nexus:login_throttle:*")]
    assert keys and not any(b"user@example.com" in k for k in keys)
