"""The guide §12 examples, run nearly as written (``app.`` -> ``crown_nexus.``)."""

from __future__ import annotations

import datetime
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from pydantic import BaseModel

from crown_nexus.core.exceptions import (
    AuthenticationException,
    ErrorCode,
    PermissionDeniedException,
    SecurityException,
    ValidationException,
    install_exception_handlers,
)
from crown_nexus.core.security import (
    decrypt_data,
    encrypt_data,
    generate_api_key,
    get_password_hash,
    get_security_service,
    validate_password_policy,
    verify_api_key,
    verify_password,
)
from crown_nexus.core.security.dependencies import get_current_user_id
from crown_nexus.core.security.validation import (
    detect_suspicious_content,
    moderate_content,
    sanitize_input,
    validate_json_input,
)


class LoginRequest(BaseModel):
    email: str
    password: str


class _Perm:
    def __init__(self, value: str) -> None:
        self.value = value


class _User:
    def __init__(self, hashed: str) -> None:
        self.id = 42
        self.email = "john@example.com"
        self.name = "John Doe"
        self.role = "admin"
        self.permissions = [_Perm("user:read"), _Perm("user:write")]
        self.hashed_password = hashed


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_login_example_with_the_security_service(configured) -> None:
    """'Using the Security Service': login with get_security_service(db), token pair and CSRF cookie."""
    users = {"john@example.com": _User(get_password_hash("Correct-Horse-1!"))}
    router = APIRouter()

    async def get_db() -> Any:
        return None

    @router.post("/auth/login")
    async def login(
        login_data: LoginRequest, request: Request, response: Response, db: Any = Depends(get_db)
    ):
        security_service = get_security_service(db)
        user = users.get(login_data.email)
        if not user:
            raise AuthenticationException(message="Invalid credentials")
        is_valid = await security_service.verify_password(
            login_data.password, user.hashed_password, user_id=str(user.id)
        )
        if not is_valid:
            raise AuthenticationException(message="Invalid credentials")
        token_pair = await security_service.create_token_pair(
            user_id=str(user.id),
            role=user.role,
            permissions=[p.value for p in user.permissions],
            user_data={"name": user.name, "email": user.email},
        )
        csrf_token = security_service.generate_csrf_token(str(user.id))
        response.set_cookie(
            key="csrf_token", value=csrf_token, httponly=False, secure=True, samesite="strict"
        )
        return token_pair

    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(router)
    async with _client(app) as client:
        ok = await client.post(
            "/auth/login", json={"email": "john@example.com", "password": "Correct-Horse-1!"}
        )
        bad = await client.post("/auth/login", json={"email": "john@example.com", "password": "x"})
    assert ok.status_code == 200
    body = ok.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert "csrf_token" in ok.cookies or "csrf_token=" in ok.headers["set-cookie"]
    data = await get_security_service().decode_token(body["access_token"])
    assert data.permissions == ["user:read", "user:write"] and data.sub == "42"
    assert bad.status_code == 401


async def test_csrf_endpoint_example(configured) -> None:
    """'CSRF Protection': the settings endpoint with a csrf-token header and get_current_user_id."""
    router = APIRouter()

    @router.post("/users/{user_id}/settings")
    async def update_user_settings(
        user_id: str,
        settings_data: dict[str, Any],
        csrf_token: str = Header(...),
        current_user_id: str = Depends(get_current_user_id),
    ):
        if user_id != current_user_id:
            raise PermissionDeniedException(message="Cannot modify another user's settings")
        security_service = get_security_service()
        if not security_service.validate_csrf_token(csrf_token, current_user_id):
            raise SecurityException(message="Invalid CSRF token")
        return {"success": True}

    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(router)
    service = get_security_service()
    pair = await service.create_token_pair(user_id="u1")
    auth = {"Authorization": f"Bearer {pair.access_token}"}
    good_csrf = service.generate_csrf_token("u1")
    async with _client(app) as client:
        ok = await client.post(
            "/users/u1/settings", json={}, headers={**auth, "csrf-token": good_csrf}
        )
        forged = await client.post(
            "/users/u1/settings",
            json={},
            headers={**auth, "csrf-token": service.generate_csrf_token("u2")},
        )
        other = await client.post(
            "/users/u2/settings", json={}, headers={**auth, "csrf-token": good_csrf}
        )
    assert ok.status_code == 200 and ok.json() == {"success": True}
    assert forged.status_code == 403 and forged.json()["code"] == "SECURITY_ERROR"
    assert other.status_code == 403


async def test_security_headers_middleware_example(configured) -> None:
    """'Security Headers': an http middleware copying security_service.get_security_headers()."""
    app = FastAPI()

    @app.middleware("http")
    async def add_security_headers(request: Request, call_next):
        response = await call_next(request)
        security_service = get_security_service()
        security_headers = security_service.get_security_headers()
        for name, value in security_headers.items():
            response.headers[name] = value
        return response

    @app.get("/")
    async def root() -> dict:
        return {}

    async with _client(app) as client:
        resp = await client.get("/")
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["content-security-policy"]


async def test_password_api_key_encryption_and_validation_examples(configured) -> None:
    """Password, API key, encryption and validation snippets behave as the guide says."""
    hashed = get_password_hash("Plain-Pass-1!")
    assert verify_password("Plain-Pass-1!", hashed)
    is_valid, message = await validate_password_policy("weak", "user-1")
    assert not is_valid
    exc = ValidationException(
        message="Password policy validation failed",
        errors=[{"loc": ["password"], "msg": message, "type": "password_policy_error"}],
    )
    assert exc.status_code == 422

    api_key_data = generate_api_key("user-1", "reporting", ["report:read"])
    stored = {"id": api_key_data.key_id, "hashed_secret": api_key_data.hashed_secret}
    parts = api_key_data.api_key.split(".")
    assert len(parts) == 2 and parts[0] == stored["id"]
    assert verify_api_key(api_key_data.api_key, stored["hashed_secret"])
    assert isinstance(api_key_data.created_at, datetime.datetime)

    encrypted = encrypt_data({"ssn": "123-45-6789"})
    assert "123-45-6789" not in encrypted
    assert decrypt_data(encrypted) == {"ssn": "123-45-6789"}

    assert sanitize_input("<b>hello</b>") == "hello"
    assert detect_suspicious_content("<script>alert(1)</script>")
    assert validate_json_input({"a": [1, 2, {"b": "c"}]})
    is_allowed, reason = moderate_content("hello there", "text")
    assert is_allowed and reason is None
    assert SecurityException(message="x", code=ErrorCode.SECURITY_ERROR).status_code == 403
