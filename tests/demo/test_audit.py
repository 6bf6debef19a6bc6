"""HTTP tests of the reference service's audit trail: what it records, admin-only reading and verifying."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from crown_nexus.core.events import event_service
from crown_nexus.core.security import configure_security
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.core.audit.conftest import drop_audit_tables

ADMIN = {"email": "admin@example.com", "password": "Crown-Admin-2024!"}
USER = {"email": "user@example.com", "password": "Crown-User-2024!"}
SPEC_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}


@pytest.fixture(autouse=True)
def cheap_argon2():
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


@pytest.fixture
async def audited_url(database_url: str):  # type: ignore[no-untyped-def]
    """The test database without audit tables; the shared audit configuration is restored after."""
    from crown_nexus.core.audit import close_audit, configure_audit

    close_audit()
    await drop_audit_tables(database_url)
    previous = configure_audit()
    configure_audit(**previous)
    try:
        yield database_url
    finally:
        close_audit()
        configure_audit(**previous)
        await drop_audit_tables(database_url)  # leave no tampered trail behind


def _data(resp) -> Any:
    body = resp.json()
    if isinstance(body, dict) and body.get("success") is True and "data" in body:
        return body["data"]
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _login(client, creds: dict) -> str:
    resp = await client.post("/auth/login", json=creds)
    assert resp.status_code == 200, resp.text
    return _data(resp)["access_token"]


async def _settled() -> None:
    assert await event_service.wait_for_pending(timeout=10)


async def test_trail_records_logins_keys_denials_and_flags(audited_url: str) -> None:
    """Logins, a failed login, API-key creation, a permission denial and a flag change all land
    in the trail; admins read it (filtered, paged) and verify it; others get 401/403."""
    settings = Settings(database_url=audited_url, secret_key="demo-audit-test-secret-0123456789abcdef")
    async with app_client(create_app(settings)) as client:
        admin = await _login(client, ADMIN)
        user = await _login(client, USER)
        bad = await client.post("/auth/login", json={**USER, "password": "wrong-password-1"})
        assert bad.status_code == 401
        created = await client.post(
            "/auth/api-keys", json={"name": "ci", "permissions": ["document:read"]}, headers=_bearer(user)
        )
        assert created.status_code == 201, created.text
        key_id = _data(created)["key_id"]

        denied = await client.get("/audit", headers=_bearer(user))
        assert denied.status_code == 403 and denied.json()["code"] == "PERMISSION_DENIED"
        anonymous = await client.get("/audit/verify")
        assert anonymous.status_code == 401 and set(anonymous.json()) == SPEC_KEYS
        assert (await client.get("/audit/verify", headers=_bearer(user))).status_code == 403

        # the feature-flag service publishes feature.updated when a flag is set
        await event_service.publish("feature.updated", {"flag": "new-checkout", "action": "set", "rule": {"on": True}})
        await _settled()

        page = await client.get("/audit", params={"limit": 100}, headers=_bearer(admin))
        assert page.status_code == 200, page.text
        items = _data(page)["items"]
        seqs = [r["seq"] for r in items]
        assert seqs == sorted(seqs, reverse=True)  # newest first
        actions = [r["action"] for r in items]
        for wanted in ("LOGIN", "LOGIN_FAILED", "API_KEY_CREATED", "PERMISSION_DENIED", "FLAG_CHANGED"):
            assert wanted in actions, (wanted, actions)
        logins = [r for r in items if r["action"] == "LOGIN"]
        assert len(logins) == 2 and all(r["client_ip"] for r in logins)
        assert all(r["request_id"] for r in logins)
        [key_record] = [r for r in items if r["action"] == "API_KEY_CREATED"]
        assert (key_record["resource_type"], key_record["resource_id"]) == ("ApiKey", key_id)
        assert "api_key" not in key_record["details"]  # never the key itself
        [flag] = [r for r in items if r["action"] == "FLAG_CHANGED"]
        assert (flag["resource_type"], flag["resource_id"]) == ("FeatureFlag", "new-checkout")
        denial = [r for r in items if r["action"] == "PERMISSION_DENIED"]
        assert denial and denial[0]["details"]["permission"] == "system:admin"

        only_logins = _data(await client.get("/audit", params={"action": "LOGIN"}, headers=_bearer(admin)))
        assert [r["action"] for r in only_logins["items"]] == ["LOGIN", "LOGIN"]
        first = _data(await client.get("/audit", params={"limit": 2}, headers=_bearer(admin)))
        assert first["has_next"] and len(first["items"]) == 2
        second = _data(
            await client.get("/audit", params={"limit": 2, "cursor": first["next_cursor"]}, headers=_bearer(admin))
        )
        assert [r["seq"] for r in second["items"]] == [first["items"][-1]["seq"] - 1, first["items"][-1]["seq"] - 2]
        bogus = await client.get("/audit", params={"cursor": "not-a-cursor"}, headers=_bearer(admin))
        assert bogus.status_code == 422 and set(bogus.json()) == SPEC_KEYS
        too_many = await client.get("/audit", params={"limit": 1000}, headers=_bearer(admin))
        assert too_many.status_code == 422

        verdict = _data(await client.get("/audit/verify", headers=_bearer(admin)))
        assert verdict["ok"] is True and verdict["checked"] >= 6 and verdict["first_broken"] is None


async def test_verify_endpoint_reports_a_tampered_row(audited_url: str) -> None:
    """An audit row edited directly in the database is reported by GET /audit/verify."""
    settings = Settings(database_url=audited_url, secret_key="demo-audit-test-secret-0123456789abcdef")
    async with app_client(create_app(settings)) as client:
        admin = await _login(client, ADMIN)
        await _login(client, USER)
        await _settled()
        assert _data(await client.get("/audit/verify", headers=_bearer(admin)))["ok"] is True
        engine = create_async_engine(audited_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE crown_nexus_audit_records SET actor_id = 'someone-else' WHERE seq = 1")
                )
        finally:
            await engine.dispose()
        verdict = _data(await client.get("/audit/verify", headers=_bearer(admin)))
        assert verdict["ok"] is False and verdict["first_broken"] == 1
        assert verdict["reason"] == "hash_mismatch"


async def test_checkpoint_endpoints_find_a_rewritten_history(audited_url: str) -> None:
    """POST /audit/checkpoints signs the head (admins only); after the trail is rewritten and
    re-hashed whole in the database, /audit/verify still says ok but the checkpoint does not."""
    from tests.core.audit.test_checkpoint import _rewrite_from

    settings = Settings(database_url=audited_url, secret_key="demo-audit-test-secret-0123456789abcdef")
    async with app_client(create_app(settings)) as client:
        admin = await _login(client, ADMIN)
        user = await _login(client, USER)
        await _settled()
        assert (await client.post("/audit/checkpoints")).status_code == 401
        assert (await client.post("/audit/checkpoints", headers=_bearer(user))).status_code == 403
        made = await client.post("/audit/checkpoints", headers=_bearer(admin))
        assert made.status_code == 201, made.text
        checkpoint = _data(made)
        verify = "/audit/checkpoints/verify"
        assert _data(await client.post(verify, json=checkpoint, headers=_bearer(admin)))["ok"] is True
        bad = await client.post(verify, json={**checkpoint, "seq": -1}, headers=_bearer(admin))
        assert bad.status_code == 422 and set(bad.json()) == SPEC_KEYS
        engine = create_async_engine(audited_url)
        try:
            await _rewrite_from(engine, 1)
        finally:
            await engine.dispose()
        assert _data(await client.get("/audit/verify", headers=_bearer(admin)))["ok"] is True
        verdict = _data(await client.post(verify, json=checkpoint, headers=_bearer(admin)))
        assert (verdict["ok"], verdict["reason"]) == (False, "rewritten")
