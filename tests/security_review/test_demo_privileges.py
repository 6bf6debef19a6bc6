"""Security review, findings 2 and 3 over HTTP against the reference service.

2. API keys were not scoped: a key made with ``["user:read"]`` by an admin carried the admin's
   role; a user's key with ``[]`` still held the role's permissions. A key grants exactly what it
   names, bounded by what its owner holds when it is used, and no role.
3. Refresh kept stale privileges: a demoted, deactivated admin kept refreshing admin tokens and a
   demoted user could mint an admin-scoped key. Refresh reloads the user; key creation checks the
   creator's current permissions.
"""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import update

from crown_nexus.core.security import configure_security
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.demo.app import create_app
from crown_nexus.demo.models_users import User
from crown_nexus.demo.routers.auth import DEMO_USERS
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

ADMIN = {"email": "admin@example.com", "password": "Crown-Admin-2024!"}
USER = {"email": "user@example.com", "password": "Crown-User-2024!"}


@pytest.fixture(autouse=True)
def cheap_argon2():  # type: ignore[no-untyped-def]
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


def _settings(tmp_path: Any, database_url: str | None = None) -> Settings:
    return Settings(
        database_url=database_url or f"sqlite+aiosqlite:///{tmp_path}/priv.db",
        secret_key="privileges-test-secret-0123456789abcdef",
    )


def _data(resp: Any) -> Any:
    body = resp.json()
    return body["data"] if isinstance(body, dict) and body.get("success") is True else body


async def _login(client: Any, creds: dict[str, str]) -> dict[str, Any]:
    resp = await client.post("/auth/login", json=creds)
    assert resp.status_code == 200, resp.text
    return _data(resp)  # type: ignore[no-any-return]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _key(client: Any, token: str, permissions: list[str]) -> Any:
    return await client.post(
        "/auth/api-keys", json={"name": "k", "permissions": permissions}, headers=_bearer(token)
    )


async def _set_user(app: Any, email: str, **values: Any) -> None:
    async with app.state.sessionmaker() as db:
        await db.execute(update(User).where(User.email == email).values(**values))
        await db.commit()


async def _restore_admin(app: Any) -> None:
    """Put the demo admin back as seeded (the PostgreSQL database outlives the test)."""
    spec = next(u for u in DEMO_USERS if u["email"] == ADMIN["email"])
    await _set_user(
        app, ADMIN["email"], role=spec["role"], permissions=list(spec["permissions"]), is_active=True
    )


async def test_api_key_grants_only_what_it_names(tmp_path: Any, database_url: str) -> None:
    """An admin's ``user:read`` key is not admin; a user's empty key holds nothing."""
    async with app_client(create_app(_settings(tmp_path, database_url))) as client:
        admin = await _login(client, ADMIN)
        assert (await client.get("/permissions/roles", headers=_bearer(admin["access_token"]))).status_code == 200
        resp = await _key(client, admin["access_token"], ["user:read"])
        assert resp.status_code == 201, resp.text
        key = {"X-API-Key": _data(resp)["api_key"]}
        assert (await client.get("/permissions/roles", headers=key)).status_code == 403
        mine = _data(await client.get("/permissions/me", headers=key))
        assert mine["permissions"] == ["user:read"] and mine["role"] is None

        user = await _login(client, USER)
        resp = await _key(client, user["access_token"], [])
        key = {"X-API-Key": _data(resp)["api_key"]}
        mine = _data(await client.get("/permissions/me", headers=key))
        assert mine["permissions"] == []
        check = _data(await client.get("/permissions/check/document:read", headers=key))
        assert check["granted"] is False


async def test_key_is_bounded_by_its_owner_now(tmp_path: Any) -> None:
    """An admin key stops granting admin once its owner is demoted, and all once deactivated."""
    app = create_app(_settings(tmp_path))
    async with app_client(app) as client:
        admin = await _login(client, ADMIN)
        resp = await _key(client, admin["access_token"], ["system:admin", "user:read"])
        key = {"X-API-Key": _data(resp)["api_key"]}
        assert (await client.get("/permissions/roles", headers=key)).status_code == 200
        await _set_user(app, ADMIN["email"], role="user", permissions=["user:read"])
        assert (await client.get("/permissions/roles", headers=key)).status_code == 403
        assert _data(await client.get("/permissions/me", headers=key))["permissions"] == ["user:read"]
        await _set_user(app, ADMIN["email"], is_active=False)
        assert (await client.get("/permissions/me", headers=key)).status_code == 401


async def test_refresh_reloads_the_user(tmp_path: Any, database_url: str) -> None:
    """A demoted admin's refresh yields user claims; a deactivated one is refused (401)."""
    app = create_app(_settings(tmp_path, database_url))
    async with app_client(app) as client:
        try:
            await _refresh_after_demotion(app, client)
        finally:
            await _restore_admin(app)


async def _refresh_after_demotion(app: Any, client: Any) -> None:
    if True:
        admin = await _login(client, ADMIN)
        await _set_user(app, ADMIN["email"], role="user", permissions=["user:read"])
        resp = await client.post("/auth/refresh", json={"refresh_token": admin["refresh_token"]})
        assert resp.status_code == 200, resp.text
        fresh = _data(resp)
        assert (await client.get("/permissions/roles", headers=_bearer(fresh["access_token"]))).status_code == 403
        me = _data(await client.get("/permissions/me", headers=_bearer(fresh["access_token"])))
        assert me["role"] == "user" and "system:admin" not in me["permissions"]

        await _set_user(app, ADMIN["email"], is_active=False)
        resp = await client.post("/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
        assert resp.status_code == 401 and resp.json()["details"]["reason"] == "user_inactive"
        # the whole login is revoked with it: the access token of that family is refused too
        assert (await client.get("/users/me", headers=_bearer(fresh["access_token"]))).status_code == 401


async def test_demoted_user_cannot_mint_admin_key(tmp_path: Any) -> None:
    """Key creation checks the creator's current permissions, not the token's claims."""
    app = create_app(_settings(tmp_path))
    async with app_client(app) as client:
        admin = await _login(client, ADMIN)
        await _set_user(app, ADMIN["email"], role="user", permissions=["user:read"])
        resp = await _key(client, admin["access_token"], ["system:admin"])
        assert resp.status_code == 403 and resp.json()["details"]["missing"] == ["system:admin"]
        assert (await _key(client, admin["access_token"], ["user:read"])).status_code == 201


async def test_key_cannot_mint_a_wider_key(tmp_path: Any) -> None:
    """A key used to create a key can pass on only what it carries itself."""
    async with app_client(create_app(_settings(tmp_path))) as client:
        admin = await _login(client, ADMIN)
        narrow = {"X-API-Key": _data(await _key(client, admin["access_token"], ["user:read"]))["api_key"]}
        resp = await client.post(
            "/auth/api-keys", json={"name": "w", "permissions": ["system:admin"]}, headers=narrow
        )
        assert resp.status_code == 403
