"""HTTP tests of the reference service's feature flag endpoints (admin API and evaluation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from crown_nexus.core.features import FeatureService, MemoryFeatureStore
from crown_nexus.core.security import configure_security
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client, override_service

ADMIN = {"email": "admin@example.com", "password": "Crown-Admin-2024!"}
USER = {"email": "user@example.com", "password": "Crown-User-2024!"}
SPEC_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}


@pytest.fixture(autouse=True)
def cheap_argon2() -> Iterator[None]:
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


@pytest.fixture
def flags() -> Iterator[FeatureService]:
    """A fresh feature_service for each test (memory store, test environment)."""
    svc = FeatureService(store=MemoryFeatureStore(), environment="test")
    with override_service("feature_service", svc):
        yield svc


def _app(tmp_path: Any) -> Any:
    return create_app(
        Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/features.db",
            secret_key="demo-features-test-secret-0123456789abcdef",
        )
    )


def _data(resp: Any) -> Any:
    body = resp.json()
    if isinstance(body, dict) and body.get("success") is True and "data" in body:
        return body["data"]
    return body


async def _token(client: Any, creds: dict[str, str]) -> dict[str, str]:
    resp = await client.post("/auth/login", json=creds)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {_data(resp)['access_token']}"}


async def test_admin_sets_lists_and_deletes_flags(tmp_path: Any, flags: FeatureService) -> None:
    """An admin sets a rule, lists it, callers are evaluated by it, then it is deleted."""
    async with app_client(_app(tmp_path)) as client:
        admin = await _token(client, ADMIN)
        user = await _token(client, USER)

        anon = await client.get("/features/new_checkout")
        assert anon.status_code == 200
        assert _data(anon) == {
            "flag": "new_checkout", "enabled": False, "value": False,
            "reason": "disabled", "target": "global",
        }

        resp = await client.put(
            "/features/new_checkout",
            json={"enabled": True, "percentage": 0, "allow": {"group": ["admin"]}},
            headers=admin,
        )
        assert resp.status_code == 200, resp.text
        assert _data(resp)["allow"] == {"group": ["admin"]}

        listed = _data(await client.get("/features", headers=admin))
        rules = {f["name"]: f for f in listed["flags"]}
        assert rules["new_checkout"]["enabled"] is True
        assert "sms_notifications" in rules

        as_admin = _data(await client.get("/features/new_checkout", headers=admin))
        assert (as_admin["enabled"], as_admin["reason"], as_admin["target"]) == (True, "allowed", "user")
        as_user = _data(await client.get("/features/new_checkout", headers=user))
        assert (as_user["enabled"], as_user["reason"]) == (False, "rollout")
        assert _data(await client.get("/features/new_checkout"))["enabled"] is True  # global: on

        deleted = await client.delete("/features/new_checkout", headers=admin)
        assert _data(deleted) == {"flag": "new_checkout", "deleted": True}
        assert _data(await client.get("/features/new_checkout", headers=admin))["enabled"] is False


async def test_only_admins_change_flags(tmp_path: Any, flags: FeatureService) -> None:
    """Anonymous callers get 401 and ordinary users 403 on every admin endpoint; nothing changes."""
    async with app_client(_app(tmp_path)) as client:
        user = await _token(client, USER)
        for method, path, body in (
            ("GET", "/features", None),
            ("PUT", "/features/new_checkout", {"enabled": True}),
            ("DELETE", "/features/new_checkout", None),
        ):
            anon = await client.request(method, path, json=body)
            assert anon.status_code == 401, (method, anon.text)
            assert set(anon.json()) == SPEC_KEYS
            denied = await client.request(method, path, json=body, headers=user)
            assert denied.status_code == 403, (method, denied.text)
            assert denied.json()["code"] == "PERMISSION_DENIED"
        assert (await flags.get_flag("new_checkout")).enabled is False


async def test_bad_rules_and_unknown_flags(tmp_path: Any, flags: FeatureService) -> None:
    """A bad rule is a 422 naming the field; an unknown flag a 404; both with the error body."""
    async with app_client(_app(tmp_path)) as client:
        admin = await _token(client, ADMIN)
        bad = await client.put("/features/new_checkout", json={"percentage": 250}, headers=admin)
        assert bad.status_code == 422
        body = bad.json()
        assert set(body) == SPEC_KEYS and body["code"] == "VALIDATION_ERROR"
        assert any("percentage" in [str(p) for p in e["loc"]] for e in body["details"])
        renamed = await client.put(
            "/features/new_checkout", json={"name": "other", "enabled": True}, headers=admin
        )
        assert renamed.status_code == 422
        not_object = await client.put("/features/new_checkout", json=[1, 2], headers=admin)
        assert not_object.status_code == 422

        for resp in (
            await client.get("/features/no_such_flag"),
            await client.put("/features/no_such_flag", json={"enabled": True}, headers=admin),
            await client.delete("/features/no_such_flag", headers=admin),
        ):
            assert resp.status_code == 404, resp.text
            assert resp.json()["code"] == "RESOURCE_NOT_FOUND"
        assert (await flags.get_flag("new_checkout")).enabled is False
