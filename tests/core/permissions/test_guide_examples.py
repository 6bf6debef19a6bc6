"""Guide §11 code, run as written (``app.`` -> ``crown_nexus.``) with the user's own objects supplied."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from pydantic import BaseModel

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.exceptions import (
    PermissionDeniedException,
    ResourceNotFoundException,
    install_exception_handlers,
)
from crown_nexus.core.permissions import get_permission_service, set_user_loader
from crown_nexus.core.permissions.checker import PermissionChecker
from crown_nexus.core.permissions.decorators import (
    require_admin,
    require_permission,
    require_permissions,
)
from crown_nexus.core.permissions.models import ROLE_PERMISSIONS, Permission, UserRole
from crown_nexus.core.permissions.utils import (
    check_owner_permission,
    has_all_permissions,
    has_any_permission,
)
from crown_nexus.core.security.dependencies import get_current_user_id


@dataclass
class User:
    """The application's user model."""

    id: str
    role: UserRole
    permissions: list[Permission] = field(default_factory=list)
    is_active: bool = True


@dataclass
class Product:
    """The application's product model."""

    id: str
    created_by_id: str
    price: float = 100.0


USERS = {
    "admin": User("admin", UserRole.ADMIN),
    "manager": User("manager", UserRole.MANAGER),
    "client": User("client", UserRole.CLIENT),
    "owner": User("owner", UserRole.USER, permissions=[Permission.PRODUCT_UPDATE]),
}


def test_permission_models(capsys: pytest.CaptureFixture[str]) -> None:
    """'Permission Models' block."""
    required_permission = Permission.USER_CREATE
    admin_permissions = ROLE_PERMISSIONS[UserRole.ADMIN]
    if Permission.USER_CREATE in admin_permissions:
        print("Admins can create users")
    print("Available permissions:")
    for permission in Permission:
        print(f"- {permission.name}: {permission.value}")
    out = capsys.readouterr().out
    assert required_permission == "user:create"
    assert "Admins can create users" in out
    assert "- SYSTEM_ADMIN: system:admin" in out


def test_basic_checking_and_object_level(capsys: pytest.CaptureFixture[str]) -> None:
    """'Basic Permission Checking' and 'Object-Level Permissions' blocks."""

    def check_user_access(user, permission):  # type: ignore[no-untyped-def]
        if PermissionChecker.has_permission(user, permission):
            print(f"User has permission: {permission}")
            return True
        print(f"Permission denied: {permission}")
        return False

    def check_advanced_access(user, permissions):  # type: ignore[no-untyped-def]
        return PermissionChecker.has_permissions(user, permissions, require_all=True)

    def check_any_permission(user, permissions):  # type: ignore[no-untyped-def]
        return PermissionChecker.has_permissions(user, permissions, require_all=False)

    def check_product_access(user, product, permission):  # type: ignore[no-untyped-def]
        if PermissionChecker.check_object_permission(
            user, product, permission, owner_field="created_by_id"
        ):
            print(f"User can {permission.name} this product")
            return True
        print(f"User cannot {permission.name} this product")
        return False

    def enforce_product_access(user, product, permission):  # type: ignore[no-untyped-def]
        try:
            PermissionChecker.ensure_object_permission(
                user, product, permission, owner_field="created_by_id"
            )
            print(f"Access granted: {permission}")
            return True
        except PermissionDeniedException as e:
            print(f"Access denied: {e}")
            raise

    client, owner = USERS["client"], USERS["owner"]
    assert check_user_access(client, Permission.ORDER_CREATE)
    assert not check_user_access(client, Permission.ORDER_DELETE)
    assert "User has permission: order:create" in capsys.readouterr().out
    assert check_advanced_access(client, [Permission.ORDER_CREATE, Permission.ORDER_READ])
    assert not check_advanced_access(client, [Permission.ORDER_CREATE, Permission.ORDER_ADMIN])
    assert check_any_permission(client, [Permission.ORDER_ADMIN, Permission.ORDER_READ])
    product = Product("p1", created_by_id="owner")
    assert check_product_access(owner, product, Permission.PRODUCT_UPDATE)
    assert not check_product_access(client, product, Permission.PRODUCT_UPDATE)
    assert "User can PRODUCT_UPDATE this product" in capsys.readouterr().out
    assert enforce_product_access(USERS["manager"], product, Permission.PRODUCT_UPDATE)
    with pytest.raises(PermissionDeniedException):
        enforce_product_access(client, product, Permission.PRODUCT_UPDATE)


def test_utility_functions() -> None:
    """'Utility Functions' block."""

    def is_owner(user_id: str, entity_user_id: str):  # type: ignore[no-untyped-def]
        return check_owner_permission(user_id, entity_user_id)

    def can_perform_any(user, permissions: list[str]):  # type: ignore[no-untyped-def]
        return has_any_permission(user, permissions)

    def can_perform_all(user, permissions: list[str]):  # type: ignore[no-untyped-def]
        return has_all_permissions(user, permissions)

    assert is_owner("u1", "u1") and not is_owner("u1", "u2")
    assert can_perform_any(USERS["client"], ["order:admin", "order:read"])
    assert not can_perform_all(USERS["client"], ["order:admin", "order:read"])


async def test_service_examples() -> None:
    """'Permission Service', 'Permission in Service Classes' and 'Retrieving User Permissions'."""
    products = {"p1": Product("p1", created_by_id="owner", price=100.0)}

    async def get_user_by_id(db: Any, user_id: str) -> User:
        return USERS[user_id]

    class ProductService:
        def __init__(self, db):  # type: ignore[no-untyped-def]
            self.db = db
            self.permission_service = get_service("permission_service", db=db)

        async def update_product_price(self, product_id: str, new_price: float, user_id: str):  # type: ignore[no-untyped-def]
            user = await get_user_by_id(self.db, user_id)
            product = products.get(product_id)
            if not product:
                raise ResourceNotFoundException(resource_type="Product", resource_id=product_id)
            has_permission = await self.permission_service.check_object_permission(
                user, product, Permission.PRODUCT_UPDATE, owner_field="created_by_id"
            )
            if not has_permission:
                price_change_pct = abs(new_price - product.price) / product.price * 100
                if price_change_pct > 20:
                    await self.permission_service.ensure_permission(
                        user,
                        Permission.PRODUCT_ADMIN,
                        resource_type="Product",
                        resource_id=product_id,
                    )
            product.price = new_price
            return product

    service = ProductService(db=None)
    assert (await service.update_product_price("p1", 150.0, "owner")).price == 150.0
    assert (
        await service.update_product_price("p1", 160.0, "client")
    ).price == 160.0  # small change
    with pytest.raises(PermissionDeniedException):
        await service.update_product_price("p1", 500.0, "client")

    permission_service = get_permission_service(None)
    await permission_service.ensure_object_permission(
        USERS["manager"], products["p1"], Permission.PRODUCT_ADMIN, owner_field="created_by_id"
    )
    with pytest.raises(PermissionDeniedException):
        await permission_service.ensure_object_permission(
            USERS["owner"], products["p1"], Permission.PRODUCT_ADMIN, owner_field="created_by_id"
        )

    set_user_loader(lambda user_id, db: USERS.get(user_id))
    try:

        async def get_user_permissions(user_id: str, db: Any):  # type: ignore[no-untyped-def]
            permission_service = get_permission_service(db)
            permissions = await permission_service.get_user_permissions(user_id)
            return {"user_id": user_id, "permissions": [p.value for p in permissions]}

        result = await get_user_permissions("client", None)
        assert sorted(result["permissions"]) == sorted(
            p.value for p in ROLE_PERMISSIONS[UserRole.CLIENT]
        )
        await get_permission_service(None).invalidate_permissions_cache("client")
    finally:
        set_user_loader(None)


class ProductCreate(BaseModel):
    """The application's request body."""

    name: str


def _app() -> FastAPI:
    router = APIRouter()

    async def get_current_user(x_user: str = Header()) -> User:
        return USERS[x_user]

    @router.post("/products/")
    @require_permission(Permission.PRODUCT_CREATE)
    async def create_product(
        product_data: ProductCreate, current_user: User = Depends(get_current_user)
    ):  # type: ignore[no-untyped-def]
        return {"created": product_data.name, "by": current_user.id}

    @router.put("/products/{product_id}")
    @require_permissions([Permission.PRODUCT_UPDATE, Permission.PRODUCT_ADMIN], require_all=True)
    async def update_product(
        product_id: str, product_data: ProductCreate, current_user: User = Depends(get_current_user)
    ):  # type: ignore[no-untyped-def]
        return {"updated": product_id}

    @router.get("/reports/")
    @require_permissions([Permission.PRODUCT_ADMIN, Permission.SYSTEM_ADMIN], require_all=False)
    async def view_reports(current_user: User = Depends(get_current_user)):  # type: ignore[no-untyped-def]
        return {"reports": []}

    @router.delete("/users/{user_id}")
    @require_admin()
    async def delete_user(user_id: str, current_user: User = Depends(get_current_user)):  # type: ignore[no-untyped-def]
        return {"deleted": user_id}

    @router.post("/documents")
    @require_permission(Permission.DOCUMENT_CREATE)
    async def create_document(
        request: Request, current_user_id: str = Depends(get_current_user_id)
    ):  # type: ignore[no-untyped-def]
        return {"created_by": current_user_id}

    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(router)
    return app


async def test_decorator_examples_over_http() -> None:
    """'Using Permission Decorators' block behind FastAPI: 200 with the permission, 403 without."""
    app = _app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        created = await client.post("/products/", json={"name": "x"}, headers={"x-user": "manager"})
        refused = await client.post("/products/", json={"name": "x"}, headers={"x-user": "client"})
        updated = await client.put(
            "/products/p1", json={"name": "y"}, headers={"x-user": "manager"}
        )
        not_both = await client.put("/products/p1", json={"name": "y"}, headers={"x-user": "owner"})
        reports = await client.get("/reports/", headers={"x-user": "manager"})
        no_reports = await client.get("/reports/", headers={"x-user": "client"})
        deleted = await client.delete("/users/u9", headers={"x-user": "admin"})
        not_deleted = await client.delete("/users/u9", headers={"x-user": "manager"})
        anonymous_doc = await client.post("/documents")
    assert created.status_code == 200 and created.json() == {"created": "x", "by": "manager"}
    assert refused.status_code == 403 and refused.json()["code"] == "PERMISSION_DENIED"
    assert updated.status_code == 200 and not_both.status_code == 403
    assert reports.status_code == 200 and no_reports.status_code == 403
    assert deleted.status_code == 200 and not_deleted.status_code == 403
    assert anonymous_doc.status_code == 401
