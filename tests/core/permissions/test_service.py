"""PermissionService (guide §11): async checks, metrics, user permission lookup and its cache."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from starlette.requests import Request

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.exceptions import (
    AuthenticationException,
    ConfigurationException,
    PermissionDeniedException,
    ResourceNotFoundException,
)
from crown_nexus.core.permissions import (
    Permission,
    PermissionName,
    PermissionService,
    UserRole,
    get_permission_service,
    register_permission,
    require_admin,
    require_permission,
    require_permissions,
    set_user_loader,
)
from crown_nexus.testing import capture_logs


class Doc:
    """A resource owned by ``owner_id``."""

    def __init__(self, id: int, owner_id: Any) -> None:
        self.id = id
        self.owner_id = owner_id


@pytest.fixture(autouse=True)
def no_loader():  # type: ignore[no-untyped-def]
    """Each test starts without a user loader."""
    set_user_loader(None)
    yield
    set_user_loader(None)


def test_registered_as_permission_service() -> None:
    """get_service("permission_service", db=...) builds one bound to db."""
    svc = get_service("permission_service", db="DB")
    assert isinstance(svc, PermissionService) and svc.db == "DB"
    assert get_permission_service().db is None


async def test_async_checks() -> None:
    """has_permission / has_permissions / check_object_permission mirror the checker."""
    svc = get_permission_service()
    user = {"id": "u1", "role": "user"}
    assert await svc.has_permission(user, Permission.DOCUMENT_CREATE)
    assert not await svc.has_permission(user, Permission.USER_DELETE)
    assert await svc.has_permissions(
        user, [Permission.USER_DELETE, Permission.ORDER_READ], require_all=False
    )
    assert not await svc.has_permissions(user, [Permission.USER_DELETE, Permission.ORDER_READ])
    assert await svc.check_object_permission(user, Doc(1, "u1"), Permission.DOCUMENT_UPDATE)
    assert not await svc.check_object_permission(user, Doc(1, "u2"), Permission.DOCUMENT_UPDATE)


async def test_ensure_methods_raise_403_and_log_once() -> None:
    """ensure_* raise PermissionDeniedException; the denial is logged exactly once."""
    svc = get_permission_service()
    user = {"id": "u1", "role": "client"}
    with capture_logs("warning") as logs, pytest.raises(PermissionDeniedException) as info:
        await svc.ensure_object_permission(user, Doc(3, "u2"), Permission.DOCUMENT_SHARE)
    assert info.value.status_code == 403 and info.value.resource_type == "Doc"
    assert len([e for e in logs if e["event"] == "Permission denied"]) == 1
    with pytest.raises(PermissionDeniedException):
        await svc.ensure_permission(
            user, Permission.PRODUCT_ADMIN, resource_type="Product", resource_id="p1"
        )
    with pytest.raises(PermissionDeniedException):
        await svc.ensure_permissions(
            user, [Permission.PRODUCT_ADMIN, Permission.SYSTEM_ADMIN], require_all=False
        )
    await svc.ensure_permission(user, Permission.ORDER_CREATE)
    await svc.ensure_object_permission(
        {"id": 9, "role": "admin"}, Doc(3, "u2"), Permission.DOCUMENT_SHARE
    )


async def test_metrics_are_recorded() -> None:
    """Checks count in permission_checks_total by permission and outcome."""
    metrics = get_service("metrics_service")
    labels = {"permission": "order:read", "granted": "True"}
    before = metrics.get_counter_sum("permission_checks_total", labels)
    await get_permission_service().has_permission(
        {"id": 1, "role": "client"}, Permission.ORDER_READ
    )
    assert metrics.get_counter_sum("permission_checks_total", labels) == before + 1
    obj_before = metrics.get_counter_sum("object_permission_checks_total", {"object_type": "Doc"})
    await get_permission_service().check_object_permission(
        {"id": 1, "role": "client"}, Doc(1, 1), "order:read"
    )
    assert (
        metrics.get_counter_sum("object_permission_checks_total", {"object_type": "Doc"})
        == obj_before + 1
    )


async def test_get_user_permissions_of_a_user() -> None:
    """Shipped permissions come back as Permission members, application ones with .value too."""
    register_permission("report:export")
    user = {"id": "u1", "role": UserRole.CLIENT, "permissions": ["report:export"]}
    perms = await get_permission_service().get_user_permissions(user)
    values = [p.value for p in perms]
    assert set(values) == {
        "product:read",
        "document:read",
        "order:create",
        "order:read",
        "report:export",
    }
    assert all(isinstance(p, (Permission, PermissionName)) for p in perms)
    custom = [p for p in perms if p.value == "report:export"][0]
    assert isinstance(custom, PermissionName) and custom.name == "REPORT_EXPORT"
    assert (
        await get_permission_service().get_user_permissions(
            {"id": 1, "role": "admin", "is_active": False}
        )
        == []
    )


async def test_get_user_permissions_by_id_uses_loader_and_cache() -> None:
    """Ids go through the user loader once; invalidate_permissions_cache forces a reload."""
    users = {"u1": {"id": "u1", "role": "guest"}}
    calls: list[str] = []

    async def loader(user_id: str, db: Any) -> Any:
        calls.append(user_id)
        return users.get(user_id)

    svc = get_permission_service(db="DB")
    with pytest.raises(ConfigurationException):
        await svc.get_user_permissions("u1")
    set_user_loader(loader)
    await svc.invalidate_permissions_cache("u1")
    assert [p.value for p in await svc.get_user_permissions("u1")] == ["product:read"]
    users["u1"] = {"id": "u1", "role": "read_only"}
    assert [p.value for p in await svc.get_user_permissions("u1")] == ["product:read"]  # cached
    assert calls == ["u1"]
    await svc.invalidate_permissions_cache("u1")
    assert Permission.ORDER_READ in await svc.get_user_permissions("u1")
    assert calls == ["u1", "u1"]
    with pytest.raises(ResourceNotFoundException):
        await svc.get_user_permissions("ghost")
    await svc.invalidate_permissions_cache("u1")


async def test_decorators_take_the_user_from_current_user() -> None:
    """require_* check current_user; missing user is 401; the signature is kept for FastAPI."""

    @require_permission(Permission.PRODUCT_CREATE)
    async def create(name: str, current_user: Any = None) -> str:
        return f"created {name}"

    @require_permissions([Permission.PRODUCT_ADMIN, Permission.SYSTEM_ADMIN], require_all=False)
    def reports(current_user: Any = None) -> str:
        return "reports"

    @require_admin()
    async def delete(user_id: str, current_user: Any = None) -> str:
        return f"deleted {user_id}"

    manager = {"id": 1, "role": "manager"}
    client = {"id": 2, "role": "client"}
    assert await create("x", current_user=manager) == "created x"
    with pytest.raises(PermissionDeniedException):
        await create("x", current_user=client)
    with pytest.raises(AuthenticationException):
        await create("x")
    assert reports(current_user=manager) == "reports"
    with pytest.raises(PermissionDeniedException):
        reports(current_user=client)
    with pytest.raises(PermissionDeniedException):
        await delete("u", current_user=manager)
    assert await delete("u", current_user={"id": 3, "role": "admin"}) == "deleted u"
    params = list(inspect.signature(create).parameters.values())
    # the endpoint's own parameters, then only the hidden keyword-only Request (SPEC §10)
    assert [p.name for p in params[:2]] == ["name", "current_user"] and len(params) == 3
    assert params[2].kind is inspect.Parameter.KEYWORD_ONLY and params[2].annotation is Request


async def test_decorators_fall_back_to_the_requests_authenticated_user() -> None:
    """Without current_user, the user the security dependencies stored on the request is used."""
    from starlette.requests import Request

    @require_permission(Permission.DOCUMENT_CREATE)
    async def create_document(request: Request, current_user_id: str = "") -> str:
        return f"created by {current_user_id}"

    def request_for(user: Any) -> Request:
        return Request(
            {"type": "http", "method": "POST", "path": "/", "headers": [], "state": {"user": user}}
        )

    ok = request_for({"id": "u1", "role": "user"})
    assert await create_document(request=ok, current_user_id="u1") == "created by u1"
    with pytest.raises(PermissionDeniedException):
        await create_document(
            request=request_for({"id": "u2", "role": "guest"}), current_user_id="u2"
        )
    with pytest.raises(AuthenticationException):
        await create_document(request=request_for(None), current_user_id="u3")
