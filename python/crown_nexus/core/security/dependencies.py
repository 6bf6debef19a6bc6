"""FastAPI authentication dependencies (guide §12, "FastAPI Authentication Dependencies").

Credentials are a Bearer access token (``Authorization: Bearer <jwt>``) or an API key in the
``X-API-Key`` header; without either, the access token of a browser session in the HttpOnly
cookie :data:`SESSION_COOKIE` (``auth_method: "cookie"``), accepted only on requests that went
through ``CsrfMiddleware`` (which checks their CSRF token). Tokens are verified by the
security service (``request.app.state.security_service`` when the app set one, else the
shared service). API keys are verified by the
resolver the application registers with :func:`register_api_key_resolver` — an async callable
``(api_key, request) -> user dict | None`` that looks the key up (by its ``key_id``) and checks
it with :func:`~crown_nexus.core.security.verify_api_key`.

Missing or invalid credentials raise
:class:`~crown_nexus.core.exceptions.AuthenticationException` (401 with
``WWW-Authenticate: Bearer``). The authenticated user is a dict ``{"id", "role",
"permissions", "user_data", "auth_method", ...}``, also kept as ``request.state.user``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from crown_nexus.container import current_container, default_container
from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.security._request_user import bind_request_user
from crown_nexus.core.security.service import SecurityService, get_security_service

__all__ = [
    "API_KEY_HEADER",
    "CSRF_GUARD_STATE",
    "SESSION_COOKIE",
    "ApiKeyResolver",
    "api_key_header",
    "authenticate_request",
    "bearer_scheme",
    "get_current_user_id",
    "get_current_user_with_permissions",
    "get_optional_user",
    "get_optional_user_id",
    "register_api_key_resolver",
]

API_KEY_HEADER = "X-API-Key"
#: HttpOnly cookie carrying the access token of a browser session (``auth_method: "cookie"``)
SESSION_COOKIE = "access_token"
#: ``request.state`` flag set by ``CsrfMiddleware``: the session cookie is accepted only on
#: requests that passed it (cookie authentication never works without CSRF protection)
CSRF_GUARD_STATE = "crown_nexus_csrf_guard"

#: ``async (api_key, request) -> {"id", "permissions", "owner", ...} | None``: ``permissions``
#: are the key's own, ``owner`` the user it belongs to as loaded now (SPEC §4 shape)
ApiKeyResolver = Callable[[str, Request], Awaitable[Mapping[str, Any] | None]]

bearer_scheme = HTTPBearer(auto_error=False, description="Access token from /auth/login")
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="API key")

_STATE_KEY = "crown_nexus_user"
_RESOLVER_KEY = "security.api_key_resolver"


def register_api_key_resolver(resolver: ApiKeyResolver | None, app: Any = None) -> None:
    """Use ``resolver`` to authenticate ``X-API-Key`` requests: for ``app`` only if given, else
    for the current app (the default container's outside an app: every app without its own)."""
    if app is not None:
        app.state.api_key_resolver = resolver
    elif resolver is None:
        current_container().state.pop(_RESOLVER_KEY, None)
    else:
        current_container().state[_RESOLVER_KEY] = resolver


def _service_for(request: Request) -> SecurityService:
    service = getattr(request.app.state, "security_service", None)
    return service if isinstance(service, SecurityService) else get_security_service()


def _resolver_for(request: Request) -> ApiKeyResolver | None:
    resolver: ApiKeyResolver | None = getattr(request.app.state, "api_key_resolver", None)
    if resolver is None:  # the current app's, else one registered outside any app
        resolver = current_container().state.get(_RESOLVER_KEY) or default_container().state.get(
            _RESOLVER_KEY
        )
    return resolver


def _set_log_user(user_id: str) -> None:
    try:
        from crown_nexus.logging import set_user_id
    except ImportError:  # logging system not installed in this build
        return
    set_user_id(user_id)


def _api_key_user(found: Mapping[str, Any]) -> dict[str, Any]:
    """The caller an API key stands for: exactly the key's permissions, no role (SPEC §5).

    The resolver's ``owner`` (the user the key belongs to, as loaded now) bounds the key: it is
    kept under ``credential_owner`` and the permission checks grant a key permission only while
    the owner still holds it. A resolver that gives only the owner's ``role`` bounds the key by
    that role. A ``role`` never reaches the caller itself.
    """
    owner = found.get("owner")
    if owner is None and found.get("role") is not None:
        owner = {"id": str(found["id"]), "role": found["role"], "permissions": []}
    extra = {k: v for k, v in found.items() if k not in ("owner", "role", "permissions", "id")}
    user = {
        "user_data": None,
        **extra,
        "id": str(found["id"]),
        "role": None,
        "permissions": [str(getattr(p, "value", p)) for p in found.get("permissions") or []],
        "auth_method": "api_key",
    }
    if owner is not None:
        user["credential_owner"] = owner
    return user


def _session_cookie(request: Request) -> str | None:
    """The session cookie's access token, only on requests ``CsrfMiddleware`` guarded."""
    if not getattr(request.state, CSRF_GUARD_STATE, False):
        return None
    return request.cookies.get(SESSION_COOKIE) or None


async def _authenticate(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    api_key: str | None,
) -> dict[str, Any] | None:
    cached = getattr(request.state, _STATE_KEY, None)
    if cached is not None:
        bind_request_user(cached, request.app)
        return dict(cached)
    if credentials is not None and credentials.credentials:
        data = await _service_for(request).decode_token(credentials.credentials)
        user: dict[str, Any] = {
            "id": data.sub,
            "role": data.role,
            "permissions": list(data.permissions),
            "user_data": data.user_data,
            "auth_method": "bearer",
            "token": data,
        }
    elif api_key:
        resolver = _resolver_for(request)
        if resolver is None:
            raise AuthenticationException(message="API key authentication is not available")
        found = await resolver(api_key, request)
        if not found or found.get("id") is None:
            raise AuthenticationException(message="Invalid API key")
        user = _api_key_user(found)
    else:
        session = _session_cookie(request)
        if session is None:
            return None
        data = await _service_for(request).decode_token(session)
        user = {
            "id": data.sub,
            "role": data.role,
            "permissions": list(data.permissions),
            "user_data": data.user_data,
            "auth_method": "cookie",
            "token": data,
        }
    setattr(request.state, _STATE_KEY, user)
    request.state.user = user
    bind_request_user(user, request.app)  # the permission service resolves this caller's id
    _set_log_user(user["id"])
    return dict(user)


async def authenticate_request(request: Request) -> dict[str, Any] | None:
    """Authenticate ``request`` from its headers outside FastAPI's dependency system.

    Reads ``Authorization: Bearer <token>`` or ``X-API-Key`` like the dependencies do (and
    shares their per-request cache). ``None`` without credentials; invalid credentials raise
    ``AuthenticationException``. Decorators such as ``require_permission`` can use it when an
    endpoint has no ``current_user`` argument.
    """
    credentials: HTTPAuthorizationCredentials | None = None
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=value.strip())
    return await _authenticate(request, credentials, request.headers.get(API_KEY_HEADER))


async def get_optional_user(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    api_key: str | None = Depends(api_key_header),
) -> dict[str, Any] | None:
    """The authenticated user dict, or ``None`` without credentials (invalid ones: 401)."""
    return await _authenticate(request, credentials, api_key)


async def get_current_user_with_permissions(
    user: dict[str, Any] | None = Depends(get_optional_user),
) -> dict[str, Any]:
    """The authenticated user: ``{"id", "role", "permissions", "user_data", "auth_method"}``.

    No credentials or invalid ones: 401 (``AuthenticationException``).
    """
    if user is None:
        raise AuthenticationException(message="Not authenticated")
    return user


async def get_current_user_id(
    user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> str:
    """The authenticated user's id; 401 without valid credentials."""
    return str(user["id"])


async def get_optional_user_id(
    user: dict[str, Any] | None = Depends(get_optional_user),
) -> str | None:
    """The user's id when credentials were sent, else ``None``; invalid credentials still 401."""
    return None if user is None else str(user["id"])
