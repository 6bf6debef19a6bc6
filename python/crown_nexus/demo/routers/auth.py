"""Authentication endpoints of the reference service, built only on the public security API.

``POST /auth/login`` (JSON email + password -> token pair and a CSRF cookie; ``?session=cookie``:
a browser session in an HttpOnly cookie, its CSRF token checked by ``CsrfMiddleware``), ``POST
/auth/refresh`` (rotation; reusing a refresh token revokes its whole login), ``POST
/auth/logout`` (revokes the access token's login), ``POST /auth/api-keys`` (only a hash is
stored), ``GET /.well-known/jwks.json``. :func:`install` wires it all into an app: the security
service for the app's settings, the API key resolver, the routers and the seeding of a demo
admin and a demo user at start-up.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crown_nexus.container import use_container
from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.core.exceptions import AuthenticationException, PermissionDeniedException
from crown_nexus.core.permissions import PermissionChecker
from crown_nexus.core.security import (
    SecurityService,
    get_password_hash,
)
from crown_nexus.core.security.api_keys import parse_api_key
from crown_nexus.core.security.csrf import csrf_session_id
from crown_nexus.core.security.dependencies import (
    SESSION_COOKIE,
    bearer_scheme,
    get_current_user_with_permissions,
    register_api_key_resolver,
)
from crown_nexus.core.security.login_throttle import LoginThrottle
from crown_nexus.demo.db import get_db
from crown_nexus.demo.models_users import ApiKey, User

__all__ = [
    "DEMO_USERS",
    "install",
    "jwks_router",
    "resolve_api_key",
    "router",
    "seed_demo_users",
    "user_loader_for",
]

router = APIRouter(prefix="/auth", tags=["auth"])
jwks_router = APIRouter(tags=["auth"])

#: the demo accounts created at start-up (email, password, name, role, permissions)
DEMO_USERS: tuple[dict[str, Any], ...] = (
    {
        "email": "admin@example.com",
        "password": "Crown-Admin-2024!",
        "name": "Demo Admin",
        "role": "admin",
        "permissions": ["system:admin", "user:read", "user:create", "user:update", "user:delete"],
    },
    {
        "email": "user@example.com",
        "password": "Crown-User-2024!",
        "name": "Demo User",
        "role": "user",
        "permissions": ["user:read", "document:create", "document:read"],
    },
)

_hash_cache: dict[str, str] = {}


class LoginRequest(BaseModel):
    """Credentials for ``POST /auth/login``."""

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    """Body of ``POST /auth/refresh``."""

    refresh_token: str = Field(min_length=1, max_length=8192)


class LogoutRequest(BaseModel):
    """Optional body of ``POST /auth/logout``."""

    refresh_token: str | None = Field(default=None, max_length=8192)


class LoggedOut(BaseModel):
    """``POST /auth/logout``'s answer: already the SPEC §3 success shape (sent as it is)."""

    success: bool
    message: str


class ApiKeyCreate(BaseModel):
    """Body of ``POST /auth/api-keys``: a name and the permissions the key carries."""

    name: str = Field(min_length=1, max_length=200)
    permissions: list[str] = Field(default_factory=list, max_length=100)


def _user_dict(user: User) -> dict[str, Any]:
    """A stored account as SPEC §4 reads a user (its current role, grants and state)."""
    return {
        "id": str(user.id),
        "role": user.role,
        "permissions": list(user.permissions or []),
        "is_active": bool(user.is_active),
    }


def _service(request: Request) -> SecurityService:
    service: SecurityService = request.app.state.security_service
    return service


async def _dummy_hash(service: SecurityService) -> str:
    if "" not in _hash_cache:
        _hash_cache[""] = await service.hash_password("timing-equaliser-not-a-password")
    return _hash_cache[""]


@router.post("/login", responses={401: {"description": "Wrong email or password"}})
async def login(
    login_data: LoginRequest,
    request: Request,
    response: Response,
    session: Literal["token", "cookie"] = Query(
        default="token",
        description="``cookie``: a browser session in an HttpOnly cookie instead of tokens",
    ),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """Check email and password; return an access + refresh token pair and set a CSRF cookie.

    With ``?session=cookie`` (a browser session) the access token goes into the HttpOnly,
    Secure, SameSite=Lax cookie ``access_token`` instead, and the answer carries only the CSRF
    token (also in the readable ``csrf_token`` cookie) that every unsafe request of the session
    must send in ``X-CSRF-Token``; the session ends with the access token (no refresh token is
    handed to the browser). The CSRF token is bound to this login (user and token family).

    Failed logins back off per account (``app.state.login_throttle``): while the account is
    throttled for the client's network the answer is 429 with ``Retry-After`` and the password
    is not checked. Unknown accounts count exactly like wrong passwords.
    """
    service = _service(request)
    throttle: LoginThrottle = request.app.state.login_throttle
    email = login_data.email.strip().lower()
    network = throttle.network_of(request.scope)
    await throttle.check(email, network)
    user = (await db.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if user is None:
        # spend the same time as a real check, so response timing does not reveal accounts
        await service.verify_password(login_data.password, await _dummy_hash(service))
        await throttle.failed(email, network)
        raise AuthenticationException(message="Invalid credentials")
    ok, new_hash = await service.verify_and_rehash(
        login_data.password, user.hashed_password, user_id=str(user.id)
    )
    if not ok or not user.is_active:
        await throttle.failed(email, network)
        raise AuthenticationException(message="Invalid credentials")
    await throttle.succeeded(email, network)
    if new_hash is not None:
        user.hashed_password = new_hash
        await db.commit()
    pair = await service.create_token_pair(
        user_id=str(user.id),
        role=user.role,
        permissions=list(user.permissions or []),
        user_data={"name": user.name, "email": user.email},
    )
    token = await service.decode_token(pair.access_token, check_revocation=False)
    csrf = service.generate_csrf_token(csrf_session_id(token.sub, token.fam))
    response.set_cookie(
        key="csrf_token", value=csrf, httponly=False, secure=True, samesite="strict"
    )
    if session == "cookie":
        response.set_cookie(
            key=SESSION_COOKIE,
            value=pair.access_token,
            max_age=pair.expires_in,
            httponly=True,
            secure=True,
            samesite="lax",
        )
        return {"session": "cookie", "expires_in": pair.expires_in, "csrf_token": csrf}
    return pair.model_dump()


@router.post(
    "/refresh", responses={401: {"description": "Invalid, expired or reused refresh token"}}
)
async def refresh(body: RefreshRequest, request: Request) -> dict[str, Any]:
    """Exchange a refresh token for a new pair; the old one stops working (rotation)."""
    pair = await _service(request).refresh_tokens(body.refresh_token)
    return pair.model_dump()


@router.post("/logout", response_model=LoggedOut)
async def logout(
    request: Request,
    response: Response,
    body: LogoutRequest | None = None,
    user: dict[str, Any] = Depends(get_current_user_with_permissions),
    credentials: Any = Depends(bearer_scheme),
) -> dict[str, Any]:
    """Revoke the presented access token and every token of its login (refresh tokens too).

    A browser session (cookie) is revoked the same way and its cookies are cleared.
    """
    service = _service(request)
    if user.get("auth_method") == "cookie":
        await service.revoke_token(
            request.cookies[SESSION_COOKIE], reason="logout", revoke_family=True
        )
        response.delete_cookie(SESSION_COOKIE, secure=True, httponly=True, samesite="lax")
        response.delete_cookie("csrf_token", secure=True, samesite="strict")
        return {"success": True, "message": "Logged out successfully"}
    if user.get("auth_method") != "bearer" or credentials is None:
        raise AuthenticationException(message="Log out with the access token of a session")
    await service.revoke_token(credentials.credentials, reason="logout", revoke_family=True)
    if body is not None and body.refresh_token:
        try:
            await service.revoke_token(body.refresh_token, reason="logout")
        except AuthenticationException:
            pass  # already invalid: nothing left to revoke
    return {"success": True, "message": "Logged out successfully"}


@router.post("/api-keys", status_code=201)
async def create_api_key(
    body: ApiKeyCreate,
    request: Request,
    user: dict[str, Any] = Depends(get_current_user_with_permissions),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """Create an API key carrying (a subset of) the caller's permissions; shown only once.

    The caller's permissions are checked as they are now: the account is reloaded (a demoted or
    deactivated user cannot mint what their old token still claims), and a key used to create a
    key can pass on only what it carries itself.
    """
    creator = await db.get(User, str(user["id"]))
    if creator is None or not creator.is_active:
        raise AuthenticationException(message="Account not found or inactive")
    wanted = list(dict.fromkeys(body.permissions))
    missing = sorted(
        p
        for p in wanted
        if not (
            PermissionChecker.has_permission(_user_dict(creator), p)
            and PermissionChecker.has_permission(user, p)
        )
    )
    if missing:
        raise PermissionDeniedException(
            message="An API key cannot carry permissions you do not have",
            details={"missing": missing},
        )
    data = _service(request).generate_api_key(user["id"], body.name, wanted)
    row = ApiKey(
        id=data.key_id,
        user_id=data.user_id,
        name=body.name,
        hashed_secret=data.hashed_secret,
        permissions=wanted,
        created_at=data.created_at,
    )
    db.add(row)
    await db.commit()
    return {
        "api_key": data.api_key,
        "key_id": data.key_id,
        "name": body.name,
        "permissions": wanted,
        "created_at": data.created_at.isoformat(),
    }


@jwks_router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> dict[str, Any]:
    """The public keys that verify this service's tokens (empty for HMAC-signed tokens)."""
    return _service(request).jwks()


async def resolve_api_key(api_key: str, request: Request) -> dict[str, Any] | None:
    """Look an ``X-API-Key`` up by its key id and verify it; the user dict, or ``None``."""
    parsed = parse_api_key(api_key)
    if parsed is None:
        return None
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with factory() as db:
        row = await db.get(ApiKey, parsed[0])
        if row is None or row.revoked:
            return None
        if not _service(request).verify_api_key(api_key, row.hashed_secret):
            return None
        owner = await db.get(User, row.user_id)
        if owner is None or not owner.is_active:
            return None
        return {
            "id": owner.id,
            "permissions": list(row.permissions or []),
            "owner": _user_dict(owner),
            "user_data": {"name": owner.name, "email": owner.email},
            "key_id": row.id,
        }


def user_loader_for(
    factory: async_sessionmaker[AsyncSession],
) -> Callable[[str], Awaitable[dict[str, Any] | None]]:
    """The security service's user loader: the account as stored now, or ``None``."""

    async def load(user_id: str) -> dict[str, Any] | None:
        async with factory() as db:
            user = await db.get(User, str(user_id))
            return None if user is None else _user_dict(user)

    return load


async def seed_demo_users(factory: async_sessionmaker[AsyncSession]) -> None:
    """Create the :data:`DEMO_USERS` that do not exist yet (idempotent)."""
    async with factory() as db:
        for spec in DEMO_USERS:
            found = (
                await db.execute(select(User).where(User.email == spec["email"]))
            ).scalar_one_or_none()
            if found is not None:
                continue
            hashed = _hash_cache.get(spec["email"])
            if hashed is None:
                hashed = await asyncio.to_thread(get_password_hash, spec["password"])
                _hash_cache[spec["email"]] = hashed
            db.add(
                User(
                    email=spec["email"],
                    name=spec["name"],
                    hashed_password=hashed,
                    role=spec["role"],
                    permissions=list(spec["permissions"]),
                    created_at=datetime.datetime.now(datetime.UTC),
                )
            )
        await db.commit()


def _with_seeding(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state:
            await seed_demo_users(app.state.sessionmaker)
            try:
                yield state
            finally:
                await app.state.security_service.close()

    return lifespan


def install(app: Any) -> Any:
    """Wire authentication into the demo ``app`` (after its settings and sessionmaker are set)."""
    from crown_nexus.demo.routers import users

    # the app's own service: its user loader reads THIS app's database (nothing process-wide)
    service = SecurityService(
        app.state.settings, user_loader=user_loader_for(app.state.sessionmaker)
    )
    app.state.security_service = service
    with use_container(app.state.container):  # the token functions of this app use it too
        get_registry().provide("security_service", service)
    register_api_key_resolver(resolve_api_key, app=app)
    app.include_router(router)
    app.include_router(jwks_router)
    app.include_router(users.router)
    app.router.lifespan_context = _with_seeding(app.router.lifespan_context)
    return app
