"""Security review, finding 1: the permission decorators never take the caller from the request.

``@require_admin() async def create_user(user: UserCreate)`` answered an anonymous
``POST {"email": ..., "role": "admin"}`` with 200 because the decorator read any argument named
``user``. The caller now comes only from a parameter declared as an authentication dependency,
the request state the security dependencies set, or the request's credentials.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel

from crown_nexus.core import security
from crown_nexus.core.exceptions import install_exception_handlers
from crown_nexus.core.permissions import Permission, require_admin, require_permission
from crown_nexus.core.security.dependencies import get_current_user_with_permissions
from crown_nexus.settings import Settings

SETTINGS = Settings(secret_key="caller-identity-secret-0123456789-abcdef")


class UserCreate(BaseModel):
    """A request body that happens to look like a user."""

    id: str = "x"
    email: str
    role: str


class Filters(BaseModel):
    """A class dependency: FastAPI builds it from query parameters."""

    id: str = "q"
    role: str = "guest"


def _app() -> FastAPI:
    router = APIRouter()

    @router.post("/users")
    @require_admin()
    async def create_user(user: UserCreate) -> dict[str, str]:
        return {"created": user.email}

    @router.post("/users-current")
    @require_admin()
    async def create_user_current(current_user: UserCreate) -> dict[str, str]:
        return {"created": current_user.email}

    @router.get("/query-user")
    @require_admin()
    async def query_user(current_user: Filters = Depends()) -> dict[str, str]:
        return {"role": current_user.role}

    @router.get("/query-user-annotated")
    @require_admin()
    async def query_user_annotated(user: Annotated[Filters, Depends(Filters)]) -> dict[str, str]:
        return {"role": user.role}

    @router.get("/me")
    @require_permission(Permission.USER_READ)
    async def me(
        current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
    ) -> dict[str, str]:
        return {"id": current_user["id"]}

    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(router)
    app.state.security_service = security.SecurityService(SETTINGS)
    return app


@pytest.fixture
async def client():  # type: ignore[no-untyped-def]
    app = _app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


async def test_body_named_user_is_not_the_caller(client: httpx.AsyncClient) -> None:
    """The attack from the review: an anonymous body claiming admin is 401, not 200."""
    for path in ("/users", "/users-current"):
        r = await client.post(path, json={"id": "1", "email": "evil@y.z", "role": "admin"})
        assert r.status_code == 401, (path, r.text)
        assert r.json()["code"] == "AUTHENTICATION_ERROR"


async def test_query_class_dependency_is_not_the_caller(client: httpx.AsyncClient) -> None:
    """A class dependency built from query parameters cannot name the caller either."""
    for path in ("/query-user", "/query-user-annotated"):
        r = await client.get(path, params={"id": "1", "role": "admin"})
        assert r.status_code == 401, (path, r.text)


async def test_body_user_with_a_low_token_stays_low(client: httpx.AsyncClient) -> None:
    """An authenticated non-admin sending an admin-looking body is 403, judged by the token."""
    service: security.SecurityService = client.app.state.security_service  # type: ignore[attr-defined]
    token = service.create_token("u-1", role="user")
    r = await client.post(
        "/users",
        json={"id": "u-1", "email": "evil@y.z", "role": "admin"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 403
    admin = service.create_token("a-1", role="admin", permissions=["system:admin"])
    r = await client.post(
        "/users",
        json={"email": "ok@y.z", "role": "user"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 200 and r.json() == {"created": "ok@y.z"}


async def test_dependency_declared_current_user_is_used(client: httpx.AsyncClient) -> None:
    """``current_user = Depends(auth_fn)`` is the caller (the guide's own pattern)."""
    service: security.SecurityService = client.app.state.security_service  # type: ignore[attr-defined]
    token = service.create_token("u-2", role="user", permissions=["user:read"])
    r = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json() == {"id": "u-2"}
    assert (await client.get("/me")).status_code == 401


async def test_direct_call_uses_current_user_keyword() -> None:
    """Called from code (no request), ``current_user`` names the caller; ``user`` never does."""

    @require_admin()
    async def purge(current_user: Any = None, user: Any = None) -> str:
        return "purged"

    assert await purge(current_user={"id": "a", "role": "admin"}) == "purged"
    from crown_nexus.core.exceptions import AuthenticationException

    with pytest.raises(AuthenticationException):
        await purge(user={"id": "a", "role": "admin"})
