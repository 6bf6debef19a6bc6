"""PermissionChecker, utils and models (guide §11, SPEC §4)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from crown_nexus.core.exceptions import PermissionDeniedException
from crown_nexus.core.permissions import (
    ROLE_PERMISSIONS,
    Permission,
    PermissionChecker,
    UserRole,
    check_owner_permission,
    has_all_permissions,
    has_any_permission,
    register_permission,
    register_role,
)
from crown_nexus.testing import capture_logs, override_service
from tests.core.permissions.conftest import EventRecorder


@dataclass
class User:
    """A user object as an application would have one."""

    id: Any
    role: Any
    permissions: list[Any] = field(default_factory=list)
    is_active: bool = True


@dataclass
class Product:
    """A resource with an owner field."""

    id: int
    created_by_id: Any


def test_guide_models_example() -> None:
    """The guide's model example: enums, values and the role table."""
    assert Permission.USER_CREATE == "user:create"
    assert Permission.SYSTEM_ADMIN.value == "system:admin"
    assert Permission.USER_CREATE in ROLE_PERMISSIONS[UserRole.ADMIN]
    assert all(":" in p.value for p in Permission)
    assert set(ROLE_PERMISSIONS) == set(UserRole)
    assert Permission.SYSTEM_ADMIN not in ROLE_PERMISSIONS[UserRole.MANAGER]


@pytest.mark.parametrize("as_dict", [False, True])
def test_role_permissions_grant(as_dict: bool) -> None:
    """A user's role grants exactly ROLE_PERMISSIONS of that role; dicts work like objects."""
    for role, perms in ROLE_PERMISSIONS.items():
        user: Any = User(1, role)
        if as_dict:
            user = {"id": 1, "role": role.value}
        for p in Permission:
            expected = p in perms or Permission.SYSTEM_ADMIN in perms
            assert PermissionChecker.has_permission(user, p) is expected, (role, p)


def test_extra_permissions_and_inactive_users() -> None:
    """Extra grants add to the role; inactive users hold nothing."""
    user = User(1, UserRole.GUEST, permissions=["order:create", Permission.DOCUMENT_READ])
    assert PermissionChecker.has_permission(user, "order:create")
    assert PermissionChecker.has_permission(user, Permission.DOCUMENT_READ)
    assert not PermissionChecker.has_permission(user, Permission.ORDER_DELETE)
    user.is_active = False
    assert not PermissionChecker.has_permission(user, Permission.PRODUCT_READ)
    assert not PermissionChecker.has_permission(
        {"id": 1, "role": "admin", "is_active": False}, "user:read"
    )
    assert not PermissionChecker.has_permission(None, Permission.PRODUCT_READ)


def test_system_admin_is_superuser() -> None:
    """system:admin passes every check, including permissions registered later."""
    register_permission("report:export")
    user = {"id": 1, "role": None, "permissions": ["system:admin"]}
    assert PermissionChecker.has_permission(user, "report:export")
    assert PermissionChecker.has_permissions(user, ["report:export", "user:delete"])


def test_unknown_role_and_unregistered_permission_are_denied_not_errors() -> None:
    """Stored data with a strange role or a check of an unregistered permission just denies."""
    user = {"id": 1, "role": "ghost", "permissions": ["weird", 5]}
    assert not PermissionChecker.has_permission(user, Permission.PRODUCT_READ)
    assert PermissionChecker.has_permission(User(1, UserRole.ADMIN), "never:registered")
    assert not PermissionChecker.has_permission(User(1, UserRole.USER), "never:registered")


def test_has_permissions_all_and_any() -> None:
    """require_all=True is AND, False is OR; the guide's helpers match."""
    user = User(7, UserRole.USER)
    both = [Permission.PRODUCT_READ, Permission.DOCUMENT_CREATE]
    mixed = [Permission.PRODUCT_ADMIN, Permission.DOCUMENT_CREATE]
    none = [Permission.PRODUCT_ADMIN, Permission.SYSTEM_ADMIN]
    assert PermissionChecker.has_permissions(user, both, require_all=True)
    assert not PermissionChecker.has_permissions(user, mixed, require_all=True)
    assert PermissionChecker.has_permissions(user, mixed, require_all=False)
    assert not PermissionChecker.has_permissions(user, none, require_all=False)
    assert has_all_permissions(user, both) and not has_all_permissions(user, mixed)
    assert has_any_permission(user, mixed) and not has_any_permission(user, none)
    assert has_all_permissions(user, []) and not has_any_permission(user, [])


def test_object_rule() -> None:
    """Object level: system admin, resource admin, or permission plus ownership."""
    owner = User("42", UserRole.USER, permissions=["product:update"])
    other = User(43, UserRole.USER, permissions=["product:update"])
    mine = Product(1, created_by_id=42)
    perm = Permission.PRODUCT_UPDATE
    assert PermissionChecker.check_object_permission(owner, mine, perm, owner_field="created_by_id")
    assert not PermissionChecker.check_object_permission(
        other, mine, perm, owner_field="created_by_id"
    )
    # ownership alone is not enough without the permission
    assert not PermissionChecker.check_object_permission(
        User(42, UserRole.GUEST), mine, perm, owner_field="created_by_id"
    )
    # the resource's admin permission
    assert PermissionChecker.check_object_permission(
        User(43, UserRole.GUEST, permissions=["product:admin"]), mine, perm, "created_by_id"
    )
    # system admin
    assert PermissionChecker.check_object_permission(
        User(1, UserRole.ADMIN), mine, perm, "created_by_id"
    )
    # missing owner field, dict objects, default owner_field
    assert not PermissionChecker.check_object_permission(owner, object(), perm)
    assert PermissionChecker.check_object_permission(owner, {"id": 3, "owner_id": 42}, perm)


def test_ensure_raises_403_with_details() -> None:
    """ensure_* raise PermissionDeniedException (403) naming the permission."""
    user = User(5, UserRole.CLIENT)
    with pytest.raises(PermissionDeniedException) as info:
        PermissionChecker.ensure_permission(
            user, Permission.PRODUCT_ADMIN, resource_type="Product", resource_id=9
        )
    assert info.value.status_code == 403
    assert info.value.permission == "product:admin"
    with pytest.raises(PermissionDeniedException) as info:
        PermissionChecker.ensure_object_permission(
            user, Product(9, 6), Permission.PRODUCT_UPDATE, "created_by_id"
        )
    assert info.value.resource_type == "Product"
    with pytest.raises(PermissionDeniedException):
        PermissionChecker.ensure_permissions(user, [Permission.ORDER_READ, Permission.ORDER_ADMIN])
    PermissionChecker.ensure_permissions(
        user, [Permission.ORDER_READ, Permission.ORDER_ADMIN], require_all=False
    )
    PermissionChecker.ensure_permission(user, Permission.ORDER_READ)
    PermissionChecker.ensure_object_permission(
        User(6, UserRole.USER), Product(9, 6), Permission.DOCUMENT_READ, "created_by_id"
    )


def test_denied_checks_log_a_warning() -> None:
    """A denied check logs a warning with the user and permission."""
    with capture_logs("warning") as logs:
        assert not PermissionChecker.has_permission(
            User(5, UserRole.GUEST), Permission.ORDER_DELETE
        )
        assert PermissionChecker.has_permission(User(5, UserRole.GUEST), Permission.PRODUCT_READ)
    denied = [e for e in logs if e["event"] == "Permission denied"]
    assert len(denied) == 1
    assert denied[0]["log_level"] == "warning"
    assert denied[0]["permission"] == "order:delete"
    assert denied[0]["user_id"] == "5"


async def test_denied_checks_publish_events() -> None:
    """permission.denied / permission.object_denied go to a registered event service."""
    recorder = EventRecorder()
    with override_service("event_service", recorder):
        PermissionChecker.has_permission(User(5, UserRole.GUEST), Permission.ORDER_DELETE)
        PermissionChecker.check_object_permission(
            User(5, UserRole.USER), Product(8, 6), Permission.DOCUMENT_UPDATE, "created_by_id"
        )
        PermissionChecker.has_permission(User(5, UserRole.GUEST), Permission.PRODUCT_READ)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    names = [name for name, _ in recorder.published]
    assert names == ["permission.denied", "permission.object_denied"]
    data = recorder.published[1][1]
    assert data["user_id"] == "5" and data["permission"] == "document:update"
    assert data["resource_type"] == "Product" and data["resource_id"] == "8"
    assert data["action"] == "update"


def test_no_event_service_is_fine() -> None:
    """Without an event service a denial neither fails nor publishes (sync context too)."""
    assert not PermissionChecker.has_permission(User(5, UserRole.GUEST), Permission.ORDER_DELETE)


def test_application_permissions_and_roles() -> None:
    """Applications register their own permissions and roles (with inheritance)."""
    register_role("auditor", ["report:read", "report:export"], inherits=[UserRole.READ_ONLY])
    auditor = {"id": 1, "role": "auditor"}
    assert PermissionChecker.has_permission(auditor, "report:export")
    assert PermissionChecker.has_permission(auditor, Permission.ORDER_READ)
    assert not PermissionChecker.has_permission(auditor, Permission.ORDER_UPDATE)
    with pytest.raises(ValueError, match="cycle"):
        register_role(UserRole.READ_ONLY, ["user:read"], inherits=["auditor"])


def test_check_owner_permission() -> None:
    """Owner ids compare as strings; None never owns."""
    assert check_owner_permission("5", 5)
    assert not check_owner_permission("5", "6")
    assert not check_owner_permission(None, None)


async def test_a_failing_event_service_does_not_break_checks() -> None:
    """An event service that raises (sync or async) leaves the decision and the caller alone."""

    class Broken:
        async def publish(self, **_: Any) -> None:
            raise RuntimeError("bus down")

    class BrokenSync:
        def publish(self, **_: Any) -> None:
            raise RuntimeError("bus down")

    for service in (Broken(), BrokenSync()):
        with override_service("event_service", service):
            assert not PermissionChecker.has_permission(
                User(5, UserRole.GUEST), Permission.ORDER_DELETE
            )
            await asyncio.sleep(0)
            await asyncio.sleep(0)
