"""HTTP-level tests of the reference service's permission endpoints."""

from __future__ import annotations

import pytest

from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client


def data_of(body: dict) -> dict:  # type: ignore[type-arg]
    """The payload, whether or not ResponseFormatterMiddleware enveloped it."""
    return body.get("data", body) if body.get("success") is True else body


@pytest.fixture(autouse=True)
def registry() -> None:
    """Once, on the implementation accel chose (the bit checks are covered per twin elsewhere)."""
    return None


@pytest.fixture
def settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """Embedded defaults on a private SQLite file."""
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/perm.db")


async def _token(client, email: str, password: str) -> str:  # type: ignore[no-untyped-def]
    resp = await client.post("/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return data_of(resp.json())["access_token"]


async def test_permission_endpoints(settings: Settings) -> None:
    """/me lists role + grants, /check answers, /roles is admin-only, no token is 401."""
    app = create_app(settings)
    async with app_client(app) as client:
        user = {
            "Authorization": f"Bearer {await _token(client, 'user@example.com', 'Crown-User-2024!')}"
        }
        admin = {
            "Authorization": f"Bearer {await _token(client, 'admin@example.com', 'Crown-Admin-2024!')}"
        }
        me = await client.get("/permissions/me", headers=user)
        granted = await client.get("/permissions/check/document:create", headers=user)
        denied = await client.get("/permissions/check/system:admin", headers=user)
        unknown = await client.get("/permissions/check/nope:nothing", headers=user)
        roles_user = await client.get("/permissions/roles", headers=user)
        roles_admin = await client.get("/permissions/roles", headers=admin)
        anonymous = await client.get("/permissions/me")
    assert me.status_code == 200
    body = data_of(me.json())
    assert body["role"] == "user"
    assert "document:create" in body["permissions"] and "product:read" in body["permissions"]
    assert "system:admin" not in body["permissions"]
    assert data_of(granted.json()) == {"permission": "document:create", "granted": True}
    assert data_of(denied.json()) == {"permission": "system:admin", "granted": False}
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "RESOURCE_NOT_FOUND"
    assert roles_user.status_code == 403
    assert roles_user.json()["code"] == "PERMISSION_DENIED"
    assert roles_admin.status_code == 200
    assert "system:admin" in data_of(roles_admin.json())["roles"]["admin"]
    assert anonymous.status_code == 401
