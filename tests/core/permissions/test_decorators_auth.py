"""SPEC §10: permission decorators authenticate the request when the endpoint has no user argument.

``require_permission`` / ``require_permissions`` / ``require_admin`` take the user from the
endpoint's ``current_user`` argument when there is one, otherwise from the request's bearer token
or API key (their ``role`` and ``permissions``): no credentials → 401 with ``WWW-Authenticate:
Bearer`` and the SPEC §3 body, not enough → 403. Tested over HTTP with real tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.requests import Request as StarletteRequest

from crown_nexus.core import security
from crown_nexus.core.exceptions import install_exception_handlers
from crown_nexus.core.permissions import (
    Permission,
    UserRole,
    require_admin,
    require_permission,
    require_permissions,
)
from crown_nexus.core.security.dependencies import register_api_key_resolver
from crown_nexus.settings import Settings

SETTINGS = Settings(
    secret_key="decorator-auth-secret-0123456789-0123456789",
    jwt_issuer="crown-nexus-tests",
    jwt_audience="crown-nexus-tests-api",
)
ERROR_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}


class Person:
    """A user object as in SPEC §4 (``id``, ``role``, ``permissions``)."""

    def __init__(self, id: str, role: UserRole, permissions: list[str] | None = None) -> None:
        self.id = id
        self.role = role
        self.permissions = permissions or []
        self.is_active = True


def _build_app(keys: dict[str, dict[str, Any]]) -> FastAPI:
    router = APIRouter()

    @router.post("/products")
    @require_permission(Permission.PRODUCT_CREATE)
    async def create_product(name: str = "p") -> dict[str, str]:
        return {"created": name}

    @router.get("/products/sync")
    @require_permission(Permission.PRODUCT_CREATE)
    def create_product_sync() -> dict[str, bool]:
        return {"sync": True}

    @router.get("/own-request")
    @require_permission(Permission.PRODUCT_CREATE)
    async def with_request(request: Request) -> dict[str, str]:
        return {"path": request.url.path}

    @router.get("/reports")
    @require_permissions([Permission.PRODUCT_ADMIN, Permission.SYSTEM_ADMIN], require_all=False)
    async def reports() -> dict[str, list[str]]:
        return {"reports": []}

    @router.get("/both")
    @require_permissions([Permission.PRODUCT_UPDATE, Permission.ORDER_READ])
    async def both() -> dict[str, bool]:
        return {"ok": True}

    @router.delete("/users/{user_id}")
    @require_admin()
    async def delete_user(user_id: str) -> dict[str, str]:
        return {"deleted": user_id}

    async def header_user(request: Request) -> Person:
        return Person("arg-user", UserRole(request.headers.get("x-role", "guest")))

    @router.get("/with-user")
    @require_permission(Permission.PRODUCT_CREATE)
    async def with_user(current_user: Person = Depends(header_user)) -> dict[str, str]:
        return {"by": current_user.id}

    async def resolve(api_key: str, request: StarletteRequest) -> dict[str, Any] | None:
        parsed = api_key.split(".", 1)
        entry = keys.get(parsed[0]) if len(parsed) == 2 else None
        if entry is None or not security.verify_api_key(api_key, entry["hashed_secret"]):
            return None
        return {"id": entry["user_id"], "role": entry["role"], "permissions": entry["perms"]}

    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(router)
    app.state.security_service = security.configure_security(SETTINGS)
    register_api_key_resolver(resolve, app=app)
    return app


@pytest.fixture
def api_keys() -> dict[str, dict[str, Any]]:
    """The test's API key store: key_id -> hashed secret, owner, role and extra permissions."""
    return {}


@pytest.fixture
def app(api_keys: dict[str, dict[str, Any]]) -> Iterator[FastAPI]:
    """An app whose endpoints are guarded by the decorators only (no user dependency)."""
    application = _build_app(api_keys)
    try:
        yield application
    finally:
        security.configure_security(None)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def _bearer(role: str | None, permissions: list[str] | None = None) -> dict[str, str]:
    token = security.create_token("user-1", role=role, permissions=permissions)
    return {"Authorization": f"Bearer {token}"}


def _api_key(
    store: dict[str, dict[str, Any]], role: str, perms: list[str] | None = None
) -> dict[str, str]:
    data = security.generate_api_key("key-owner", "test")
    store[data.key_id] = {
        "hashed_secret": data.hashed_secret,
        "user_id": "key-owner",
        "role": role,
        "perms": perms or [],
    }
    return {"X-API-Key": data.api_key}


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers.get("www-authenticate") == "Bearer"
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["success"] is False and body["code"] == "AUTHENTICATION_ERROR"


def _assert_403(response: httpx.Response) -> None:
    assert response.status_code == 403
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["success"] is False and body["code"] == "PERMISSION_DENIED"


async def test_no_credentials_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    """Without a token or API key every guarded endpoint answers 401 + WWW-Authenticate."""
    for method, url in [
        ("POST", "/products"),
        ("GET", "/products/sync"),
        ("GET", "/own-request"),
        ("GET", "/reports"),
        ("GET", "/both"),
        ("DELETE", "/users/u1"),
    ]:
        _assert_401(await client.request(method, url))


async def test_bearer_role_decides(client: httpx.AsyncClient) -> None:
    """A token whose role lacks the permission gets 403; a role that has it gets 200."""
    _assert_403(await client.post("/products", headers=_bearer("client")))
    ok = await client.post("/products", params={"name": "lamp"}, headers=_bearer("manager"))
    assert ok.status_code == 200 and ok.json() == {"created": "lamp"}


async def test_bearer_permissions_claim_grants(client: httpx.AsyncClient) -> None:
    """The token's ``permissions`` claim adds grants on top of its role."""
    granted = _bearer("client", [Permission.PRODUCT_CREATE.value])
    assert (await client.post("/products", headers=granted)).status_code == 200
    _assert_403(await client.post("/products", headers=_bearer(None, ["order:read"])))


async def test_sync_endpoint_and_own_request(client: httpx.AsyncClient) -> None:
    """Sync endpoints and endpoints declaring their own ``Request`` are guarded alike."""
    _assert_403(await client.get("/products/sync", headers=_bearer("guest")))
    sync = await client.get("/products/sync", headers=_bearer("manager"))
    assert sync.status_code == 200 and sync.json() == {"sync": True}
    _assert_403(await client.get("/own-request", headers=_bearer("guest")))
    own = await client.get("/own-request", headers=_bearer("admin"))
    assert own.status_code == 200 and own.json() == {"path": "/own-request"}


async def test_any_all_and_admin(client: httpx.AsyncClient) -> None:
    """require_permissions (any / all) and require_admin read the token's role too."""
    assert (await client.get("/reports", headers=_bearer("manager"))).status_code == 200
    _assert_403(await client.get("/reports", headers=_bearer("user")))
    assert (await client.get("/both", headers=_bearer("manager"))).status_code == 200
    _assert_403(await client.get("/both", headers=_bearer("client")))  # order:read only
    deleted = await client.delete("/users/u7", headers=_bearer("admin"))
    assert deleted.status_code == 200 and deleted.json() == {"deleted": "u7"}
    _assert_403(await client.delete("/users/u7", headers=_bearer("manager")))


async def test_bad_tokens_are_401(client: httpx.AsyncClient) -> None:
    """Invalid, refresh-type and revoked tokens are refused with 401, not 403 or 500."""
    _assert_401(await client.post("/products", headers={"Authorization": "Bearer not.a.jwt"}))
    pair = security.create_token_pair(user_id="user-1", role="admin")
    refresh = {"Authorization": f"Bearer {pair.refresh_token}"}
    _assert_401(await client.post("/products", headers=refresh))
    access = {"Authorization": f"Bearer {pair.access_token}"}
    assert (await client.post("/products", headers=access)).status_code == 200
    await security.revoke_token(pair.access_token)
    _assert_401(await client.post("/products", headers=access))


async def test_api_key(client: httpx.AsyncClient, api_keys: dict[str, dict[str, Any]]) -> None:
    """An API key grants exactly what it names, bounded by its owner's role; a bad key is 401."""
    _assert_403(await client.post("/products", headers=_api_key(api_keys, "manager")))
    scoped = _api_key(api_keys, "manager", [Permission.PRODUCT_CREATE.value])
    assert (await client.post("/products", headers=scoped)).status_code == 200
    _assert_403(await client.post("/products", headers=_api_key(api_keys, "client")))
    beyond_owner = _api_key(api_keys, "client", [Permission.PRODUCT_CREATE.value])
    _assert_403(await client.post("/products", headers=beyond_owner))
    _assert_401(await client.post("/products", headers={"X-API-Key": "nope.nope"}))
    real = _api_key(api_keys, "admin")
    forged = {"X-API-Key": real["X-API-Key"][:-2] + "xx"}
    _assert_401(await client.post("/products", headers=forged))


async def test_current_user_argument_wins(client: httpx.AsyncClient) -> None:
    """With a ``current_user`` argument the decorator checks that user, not the bearer token."""
    as_manager = await client.get("/with-user", headers={"x-role": "manager", **_bearer("guest")})
    assert as_manager.status_code == 200 and as_manager.json() == {"by": "arg-user"}
    as_guest = await client.get("/with-user", headers={"x-role": "guest", **_bearer("admin")})
    _assert_403(as_guest)


def test_hidden_request_parameter_not_in_schema(app: FastAPI) -> None:
    """The request parameter the decorator adds never shows up in the OpenAPI schema."""
    schema = app.openapi()
    names = [
        p["name"]
        for path in schema["paths"].values()
        for op in path.values()
        for p in op.get("parameters", [])
    ]
    assert "name" in names and "user_id" in names
    assert not [n for n in names if "request" in n.lower()]


# --- guide §14 "Securing API Endpoints with Multiple Layers", run as written ---------------


class DocumentService:
    """The application's document service (the user's own domain object for the example)."""

    def __init__(self, db: Any = None) -> None:
        self.db = db

    async def create_document(self, body: dict[str, Any], user_id: str) -> dict[str, Any]:
        """Return the stored document."""
        return {"title": body.get("title"), "owner_id": user_id}


def _guide_multiple_layers_app() -> FastAPI:
    import json
    from typing import Any as _Any
    from typing import Dict  # noqa: UP035 - as the guide writes it

    from crown_nexus.core.dependency_manager import get_service
    from crown_nexus.core.exceptions import ErrorCode, SecurityException
    from crown_nexus.core.security import get_security_service
    from crown_nexus.core.security.dependencies import get_current_user_id
    from crown_nexus.core.security.validation import detect_suspicious_content

    AsyncSession = _Any  # noqa: N806 - the guide's type name; no database is needed here

    async def get_db() -> AsyncIterator[None]:
        yield None

    router = APIRouter()

    # --- the guide's block, unchanged below this line ---
    async def validate_content(request: Request):  # type: ignore[no-untyped-def]
        """Middleware to check for malicious content."""
        body = await request.json()
        content = json.dumps(body)

        if detect_suspicious_content(content):
            raise SecurityException(
                message="Potentially malicious content detected", code=ErrorCode.SECURITY_ERROR
            )
        return body

    @router.post("/documents")
    @require_permission(Permission.DOCUMENT_CREATE)  # Permission check
    async def create_document(  # type: ignore[no-untyped-def]
        request: Request,
        body: Dict[str, _Any] = Depends(validate_content),  # noqa: UP006
        current_user_id: str = Depends(get_current_user_id),  # Authentication
        db: AsyncSession = Depends(get_db),
    ):
        """Create a new document."""
        security_service = get_security_service()

        # Get CSRF token from header
        csrf_token = request.headers.get("X-CSRF-Token")
        if not csrf_token or not security_service.validate_csrf_token(csrf_token, current_user_id):
            raise SecurityException(message="Invalid CSRF token")

        # Create document
        document_service = get_service("document_service", db=db)
        document = await document_service.create_document(body, current_user_id)

        return document

    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(router)
    return app


@pytest.fixture
def document_service() -> Iterator[None]:
    """DocumentService registered as "document_service" for the test."""
    from crown_nexus.core.dependency_manager import register_service, unregister_service

    register_service(DocumentService, name="document_service")
    try:
        yield None
    finally:
        unregister_service("document_service")


async def test_guide_multiple_layers_example(app: FastAPI, document_service: None) -> None:
    """Guide §14: authentication, permission, content check and CSRF all apply, over HTTP."""
    guide_app = _guide_multiple_layers_app()
    transport = httpx.ASGITransport(app=guide_app)
    doc = {"title": "Q3 plan"}
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        _assert_401(await c.post("/documents", json=doc))
        user = _bearer("user")  # role user holds document:create
        csrf = {"X-CSRF-Token": security.generate_csrf_token("user-1")}
        created = await c.post("/documents", json=doc, headers={**user, **csrf})
        assert created.status_code == 200
        assert created.json() == {"title": "Q3 plan", "owner_id": "user-1"}
        _assert_403(await c.post("/documents", json=doc, headers={**_bearer("guest"), **csrf}))
        no_csrf = await c.post("/documents", json=doc, headers=user)
        assert no_csrf.status_code == 403 and no_csrf.json()["code"] == "SECURITY_ERROR"
        other = {"X-CSRF-Token": security.generate_csrf_token("someone-else")}
        assert (await c.post("/documents", json=doc, headers={**user, **other})).status_code == 403
        evil = {"title": "<script>alert(1)</script>"}
        bad = await c.post("/documents", json=evil, headers={**user, **csrf})
        assert bad.status_code == 403 and bad.json()["code"] == "SECURITY_ERROR"
