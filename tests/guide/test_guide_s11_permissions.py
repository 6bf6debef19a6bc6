"""Guide §11 (Permission System) and its §14 usages, run as written with the user's objects supplied.

Endpoints run under ``setup_app`` over HTTP with real bearer tokens; SPEC §4/§10 rules are
cross-checked (user from ``current_user`` or from the token / API key, 401 vs 403, object rule).
Each block is run from the guide itself (``tests/guide/_blocks.py``) with the user's objects, once per setup.
"""
# ruff: noqa: I001, E402, F811, F841, UP006, UP035 - the §14 blocks below are copied verbatim

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Dict, List

import pytest
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.error import wait_for_reports
from crown_nexus.core.exceptions import PermissionDeniedException, ResourceNotFoundException
from crown_nexus.core.permissions import get_permission_service, set_user_loader, wait_for_events
from crown_nexus.core.permissions.models import Permission, UserRole, ROLE_PERMISSIONS
from crown_nexus.core.security import create_token
from crown_nexus.core.security.dependencies import get_current_user_id
from crown_nexus.logging import get_logger
from crown_nexus.core.error import handle_exception
from crown_nexus.testing import app_client, capture_errors
from tests.guide._support import assert_error_body, data_of, guide_app

from tests.guide._blocks import section

logger = get_logger("app.permissions.example")

# the §11 blocks, by a line of each
MODELS = "required_permission = Permission.USER_CREATE"
BASIC_CHECKS = "def check_user_access(user, permission):"
OBJECT_CHECKS = "def enforce_product_access(user, product, permission):"
DECORATORS = "@require_admin()"
SERVICE = '@router.get("/products/{product_id}/sensitive-data")'
SERVICE_CLASS = "async def update_product_price(self, product_id: str, new_price: float, user_id: str):"
RETRIEVING = "async def get_user_permissions(user_id: str, db: AsyncSession):"
UTILITIES = "def can_perform_all(user, permissions: List[str]):"


s11 = section(11)


def permission_checks() -> dict[str, Any]:
    """'Basic Permission Checking' and 'Object-Level Permissions' (the exception imported as the user's module does)."""
    names = s11(BASIC_CHECKS).run()
    names.update(s11(OBJECT_CHECKS).run(PermissionDeniedException=PermissionDeniedException))
    return names


def decorated_routes(get_current_user: Any, product_service: Any, report_service: Any, user_service: Any) -> APIRouter:
    """'Using Permission Decorators' on a new router: the user's models, their ``get_current_user`` and services."""
    router = APIRouter()
    models = {"ProductCreate": ProductCreate, "ProductUpdate": ProductUpdate, "User": User}
    s11(DECORATORS).run(
        router=router,
        Depends=Depends,
        get_current_user=get_current_user,
        product_service=product_service,
        report_service=report_service,
        user_service=user_service,
        **models,
    )
    return router


def service_class(get_user_by_id: Any) -> type:
    """'Permission in Service Classes': the guide's ``ProductService`` loading users with ``get_user_by_id``."""
    names = {"get_user_by_id": get_user_by_id, "ResourceNotFoundException": ResourceNotFoundException, "Permission": Permission}
    product_service_class: type = s11(SERVICE_CLASS).run(**names)["ProductService"]
    return product_service_class


def user_permissions_lookup(session_type: Any) -> Any:
    """'Retrieving User Permissions': ``get_user_permissions`` (its ``db`` annotated with the user's session type)."""
    names = {
        "AsyncSession": session_type,
        "get_permission_service": get_permission_service,
        "logger": logger,
        "handle_exception": handle_exception,
    }
    return s11(RETRIEVING).run(**names)["get_user_permissions"]


def utilities() -> dict[str, Any]:
    """'Utility Functions': ``is_owner``, ``can_perform_any``, ``can_perform_all``."""
    return s11(UTILITIES).run(List=List)

# --- the user's own objects ---------------------------------------------------------------------


@dataclass
class User:
    """The application's user model (SPEC §4)."""

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


USERS: dict[str, User] = {}
PRODUCTS: dict[str, Product] = {}


@pytest.fixture(autouse=True)
def _data() -> Iterator[None]:
    """Fresh users and products per test; the permission service's user loader reads USERS."""
    USERS.clear()
    USERS.update(
        admin=User("admin", UserRole.ADMIN),
        manager=User("manager", UserRole.MANAGER),
        client=User("client", UserRole.CLIENT),
        owner=User("owner", UserRole.USER, permissions=[Permission.PRODUCT_UPDATE]),
        gone=User("gone", UserRole.ADMIN, is_active=False),
    )
    PRODUCTS.clear()
    PRODUCTS.update(p1=Product("p1", created_by_id="owner", price=100.0))
    set_user_loader(lambda user_id, db: USERS.get(user_id))
    yield
    set_user_loader(None)


def bearer(user_id: str) -> dict[str, str]:
    """An Authorization header with a real access token carrying the user's role and grants."""
    user = USERS[user_id]
    token = create_token(user.id, role=user.role, permissions=[p.value for p in user.permissions])
    return {"Authorization": f"Bearer {token}"}


class AsyncSession:
    """The user's database session (commits are counted)."""

    def __init__(self) -> None:
        self.commits = 0

    async def commit(self) -> None:
        self.commits += 1


db = AsyncSession()


async def get_db() -> Any:
    """The user's ``get_db`` dependency."""
    yield db


async def get_current_user(user_id: str = Depends(get_current_user_id)) -> User:
    """The user's ``get_current_user``: the token's subject loaded from their user table."""
    return USERS[user_id]


async def get_user_by_id(db: Any, user_id: str) -> User:
    """The user's loader."""
    return USERS[user_id]


class ProductCreate(BaseModel):
    """The user's request body for new products."""

    name: str


class ProductUpdate(BaseModel):
    """The user's request body for product updates."""

    name: str


class _ProductService:
    async def create_product(self, data: ProductCreate, user_id: str) -> dict[str, Any]:
        return {"name": data.name, "created_by": user_id}

    async def update_product(self, product_id: str, data: ProductUpdate, user_id: str) -> dict[str, Any]:
        return {"id": product_id, "name": data.name, "updated_by": user_id}

    async def get_sensitive_data(self, product_id: str) -> dict[str, Any]:
        return {"id": product_id, "cost_price": 42.0}


class _ReportService:
    async def get_reports(self) -> list[str]:
        return ["q1"]


class _UserService:
    async def delete_user(self, user_id: str) -> dict[str, Any]:
        return {"deleted": user_id}


class _ProductRepository:
    async def get_by_id(self, *args: Any) -> Product | None:
        return PRODUCTS.get(args[-1])  # the guide calls it as (db, id) and as (id)

    async def save(self, product: Product) -> None:
        PRODUCTS[product.id] = product


class _UserRepository:
    async def get_by_id(self, user_id: str) -> User | None:
        return USERS.get(user_id)


product_service = _ProductService()
report_service = _ReportService()
user_service = _UserService()
product_repository = _ProductRepository()
user_repository = _UserRepository()


# --- 'Permission Models' ------------------------------------------------------------------------


def test_permission_models(capsys: pytest.CaptureFixture[str]) -> None:
    """Enums, ROLE_PERMISSIONS lookup and iteration print what the guide shows."""
    required_permission = s11(MODELS).run()["required_permission"]

    out = capsys.readouterr().out.splitlines()
    assert required_permission == "user:create" and Permission.SYSTEM_ADMIN == "system:admin"
    assert out[0] == "Admins can create users" and out[1] == "Available permissions:"
    assert out[2:] == [f"- {p.name}: {p.value}" for p in Permission]
    assert "- PRODUCT_CREATE: product:create" in out


# --- 'Basic Permission Checking' and 'Object-Level Permissions' --------------------------


def test_basic_permission_checking(capsys: pytest.CaptureFixture[str]) -> None:
    """Single, all-of and any-of checks answer by role and grants and print the guide's lines."""
    checks = permission_checks()
    check_user_access, check_advanced_access, check_any_permission = (
        checks[name] for name in ("check_user_access", "check_advanced_access", "check_any_permission")
    )
    client, admin = USERS["client"], USERS["admin"]
    assert check_user_access(client, Permission.ORDER_CREATE) is True
    assert check_user_access(client, Permission.ORDER_DELETE) is False
    assert check_user_access(USERS["gone"], Permission.ORDER_READ) is False  # inactive: nothing
    assert check_user_access({"id": "d", "role": "client"}, "order:read") is True  # dicts work
    out = capsys.readouterr().out
    assert "User has permission: order:create" in out and "Permission denied: order:delete" in out
    assert check_advanced_access(client, [Permission.ORDER_CREATE, Permission.ORDER_READ]) is True
    assert check_advanced_access(client, [Permission.ORDER_CREATE, Permission.ORDER_ADMIN]) is False
    assert check_any_permission(client, [Permission.ORDER_ADMIN, Permission.ORDER_READ]) is True
    assert check_any_permission(client, [Permission.ORDER_ADMIN, Permission.USER_DELETE]) is False
    assert check_advanced_access(admin, [Permission.ORDER_ADMIN, Permission.USER_DELETE]) is True
    out = capsys.readouterr().out
    assert "User has all required permissions" in out
    assert "User is missing one or more required permissions" in out
    assert "User has at least one of the required permissions" in out
    assert "User has none of the required permissions" in out


def test_basic_checks_record_the_guide_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    """'Metrics Integration': the guide's PermissionChecker functions record the metrics too."""
    from crown_nexus.core.metrics import get_metrics_service

    metrics = get_metrics_service()
    checks = permission_checks()
    check_user_access, check_advanced_access, check_any_permission, check_product_access = (
        checks[name]
        for name in ("check_user_access", "check_advanced_access", "check_any_permission", "check_product_access")
    )
    client = USERS["client"]
    multi = {"require_all": "True", "granted": "False"}
    anyof = {"require_all": "False", "granted": "True"}
    single = {"permission": "order:delete", "granted": "False"}
    obj = {"object_type": "Product", "permission": "product:update", "granted": "True"}
    before = [
        metrics.get_counter_sum("multiple_permissions_checks_total", multi),
        metrics.get_counter_sum("multiple_permissions_checks_total", anyof),
        metrics.get_counter_sum("permission_checks_total", single),
        metrics.get_counter_sum("object_permission_checks_total", obj),
    ]
    assert check_advanced_access(client, [Permission.ORDER_CREATE, Permission.ORDER_ADMIN]) is False
    assert check_any_permission(client, [Permission.ORDER_ADMIN, Permission.ORDER_READ]) is True
    assert check_user_access(client, Permission.ORDER_DELETE) is False
    assert check_product_access(USERS["owner"], PRODUCTS["p1"], Permission.PRODUCT_UPDATE) is True
    after = [
        metrics.get_counter_sum("multiple_permissions_checks_total", multi),
        metrics.get_counter_sum("multiple_permissions_checks_total", anyof),
        metrics.get_counter_sum("permission_checks_total", single),
        metrics.get_counter_sum("object_permission_checks_total", obj),
    ]
    assert after == [b + 1 for b in before]
    for histogram in (
        "permission_check_duration_seconds",
        "multiple_permissions_check_duration_seconds",
        "object_permission_check_duration_seconds",
    ):
        assert metrics.get_metric(histogram) is not None, histogram


def test_object_level_rule(capsys: pytest.CaptureFixture[str]) -> None:
    """SPEC §4 object rule: system:admin, or <resource>:admin, or permission + ownership."""
    checks = permission_checks()
    check_product_access, enforce_product_access = checks["check_product_access"], checks["enforce_product_access"]
    product = PRODUCTS["p1"]
    owner, client, manager, admin = (USERS[n] for n in ("owner", "client", "manager", "admin"))
    assert check_product_access(owner, product, Permission.PRODUCT_UPDATE) is True  # holds + owns
    assert check_product_access(manager, product, Permission.PRODUCT_UPDATE) is True  # product:admin
    assert check_product_access(admin, product, Permission.PRODUCT_DELETE) is True  # system:admin
    assert check_product_access(client, product, Permission.PRODUCT_UPDATE) is False
    assert check_product_access(owner, product, Permission.PRODUCT_DELETE) is False  # owns, lacks it
    other = Product("p2", created_by_id="someone-else")
    assert check_product_access(owner, other, Permission.PRODUCT_UPDATE) is False  # holds, not owner
    numeric = User("7", UserRole.USER, permissions=[Permission.PRODUCT_UPDATE])
    assert check_product_access(numeric, Product("p3", created_by_id=7), Permission.PRODUCT_UPDATE)
    out = capsys.readouterr().out
    assert "User can PRODUCT_UPDATE this product" in out
    assert "User cannot PRODUCT_UPDATE this product" in out

    assert enforce_product_access(owner, product, Permission.PRODUCT_UPDATE) is True
    assert "Access granted: product:update" in capsys.readouterr().out
    with pytest.raises(PermissionDeniedException) as info:
        enforce_product_access(client, product, Permission.PRODUCT_UPDATE)
    assert info.value.status_code == 403 and info.value.code == "PERMISSION_DENIED"
    assert info.value.permission == "product:update"
    assert f"Access denied: {info.value.message}" in capsys.readouterr().out


# --- 'Using Permission Decorators' -----------------------------------------------------------------


def decorator_router() -> APIRouter:
    """The guide's endpoints with the user's bearer-token ``get_current_user`` and services."""
    return decorated_routes(get_current_user, product_service, report_service, user_service)


async def test_decorators_over_http() -> None:
    """Each decorated endpoint: 200 with the permission(s), 403 without, 401 (Bearer) with no credentials."""
    app = guide_app(decorator_router())
    async with app_client(app) as client:
        r = await client.post("/products/", json={"name": "Lamp"}, headers=bearer("manager"))
        assert r.status_code == 200, r.text
        assert data_of(r.json()) == {"name": "Lamp", "created_by": "manager"}
        r = await client.post("/products/", json={"name": "Lamp"}, headers=bearer("client"))
        assert r.status_code == 403
        assert_error_body(r.json(), "PERMISSION_DENIED")
        assert r.json()["details"]["permission"] == "product:create"
        r = await client.post("/products/", json={"name": "Lamp"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert_error_body(r.json(), "AUTHENTICATION_ERROR")
        r = await client.post("/products/", json={"name": "Lamp"}, headers={"Authorization": "Bearer junk"})
        assert r.status_code == 401

        # ALL: manager holds both; owner holds product:update only
        r = await client.put("/products/p1", json={"name": "New"}, headers=bearer("manager"))
        assert r.status_code == 200 and data_of(r.json())["updated_by"] == "manager"
        r = await client.put("/products/p1", json={"name": "New"}, headers=bearer("owner"))
        assert r.status_code == 403
        assert_error_body(r.json(), "PERMISSION_DENIED")

        # ANY: product:admin (manager) or system:admin (admin); client has neither
        for who, status in (("manager", 200), ("admin", 200), ("client", 403)):
            r = await client.get("/reports/", headers=bearer(who))
            assert r.status_code == status, who
        assert data_of(r.json()) if status == 200 else True

        # admin only
        r = await client.delete("/users/u9", headers=bearer("admin"))
        assert r.status_code == 200 and data_of(r.json()) == {"deleted": "u9"}
        r = await client.delete("/users/u9", headers=bearer("manager"))
        assert r.status_code == 403
        # the docstrings survive the decorators (OpenAPI descriptions)
        schema = (await client.get("/openapi.json")).json()
        assert "Requires system:admin permission." in schema["paths"]["/users/{user_id}"]["delete"]["description"]


def test_decorated_functions_called_directly() -> None:
    """Called without FastAPI, the decorators read ``current_user``: 403 / 401 as typed exceptions."""
    import asyncio

    from crown_nexus.core.exceptions import AuthenticationException
    from crown_nexus.core.permissions.decorators import require_admin

    @require_admin()
    async def purge(current_user: User | None = None) -> str:
        return "purged"

    assert asyncio.run(purge(current_user=USERS["admin"])) == "purged"
    with pytest.raises(PermissionDeniedException):
        asyncio.run(purge(current_user=USERS["manager"]))
    with pytest.raises(AuthenticationException):
        asyncio.run(purge())


def test_decorator_signatures_stay_valid() -> None:
    """The hidden request parameter fits any signature (``*args``, ``**kwargs``) and direct calls still work."""
    import asyncio
    import inspect

    from crown_nexus.core.permissions.decorators import require_permission

    @require_permission(Permission.PRODUCT_READ)
    async def flexible(a: int, *rest: int, current_user: Any = None, **extra: Any) -> tuple[Any, ...]:
        return a, rest, extra

    params = list(inspect.signature(flexible).parameters.values())
    assert [p.kind for p in params][-1] is inspect.Parameter.VAR_KEYWORD
    assert params[-2].kind is inspect.Parameter.KEYWORD_ONLY and params[-2].annotation is Request
    assert asyncio.run(flexible(1, 2, 3, current_user=USERS["client"], x=4)) == (1, (2, 3), {"x": 4})


# --- SPEC §10: the user from the token / API key when there is no current_user --------------------


def token_only_router() -> APIRouter:
    from crown_nexus.core.permissions.decorators import require_permission, require_permissions

    router = APIRouter()

    @router.get("/catalogue")
    @require_permission(Permission.PRODUCT_READ)
    async def catalogue() -> dict[str, Any]:
        return {"items": ["lamp"]}

    @router.get("/audit")
    @require_permissions([Permission.SYSTEM_ADMIN, Permission.PRODUCT_ADMIN], require_all=False)
    async def audit(request: Request) -> dict[str, Any]:
        return {"path": request.url.path}

    @router.get("/sync-catalogue")
    @require_permission(Permission.PRODUCT_READ)
    def sync_catalogue(limit: int = 10) -> dict[str, Any]:
        return {"limit": limit}

    return router


async def test_require_permission_reads_bearer_token_and_api_key() -> None:
    """SPEC §10: with no current_user the decorators use the bearer token or API key claims."""
    from crown_nexus.core.security import generate_api_key, verify_api_key
    from crown_nexus.core.security.dependencies import register_api_key_resolver

    key = generate_api_key("svc-1", "reporting", [Permission.PRODUCT_READ.value])
    stored = {key.key_id: key}

    async def resolve(api_key: str, request: Request) -> dict[str, Any] | None:
        data = stored.get(api_key.split(".", 1)[0])
        if data is None or not verify_api_key(api_key, data.hashed_secret):
            return None
        return {"id": data.user_id, "role": None, "permissions": list(data.permissions)}

    app = guide_app(token_only_router())
    register_api_key_resolver(resolve, app=app)
    async with app_client(app) as client:
        ok = await client.get("/catalogue", headers=bearer("client"))
        assert ok.status_code == 200, ok.text
        assert data_of(ok.json()) == {"items": ["lamp"]}
        none = await client.get("/catalogue")
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
        assert_error_body(none.json(), "AUTHENTICATION_ERROR")
        bad = await client.get("/catalogue", headers={"Authorization": "Bearer not.a.jwt"})
        assert bad.status_code == 401
        inactive_grants = await client.get("/audit", headers=bearer("client"))
        assert inactive_grants.status_code == 403
        assert_error_body(inactive_grants.json(), "PERMISSION_DENIED")
        assert (await client.get("/audit", headers=bearer("manager"))).status_code == 200
        by_key = await client.get("/catalogue", headers={"X-API-Key": key.api_key})
        assert by_key.status_code == 200, by_key.text
        key_denied = await client.get("/audit", headers={"X-API-Key": key.api_key})
        assert key_denied.status_code == 403
        wrong_key = await client.get("/catalogue", headers={"X-API-Key": f"{key.key_id}.nope"})
        assert wrong_key.status_code == 401
        sync_ok = await client.get("/sync-catalogue", params={"limit": 3}, headers=bearer("client"))
        assert sync_ok.status_code == 200 and data_of(sync_ok.json()) == {"limit": 3}
        assert (await client.get("/sync-catalogue")).status_code == 401
        # the hidden request parameter does not appear in the API schema
        schema = (await client.get("/openapi.json")).json()
        params = schema["paths"]["/sync-catalogue"]["get"].get("parameters", [])
        assert [p["name"] for p in params] == ["limit"]
        assert "parameters" not in schema["paths"]["/catalogue"]["get"]


async def test_stacked_decorators_over_http() -> None:
    """Two stacked decorators both check the token's user; each can refuse (SPEC §10)."""
    from crown_nexus.core.permissions.decorators import require_admin, require_permission

    router = APIRouter()

    @router.get("/stacked/{item}")
    @require_permission(Permission.PRODUCT_READ)
    @require_admin()
    async def stacked(item: str) -> dict[str, str]:
        return {"item": item}

    app = guide_app(router)
    async with app_client(app) as client:
        ok = await client.get("/stacked/a", headers=bearer("admin"))
        manager = await client.get("/stacked/a", headers=bearer("manager"))
        anonymous = await client.get("/stacked/a")
    assert ok.status_code == 200 and data_of(ok.json()) == {"item": "a"}
    assert manager.status_code == 403 and anonymous.status_code == 401


# --- 'Permission Service' ----------------------------------------------------------------------------


def sensitive_router() -> APIRouter:
    """The guide's endpoint on the user's router, session, dependencies, repository and service."""
    router = APIRouter()
    s11(SERVICE).run(
        router=router,
        Depends=Depends,
        User=User,
        get_current_user=get_current_user,
        AsyncSession=AsyncSession,
        get_db=get_db,
        product_repository=product_repository,
        product_service=product_service,
        ResourceNotFoundException=ResourceNotFoundException,
        Permission=Permission,
    )
    return router


async def test_permission_service_endpoint() -> None:
    """Resource admins get the data; the owner without product:admin gets 403; unknown product 404."""
    app = guide_app(sensitive_router())
    async with app_client(app) as client:
        ok = await client.get("/products/p1/sensitive-data", headers=bearer("manager"))
        denied = await client.get("/products/p1/sensitive-data", headers=bearer("owner"))
        missing = await client.get("/products/zz/sensitive-data", headers=bearer("manager"))
        anonymous = await client.get("/products/p1/sensitive-data")
    assert ok.status_code == 200 and data_of(ok.json()) == {"id": "p1", "cost_price": 42.0}
    assert denied.status_code == 403
    assert_error_body(denied.json(), "PERMISSION_DENIED")
    assert denied.json()["details"]["permission"] == "product:admin"
    assert missing.status_code == 404
    assert_error_body(missing.json(), "RESOURCE_NOT_FOUND", "Product with id zz not found")
    assert anonymous.status_code == 401


# --- 'Permission in Service Classes' ---------------------------------------------------------------


async def test_permission_in_service_classes() -> None:
    """Owners change any price; others only by up to 20 %; beyond that product:admin is required."""
    service = service_class(get_user_by_id)(db)
    service.repository = product_repository
    assert service.permission_service.db is db
    assert (await service.update_product_price("p1", 300.0, "owner")).price == 300.0
    assert (await service.update_product_price("p1", 330.0, "client")).price == 330.0  # +10 %
    with pytest.raises(PermissionDeniedException) as info:
        await service.update_product_price("p1", 500.0, "client")  # +51 %
    assert info.value.permission == "product:admin" and info.value.resource_type == "Product"
    assert info.value.details["resource_id"] == "p1"
    assert PRODUCTS["p1"].price == 330.0
    with pytest.raises(ResourceNotFoundException):
        await service.update_product_price("nope", 1.0, "owner")


async def test_service_class_denial_event_names_the_resource() -> None:
    """The guide's ensure_permission(..., resource_type="Product", resource_id=...) denial event
    carries that resource (issue 13: it carried None)."""
    from crown_nexus.core.events import event_service

    seen: list[dict[str, Any]] = []

    async def on_denied(event: dict[str, Any]) -> None:
        seen.append(event["data"])

    event_service.subscribe("permission.denied", on_denied)
    try:
        service = service_class(get_user_by_id)(db)
        service.repository = product_repository
        with pytest.raises(PermissionDeniedException):
            await service.update_product_price("p1", 500.0, "client")  # +400 %: product:admin
        await wait_for_events()
        assert await event_service.wait_for_pending(timeout=5)
    finally:
        event_service.unsubscribe("permission.denied", on_denied)
    assert seen == [
        {
            "user_id": "client",
            "permission": "product:admin",
            "resource_type": "Product",
            "resource_id": "p1",
            "action": "admin",
        }
    ]


# --- 'Retrieving User Permissions' ----------------------------------------------------------------


async def test_retrieving_user_permissions() -> None:
    """A user's role permissions plus grants as strings; an unknown user is 404 and reported."""
    get_user_permissions = user_permissions_lookup(AsyncSession)
    result = await get_user_permissions("client", db)
    assert result["user_id"] == "client"
    assert sorted(result["permissions"]) == sorted(p.value for p in ROLE_PERMISSIONS[UserRole.CLIENT])
    owner = await get_user_permissions("owner", db)
    assert "product:update" in owner["permissions"]
    assert (await get_user_permissions("gone", db))["permissions"] == []  # inactive
    with capture_errors() as reporter:
        with pytest.raises(ResourceNotFoundException):
            await get_user_permissions("nobody", db)
        await wait_for_reports()
    [entry] = reporter.recent()
    assert entry.context.user_id == "nobody" and entry.context.function == "get_user_permissions"


async def test_retrieving_user_permissions_without_a_loader() -> None:
    """With no set_user_loader, the guide's lookup works for the request's own authenticated user;
    anything else is a ConfigurationException that says what to configure (issue 13)."""
    get_user_permissions = user_permissions_lookup(AsyncSession)
    set_user_loader(None)
    for uid in ("owner", "client"):
        await get_permission_service(db).invalidate_permissions_cache(uid)
    router = APIRouter()

    @router.get("/me/permissions")
    async def my_permissions(user_id: str = Depends(get_current_user_id)) -> dict[str, Any]:
        return await get_user_permissions(user_id, db)

    @router.get("/users/{other}/permissions")
    async def their_permissions(other: str, user_id: str = Depends(get_current_user_id)) -> dict[str, Any]:
        return await get_user_permissions(other, db)

    async with app_client(guide_app(router)) as client:
        mine = await client.get("/me/permissions", headers=bearer("owner"))
        theirs = await client.get("/users/client/permissions", headers=bearer("owner"))
    assert mine.status_code == 200, mine.text
    assert data_of(mine.json()) == {
        "user_id": "owner",
        "permissions": sorted(
            {p.value for p in ROLE_PERMISSIONS[UserRole.USER]} | {"product:update"},
            key=[p.value for p in Permission].index,
        ),
    }
    assert theirs.status_code == 500 and theirs.json()["code"] == "CONFIGURATION_ERROR"
    with pytest.raises(Exception) as info:
        await get_user_permissions("client", db)
    assert type(info.value).__name__ == "ConfigurationException"
    assert "set_user_loader(loader)" in info.value.message
    assert "loader(user_id: str, db) -> user | None" in info.value.message
    await get_permission_service(db).invalidate_permissions_cache("owner")


# --- 'Utility Functions' ---------------------------------------------------------------------------


def test_utility_functions() -> None:
    """Ownership compares ids as strings; any/all over permission strings."""
    ns = utilities()
    is_owner, can_perform_any, can_perform_all = ns["is_owner"], ns["can_perform_any"], ns["can_perform_all"]
    assert is_owner("u1", "u1") is True and is_owner("u1", "u2") is False
    client = USERS["client"]
    assert can_perform_any(client, ["order:admin", "order:read"]) is True
    assert can_perform_any(client, ["order:admin", "user:delete"]) is False
    assert can_perform_all(client, ["order:create", "order:read"]) is True
    assert can_perform_all(client, ["order:admin", "order:read"]) is False


# --- 'Cache Integration', verbatim -------------------------------------------------------------------

# Invalidate cached permissions when user roles/permissions change
async def update_user_role(user_id: str, new_role: UserRole):
    # Update in database
    user = await user_repository.get_by_id(user_id)
    user.role = new_role
    await db.commit()

    # Invalidate permission cache
    permission_service = get_permission_service(db)
    await permission_service.invalidate_permissions_cache(user_id)

    return user


async def test_cache_integration() -> None:
    """Permissions looked up by id are cached until update_user_role invalidates them."""
    get_user_permissions = user_permissions_lookup(AsyncSession)
    await get_permission_service(db).invalidate_permissions_cache("client")
    before = await get_user_permissions("client", db)
    assert "order:admin" not in before["permissions"]
    USERS["client"].role = UserRole.MANAGER  # changed behind the service's back: still cached
    assert (await get_user_permissions("client", db)) == before
    USERS["client"].role = UserRole.CLIENT
    commits = db.commits
    user = await update_user_role("client", UserRole.MANAGER)
    assert user.role is UserRole.MANAGER and db.commits == commits + 1
    after = await get_user_permissions("client", db)
    assert "order:admin" in after["permissions"]
    await get_permission_service(db).invalidate_permissions_cache("client")


async def test_checks_by_user_id_use_the_cached_permissions() -> None:
    """'Cache Integration': checks given a user id are answered from the cached permission list."""
    from crown_nexus.core.metrics import get_metrics_service

    metrics = get_metrics_service()
    service = get_permission_service(db)
    await service.invalidate_permissions_cache("owner")
    assert await service.has_permission("owner", Permission.PRODUCT_UPDATE)  # loads and caches
    hits = metrics.get_counter_sum("permission_check_cache_hits_total")
    assert not await service.has_permission("owner", Permission.PRODUCT_ADMIN)
    assert await service.check_object_permission(
        "owner", PRODUCTS["p1"], Permission.PRODUCT_UPDATE, owner_field="created_by_id"
    )
    assert metrics.get_counter_sum("permission_check_cache_hits_total") == hits + 2
    USERS["owner"].role = UserRole.ADMIN  # not seen until the cache is invalidated
    assert not await service.has_permission("owner", Permission.SYSTEM_ADMIN)
    await update_user_role("owner", UserRole.ADMIN)
    assert await service.has_permission("owner", Permission.SYSTEM_ADMIN)
    with pytest.raises(PermissionDeniedException):
        await service.ensure_permission("client", Permission.USER_DELETE)
    with pytest.raises(ResourceNotFoundException):
        await service.has_permission("nobody", Permission.PRODUCT_READ)
    await service.invalidate_permissions_cache("owner")


# --- 'Metrics Integration' ----------------------------------------------------------------------------


async def test_metrics_recorded_automatically() -> None:
    """The service's checks feed the guide's counters and histograms in the metrics service."""
    from crown_nexus.core.metrics import get_metrics_service

    metrics = get_metrics_service()
    service = get_permission_service(db)

    def total(name: str) -> float:
        return metrics.get_counter_sum(name)

    checks, multi, objects = (
        total("permission_checks_total"),
        total("multiple_permissions_checks_total"),
        total("object_permission_checks_total"),
    )
    assert await service.has_permission(USERS["client"], Permission.ORDER_READ)
    assert not await service.has_permissions(USERS["client"], [Permission.ORDER_ADMIN])
    assert await service.check_object_permission(
        USERS["owner"], PRODUCTS["p1"], Permission.PRODUCT_UPDATE, owner_field="created_by_id"
    )
    assert total("permission_checks_total") == checks + 1
    assert total("multiple_permissions_checks_total") == multi + 1
    await service.ensure_permissions(USERS["client"], [Permission.ORDER_READ])
    with pytest.raises(PermissionDeniedException):
        await service.ensure_permission(USERS["client"], Permission.ORDER_ADMIN)
    with pytest.raises(PermissionDeniedException):
        await service.ensure_permissions(USERS["client"], [Permission.ORDER_ADMIN])
    assert total("permission_checks_total") == checks + 2  # ensure_* are counted as checks too
    assert total("multiple_permissions_checks_total") == multi + 3
    assert metrics.get_counter_sum(
        "multiple_permissions_checks_total", {"require_all": "True", "granted": "False"}
    ) >= 2
    assert total("object_permission_checks_total") == objects + 1
    for histogram in (
        "permission_check_duration_seconds",
        "multiple_permissions_check_duration_seconds",
        "object_permission_check_duration_seconds",
    ):
        assert metrics.get_metric(histogram) is not None, histogram
    await service.invalidate_permissions_cache("owner")
    await service.get_user_permissions("owner")
    hits = total("user_permissions_cache_hits_total")
    await service.get_user_permissions("owner")
    assert total("user_permissions_cache_hits_total") == hits + 1
    assert metrics.get_metric("get_user_permissions_duration_seconds") is not None


# --- 'Events Integration', verbatim -----------------------------------------------------------------


async def test_permission_denied_event_handler() -> None:
    """A failed check publishes permission.denied with the fields the guide's handler reads."""
    from crown_nexus.core.events import event_service

    from crown_nexus.core.audit import AuditService, security_audit_service  # the shipped trail

    before = await AuditService().recent(1)

    # Example event handler for security monitoring
    @event_service.event_handler("permission.denied")
    async def log_permission_denied(event):
        data = event["data"]
        logger.warning(
            "Permission denied event",
            user_id=data["user_id"],
            permission=data["permission"],
            resource_type=data["resource_type"],
            resource_id=data["resource_id"],
            action=data["action"]
        )

        # Add to security audit log
        await security_audit_service.log_event(
            "PERMISSION_DENIED",
            user_id=data["user_id"],
            details=data
        )

    object_events: list[dict[str, Any]] = []

    @event_service.event_handler("permission.object_denied")
    async def on_object_denied(event: dict[str, Any]) -> None:
        object_events.append(event["data"])

    try:
        service = get_permission_service(db)
        assert not await service.has_permission(USERS["client"], Permission.USER_DELETE)
        assert not await service.check_object_permission(
            USERS["client"], PRODUCTS["p1"], Permission.PRODUCT_UPDATE, owner_field="created_by_id"
        )
        await wait_for_events()  # the checks handed their events to the event service
        assert await event_service.wait_for_pending(timeout=5)
    finally:
        event_service.unsubscribe("permission.denied", log_permission_denied)
        event_service.unsubscribe("permission.object_denied", on_object_denied)
    written = await AuditService().recent(5)
    new = [r for r in written if not before or r["seq"] > before[-1]["seq"]]
    [record] = [r for r in new if r["action"] == "PERMISSION_DENIED"]
    assert record["actor_id"] == "client"
    details = record["details"]
    assert details["permission"] == "user:delete" and details["action"] == "delete"
    assert (await AuditService().verify_chain()).ok
    [obj] = object_events
    assert obj["user_id"] == "client" and obj["permission"] == "product:update"
    assert obj["resource_type"] == "Product" and obj["resource_id"] == "p1"


# --- §14 'Securing API Endpoints with Multiple Layers', verbatim ------------------------------------


def secured_router() -> APIRouter:
    from fastapi import Depends, Request, APIRouter  # noqa: F401 - as written
    from crown_nexus.core.security.dependencies import get_current_user_id
    from crown_nexus.core.permissions.decorators import require_permission
    from crown_nexus.core.security.validation import detect_suspicious_content
    from crown_nexus.core.exceptions import SecurityException, ErrorCode
    from crown_nexus.core.security import get_security_service

    router = APIRouter()

    # Define multiple security layers
    async def validate_content(request: Request):
        """Middleware to check for malicious content."""
        body = await request.json()
        content = json.dumps(body)

        if detect_suspicious_content(content):
            raise SecurityException(
                message="Potentially malicious content detected",
                code=ErrorCode.SECURITY_ERROR
            )
        return body

    @router.post("/documents")
    @require_permission(Permission.DOCUMENT_CREATE)  # Permission check
    async def create_document(
        request: Request,
        body: Dict[str, Any] = Depends(validate_content),  # Content validation
        current_user_id: str = Depends(get_current_user_id),  # Authentication
        db: AsyncSession = Depends(get_db)
    ):
        """Create a new document.

        This endpoint is protected by:
        1. Authentication (get_current_user_id)
        2. Permission check (require_permission)
        3. Content validation (validate_content)
        4. Rate limiting (RateLimitMiddleware)
        5. CSRF protection (from security middleware)
        """
        security_service = get_security_service()

        # Get CSRF token from header
        csrf_token = request.headers.get("X-CSRF-Token")
        if not csrf_token or not security_service.validate_csrf_token(csrf_token, current_user_id):
            raise SecurityException(message="Invalid CSRF token")

        # Create document
        document_service = get_service("document_service", db=db)
        document = await document_service.create_document(body, current_user_id)

        return document

    return router


class DocumentService:
    """The user's document service (registered as "document_service")."""

    def __init__(self, db: Any = None) -> None:
        self.db = db

    async def create_document(self, body: dict[str, Any], user_id: str) -> dict[str, Any]:
        return {"title": body["title"], "owner_id": user_id}


async def test_securing_endpoint_with_multiple_layers() -> None:
    """Authentication 401, permission 403, suspicious content 403, CSRF 403, and 200 when all pass."""
    from crown_nexus.core.security import get_security_service
    from tests.guide._support import registered

    csrf = get_security_service().generate_csrf_token("owner")
    app = guide_app(secured_router())
    with registered("document_service", DocumentService):
        async with app_client(app) as client:
            ok = await client.post(
                "/documents", json={"title": "Plan"}, headers={**bearer("owner"), "X-CSRF-Token": csrf}
            )
            anonymous = await client.post("/documents", json={"title": "Plan"})
            no_perm = await client.post(
                "/documents", json={"title": "Plan"}, headers={**bearer("client"), "X-CSRF-Token": csrf}
            )
            evil = await client.post(
                "/documents",
                json={"title": "<script>alert(1)</script>"},
                headers={**bearer("owner"), "X-CSRF-Token": csrf},
            )
            no_csrf = await client.post("/documents", json={"title": "Plan"}, headers=bearer("owner"))
            wrong_csrf = await client.post(
                "/documents",
                json={"title": "Plan"},
                headers={**bearer("owner"), "X-CSRF-Token": get_security_service().generate_csrf_token("other")},
            )
    assert ok.status_code == 200, ok.text
    assert data_of(ok.json()) == {"title": "Plan", "owner_id": "owner"}
    assert anonymous.status_code == 401
    assert_error_body(anonymous.json(), "AUTHENTICATION_ERROR")
    assert no_perm.status_code == 403
    assert_error_body(no_perm.json(), "PERMISSION_DENIED")
    assert evil.status_code == 403
    assert_error_body(evil.json(), "SECURITY_ERROR", "Potentially malicious content detected")
    for response in (no_csrf, wrong_csrf):
        assert response.status_code == 403
        assert_error_body(response.json(), "SECURITY_ERROR", "Invalid CSRF token")


def test_permission_denied_with_message_alone() -> None:
    """SPEC: PermissionDeniedException(message=...) alone works (403, PERMISSION_DENIED)."""
    exc = PermissionDeniedException(message="You don't have permission to create products")
    assert exc.status_code == 403 and exc.code == "PERMISSION_DENIED"
    assert exc.message == "You don't have permission to create products"


# --- §14 'Combining Authentication, Permissions and Business Logic', verbatim ---------------------


@dataclass
class Document:
    """The user's document row."""

    id: str
    owner_id: str
    name: str = "Plan"
    type: str = "report"


@dataclass
class DocumentShare:
    """The user's share row."""

    document_id: str
    recipient_id: str
    permissions: list[str]
    created_by: str
    created_at: datetime.datetime
    updated_at: datetime.datetime | None = None
    updated_by: str | None = None


class DocumentShareSchema(BaseModel):
    """The user's share request schema."""

    recipient_id: str
    permissions: list[str]


class _DocumentRepository:
    def __init__(self) -> None:
        self.documents = {"d1": Document("d1", owner_id="owner")}
        self.shares: dict[tuple[str, str], DocumentShare] = {}

    async def get_by_id(self, document_id: str) -> Document | None:
        return self.documents.get(document_id)

    async def get_share(self, document_id: str, recipient_id: str) -> DocumentShare | None:
        return self.shares.get((document_id, recipient_id))


class _ShareSession(AsyncSession):
    def __init__(self, repository: _DocumentRepository) -> None:
        super().__init__()
        self.repository = repository

    def add(self, share: DocumentShare) -> None:
        self.repository.shares[(share.document_id, share.recipient_id)] = share


def document_service_class() -> type:
    from crown_nexus.core.exceptions import BusinessException

    class DocumentService:
        def __init__(self, db):
            self.db = db
            self.logger = get_logger("app.domains.documents.service")
            self.security_service = get_service("security_service", db=db)
            self.permission_service = get_service("permission_service", db=db)
            self.validation_service = get_service("validation_service", db=db)
            self.cache_service = get_service("cache_service")
            self.metrics_service = get_service("metrics_service")

        async def share_document(self, document_id: str, share_data: Dict[str, Any], user_id: str):
            """Share a document with another user or group."""
            start_time = time.monotonic()
            success = False

            try:
                self.logger.info("Document share requested", document_id=document_id, user_id=user_id)

                # Get current user
                user = await get_user_by_id(self.db, user_id)

                # Get the document
                document = await self.repository.get_by_id(document_id)
                if not document:
                    raise ResourceNotFoundException(resource_type="Document", resource_id=document_id)

                # Check document permission (requires either document:admin or document:share)
                await self.permission_service.ensure_object_permission(
                    user,
                    document,
                    Permission.DOCUMENT_SHARE,
                    owner_field="owner_id"
                )

                # Validate share data
                validated_data = self.validation_service.validate_data(share_data, DocumentShareSchema)

                # Business logic validations
                if validated_data.recipient_id == user_id:
                    raise BusinessException(
                        message="Cannot share a document with yourself",
                        details={"document_id": document_id}
                    )

                # Check if recipient exists
                recipient = await get_user_by_id(self.db, validated_data.recipient_id)

                # Check if already shared
                existing_share = await self.repository.get_share(document_id, validated_data.recipient_id)
                if existing_share:
                    # Update existing share
                    existing_share.permissions = validated_data.permissions
                    existing_share.updated_at = datetime.datetime.now(datetime.UTC)
                    existing_share.updated_by = user_id
                else:
                    # Create new share
                    share = DocumentShare(
                        document_id=document_id,
                        recipient_id=validated_data.recipient_id,
                        permissions=validated_data.permissions,
                        created_by=user_id,
                        created_at=datetime.datetime.now(datetime.UTC)
                    )
                    self.db.add(share)

                await self.db.commit()

                # Invalidate caches
                await self.cache_service.delete(f"document:access:{document_id}:{validated_data.recipient_id}")
                await self.cache_service.delete(f"user:documents:{validated_data.recipient_id}")

                # Audit logging
                audit_service = get_service("audit_service")
                await audit_service.log_action(
                    user_id=user_id,
                    action="document_share",
                    resource_type="Document",
                    resource_id=document_id,
                    target_id=validated_data.recipient_id,
                    details={"permissions": validated_data.permissions}
                )

                # Publish event
                event_service = get_service("event_service")
                await event_service.publish(
                    event_name="document.shared",
                    payload={
                        "document_id": document_id,
                        "shared_by": user_id,
                        "shared_with": validated_data.recipient_id,
                        "permissions": validated_data.permissions,
                        "document_name": document.name
                    }
                )

                success = True
                self.logger.info(
                    "Document shared successfully",
                    document_id=document_id,
                    user_id=user_id,
                    recipient_id=validated_data.recipient_id
                )

                return {
                    "document_id": document_id,
                    "recipient_id": validated_data.recipient_id,
                    "permissions": validated_data.permissions,
                    "success": True
                }

            except Exception as e:
                handle_exception(
                    e,
                    document_id=document_id,
                    user_id=user_id,
                    recipient_id=share_data.get("recipient_id")
                )
                raise

            finally:
                # Record metrics
                duration = time.monotonic() - start_time
                self.metrics_service.observe_histogram(
                    "document_share_duration_seconds",
                    duration,
                    {
                        "success": str(success),
                        "document_type": getattr(document, "type", "unknown")
                    }
                )
                self.metrics_service.increment_counter(
                    "document_shares_total",
                    labels={
                        "success": str(success),
                        "document_type": getattr(document, "type", "unknown")
                    }
                )

    return DocumentService


async def test_combining_auth_permissions_and_business_logic() -> None:
    """Owner shares (audited, event published); non-owner 403; self-share 400; unknown document 404."""
    from crown_nexus.core.error import AuditService
    from crown_nexus.core.events import event_service

    shared: list[dict[str, Any]] = []

    @event_service.event_handler("document.shared")
    async def on_shared(event: dict[str, Any]) -> None:
        shared.append(event["data"])

    repository = _DocumentRepository()
    USERS["reader"] = User("reader", UserRole.CLIENT)
    service = document_service_class()(_ShareSession(repository))
    service.repository = repository
    try:
        result = await service.share_document("d1", {"recipient_id": "reader", "permissions": ["read"]}, "owner")
        assert result == {"document_id": "d1", "recipient_id": "reader", "permissions": ["read"], "success": True}
        assert repository.shares[("d1", "reader")].created_by == "owner"
        audit = (await AuditService().recent(1))[0]  # read back from the durable trail
        assert (audit["user_id"], audit["action"], audit["resource_id"]) == ("owner", "document_share", "d1")
        assert (audit["resource_type"], audit["target_id"]) == ("Document", "reader")
        assert audit["details"] == {"permissions": ["read"]}
        assert (await AuditService().verify_chain()).ok
        with pytest.raises(PermissionDeniedException):
            await service.share_document("d1", {"recipient_id": "owner", "permissions": ["read"]}, "client")
        from crown_nexus.core.exceptions import BusinessException

        with pytest.raises(BusinessException) as info:
            await service.share_document("d1", {"recipient_id": "owner", "permissions": ["read"]}, "owner")
        assert info.value.status_code == 400
        with pytest.raises(ResourceNotFoundException):
            await service.share_document("d9", {"recipient_id": "reader", "permissions": []}, "owner")
        await event_service.wait_for_pending(timeout=5)
    finally:
        event_service.unsubscribe("document.shared", on_shared)
    assert [e["shared_with"] for e in shared] == ["reader"]


# --- the same blocks on a second setup: each permission-check implementation, bare FastAPI apps ---
import httpx
from fastapi import FastAPI, Header

from crown_nexus.core.exceptions import install_exception_handlers
from crown_nexus.core.permissions.decorators import require_permission


# the application's User and Product models above, with their own users
EXAMPLE_USERS = {
    "admin": User("admin", UserRole.ADMIN),
    "manager": User("manager", UserRole.MANAGER),
    "client": User("client", UserRole.CLIENT),
    "owner": User("owner", UserRole.USER, permissions=[Permission.PRODUCT_UPDATE]),
}


@pytest.mark.usefixtures("impl_registry")
def test_permission_models_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """'Permission Models' block."""
    required_permission = s11(MODELS).run()["required_permission"]
    out = capsys.readouterr().out
    assert required_permission == "user:create"
    assert "Admins can create users" in out
    assert "- SYSTEM_ADMIN: system:admin" in out


@pytest.mark.usefixtures("impl_registry")
def test_basic_checking_and_object_level(capsys: pytest.CaptureFixture[str]) -> None:
    """'Basic Permission Checking' and 'Object-Level Permissions' blocks."""
    checks = permission_checks()
    check_user_access, check_advanced_access, check_any_permission = (
        checks[name] for name in ("check_user_access", "check_advanced_access", "check_any_permission")
    )
    check_product_access, enforce_product_access = checks["check_product_access"], checks["enforce_product_access"]

    client, owner = EXAMPLE_USERS["client"], EXAMPLE_USERS["owner"]
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
    assert enforce_product_access(EXAMPLE_USERS["manager"], product, Permission.PRODUCT_UPDATE)
    with pytest.raises(PermissionDeniedException):
        enforce_product_access(client, product, Permission.PRODUCT_UPDATE)


@pytest.mark.usefixtures("impl_registry")
def test_utility_functions_as_written() -> None:
    """'Utility Functions' block."""
    ns = utilities()
    is_owner, can_perform_any, can_perform_all = ns["is_owner"], ns["can_perform_any"], ns["can_perform_all"]

    assert is_owner("u1", "u1") and not is_owner("u1", "u2")
    assert can_perform_any(EXAMPLE_USERS["client"], ["order:admin", "order:read"])
    assert not can_perform_all(EXAMPLE_USERS["client"], ["order:admin", "order:read"])


@pytest.mark.usefixtures("impl_registry")
async def test_service_examples() -> None:
    """'Permission Service', 'Permission in Service Classes' and 'Retrieving User Permissions'."""
    products = {"p1": Product("p1", created_by_id="owner", price=100.0)}

    async def get_user_by_id(db: Any, user_id: str) -> User:
        return EXAMPLE_USERS[user_id]

    class ExampleRepository:
        """The application's product store."""

        async def get_by_id(self, product_id: str) -> Product | None:
            return products.get(product_id)

        async def save(self, product: Product) -> None:
            products[product.id] = product

    ProductService = service_class(get_user_by_id)

    service = ProductService(db=None)
    service.repository = ExampleRepository()
    assert (await service.update_product_price("p1", 150.0, "owner")).price == 150.0
    assert (
        await service.update_product_price("p1", 160.0, "client")
    ).price == 160.0  # small change
    with pytest.raises(PermissionDeniedException):
        await service.update_product_price("p1", 500.0, "client")

    permission_service = get_permission_service(None)
    await permission_service.ensure_object_permission(
        EXAMPLE_USERS["manager"], products["p1"], Permission.PRODUCT_ADMIN, owner_field="created_by_id"
    )
    with pytest.raises(PermissionDeniedException):
        await permission_service.ensure_object_permission(
            EXAMPLE_USERS["owner"], products["p1"], Permission.PRODUCT_ADMIN, owner_field="created_by_id"
        )

    set_user_loader(lambda user_id, db: EXAMPLE_USERS.get(user_id))
    try:
        get_user_permissions = user_permissions_lookup(Any)
        result = await get_user_permissions("client", None)
        assert sorted(result["permissions"]) == sorted(
            p.value for p in ROLE_PERMISSIONS[UserRole.CLIENT]
        )
        await get_permission_service(None).invalidate_permissions_cache("client")
    finally:
        set_user_loader(None)


class ExampleServices:
    """The application's product, report and user services behind the decorated endpoints."""

    async def create_product(self, data: ProductCreate, user_id: str) -> dict[str, Any]:
        return {"created": data.name, "by": user_id}

    async def update_product(self, product_id: str, data: ProductUpdate, user_id: str) -> dict[str, Any]:
        return {"updated": product_id}

    async def get_reports(self) -> dict[str, Any]:
        return {"reports": []}

    async def delete_user(self, user_id: str) -> dict[str, Any]:
        return {"deleted": user_id}


def _app() -> FastAPI:
    async def get_current_user(x_user: str = Header()) -> User:
        return EXAMPLE_USERS[x_user]

    services = ExampleServices()
    router = decorated_routes(get_current_user, services, services, services)

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


@pytest.mark.usefixtures("impl_registry")
async def test_decorator_examples_over_http() -> None:
    """'Using Permission Decorators' block behind FastAPI (the user from an x-user header): 200 with the permission, 403 without."""
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


from crown_nexus.core.permissions import reset_registry
from tests.conftest import implementations_of


@pytest.fixture(params=implementations_of("permissions"))
def impl_registry(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh default registry of the implementation under test; defaults restored after."""
    reg = reset_registry(request.param)
    try:
        yield reg
    finally:
        reset_registry()
