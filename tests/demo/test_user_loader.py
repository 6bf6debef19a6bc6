"""The reference service resolves user ids for the permission service from its users table."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import APIRouter, Depends

from crown_nexus.core.permissions import get_permission_service
from crown_nexus.core.security import configure_security
from crown_nexus.core.security.dependencies import get_current_user_id
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client


@pytest.fixture(autouse=True)
def cheap_argon2():  # type: ignore[no-untyped-def]
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


def _data(resp: Any) -> Any:
    body = resp.json()
    return body["data"] if isinstance(body, dict) and body.get("success") is True else body


async def test_get_user_permissions_by_id_reads_the_users_table(database_url: str) -> None:
    """An admin's request looks up another user's permissions by id, with no set_user_loader call."""
    app = create_app(
        Settings(database_url=database_url, secret_key="demo-loader-test-secret-0123456789abcdef")
    )
    router = APIRouter()

    @router.get("/test/permissions/{uid}")
    async def permissions_of(uid: str, me: str = Depends(get_current_user_id)) -> list[str]:
        service = get_permission_service()
        await service.invalidate_permissions_cache(uid)
        return [p.value for p in await service.get_user_permissions(uid)]

    app.include_router(router)
    async with app_client(app) as client:
        tokens = {}
        for email, password in (
            ("admin@example.com", "Crown-Admin-2024!"),
            ("user@example.com", "Crown-User-2024!"),
        ):
            resp = await client.post("/auth/login", json={"email": email, "password": password})
            assert resp.status_code == 200, resp.text
            tokens[email] = {"Authorization": f"Bearer {_data(resp)['access_token']}"}
        me = _data(await client.get("/users/me", headers=tokens["user@example.com"]))
        perms = await client.get(f"/test/permissions/{me['id']}", headers=tokens["admin@example.com"])
        ghost = await client.get("/test/permissions/no-such-user", headers=tokens["admin@example.com"])
    assert perms.status_code == 200, perms.text
    assert "product:read" in _data(perms) and "system:admin" not in _data(perms)
    assert ghost.status_code == 404 and ghost.json()["code"] == "RESOURCE_NOT_FOUND"
