"""Guide §12 (Security System) and SPEC §5/§10, run as written with the user's objects supplied.

Three guide blocks use ``await`` inside a plain ``def`` (``create_user_api_key``,
``store_secure_data``, ``retrieve_secure_data``): Python cannot compile them as written, so they
run here with ``async def`` - the only change - and the report names them.
"""
# ruff: noqa: I001, E402, F401, F811, F841, E501, UP006, UP035, UP045, B008, T201 - the guide's blocks are copied verbatim

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any, Dict, List, Optional

import bcrypt
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from pydantic import BaseModel
from sqlalchemy import JSON, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.core.error import handle_exception
from crown_nexus.core.exceptions import (
    AuthenticationException,
    ErrorCode,
    PermissionDeniedException,
    ResourceNotFoundException,
    SecurityException,
    ValidationException,
)
from crown_nexus.logging import get_logger
from crown_nexus.testing import app_client
from tests.guide._support import assert_error_body, data_of, guide_app, sqlite_database

from tests.guide._blocks import guide_block, section

logger = get_logger("app.guide.s12")

# the §12 blocks run on two setups, by a line of each
LOGIN = '@router.post("/auth/login")'
CSRF = '@router.post("/users/{user_id}/settings")'
SECURITY_HEADERS = "async def add_security_headers(request: Request, call_next):"


s12 = section(12)


def login_routes(router: APIRouter, **user_objects: Any) -> APIRouter:
    """'Using the Security Service': the login endpoint on ``router`` (``user_objects``: the user's
    ``LoginRequest``, ``AsyncSession``, ``get_db`` and ``user_repository``)."""
    names = {"Request": Request, "Response": Response, "Depends": Depends, "AuthenticationException": AuthenticationException}
    s12(LOGIN).run(router=router, **names, **user_objects)
    return router


def csrf_block(router: APIRouter) -> dict[str, Any]:
    """'CSRF Protection' with the user's imports: ``get_csrf_token``, ``check_csrf_token``, the endpoint on ``router``."""
    from crown_nexus.core.security import get_security_service
    from crown_nexus.core.security.dependencies import get_current_user_id

    return s12(CSRF).run(
        router=router,
        Dict=Dict,
        Any=Any,
        Header=Header,
        Depends=Depends,
        get_current_user_id=get_current_user_id,
        get_security_service=get_security_service,
        PermissionDeniedException=PermissionDeniedException,
        SecurityException=SecurityException,
        ErrorCode=ErrorCode,
    )


def add_security_headers(app: FastAPI) -> None:
    """'Security Headers': the user's ``@app.middleware("http")`` on ``app``."""
    from crown_nexus.core.security import get_security_service

    s12(SECURITY_HEADERS).run(app=app, Request=Request, get_security_service=get_security_service)
SECRET = "guide-s12-" + "x" * 54


def app_with(*routers: APIRouter) -> FastAPI:
    """A setup_app app (production settings, a strong secret) with the routers mounted."""
    return guide_app(*routers, ENVIRONMENT="production", secret_key=SECRET)


# --- §12 'Token Management', verbatim --------------------------------------------------------------

from crown_nexus.core.security import create_token, create_token_pair, TokenType, TokenPair


def token_management() -> tuple[str, TokenPair]:
    """The guide's block; returns the token and the pair."""
    # Create a simple token
    access_token = create_token(
        subject="user-123",  # User ID
        token_type=TokenType.ACCESS,
        role="admin",
        permissions=["user:read", "user:write"]
    )

    # Create a token pair (access + refresh tokens)
    token_pair: TokenPair = create_token_pair(
        user_id="user-123",
        role="admin",
        permissions=["user:read", "user:write"],
        user_data={"name": "John Doe", "email": "john@example.com"}
    )

    print(f"Access token: {token_pair.access_token}")
    print(f"Refresh token: {token_pair.refresh_token}")
    print(f"Expires in: {token_pair.expires_in} seconds")
    return access_token, token_pair


async def test_token_management(capsys: pytest.CaptureFixture[str]) -> None:
    """Tokens carry subject, role and permissions; the pair's expires_in is the access lifetime."""
    from crown_nexus.core.security import decode_token

    access_token, token_pair = token_management()
    out = capsys.readouterr().out
    assert f"Access token: {token_pair.access_token}" in out
    data = await decode_token(access_token)
    assert (data.sub, data.type, data.role) == ("user-123", TokenType.ACCESS, "admin")
    assert list(data.permissions) == ["user:read", "user:write"]
    pair_data = await decode_token(token_pair.access_token)
    assert pair_data.user_data == {"name": "John Doe", "email": "john@example.com"}
    lifetime = (pair_data.exp - pair_data.iat).total_seconds() if isinstance(pair_data.iat, datetime.datetime) else None
    assert token_pair.expires_in > 0
    if lifetime is not None:
        assert abs(lifetime - token_pair.expires_in) <= 1
    assert pair_data.exp.tzinfo is not None  # SPEC §5: an aware datetime


async def test_guide_tokens_carry_iss_and_aud() -> None:
    """SPEC §5 lists iss and aud: the guide's tokens carry them (default: the app's name) with no
    JWT issuer/audience configured, and a token without them is refused (issue 13)."""
    from crown_nexus.core.security import configure_security, decode_token, get_security_service
    from crown_nexus.settings import Settings

    settings = Settings(secret_key="guide-iss-aud-secret-0123456789abcdef", app_name="guide-shop")
    assert settings.jwt_issuer is None and settings.jwt_audience is None
    configure_security(settings)
    try:
        access_token, token_pair = token_management()
        for token in (access_token, token_pair.access_token):
            data = await decode_token(token)
            assert (data.iss, data.aud) == ("guide-shop", "guide-shop")
        manager = get_security_service().tokens
        now = int(datetime.datetime.now(datetime.UTC).timestamp())
        bare = manager.jwt.encode(
            {"sub": "user-123", "exp": now + 60, "iat": now, "nbf": now, "jti": "j", "type": "access"},
            settings.secret_key.get_secret_value(),
            "HS256",
        )
        with pytest.raises(AuthenticationException):
            await decode_token(bare)
    finally:
        configure_security(None)


# --- §12 'Token Validation and Refresh', verbatim ----------------------------------------------------

from crown_nexus.core.security import decode_token, refresh_tokens, revoke_token

# Validate a token
async def validate_user_token(token: str):
    try:
        # Decode and validate the token
        token_data = await decode_token(token)

        # Token is valid, return user information
        return {
            "user_id": token_data.sub,
            "role": token_data.role,
            "permissions": token_data.permissions,
            "expires_at": token_data.exp.isoformat()
        }
    except AuthenticationException as e:
        logger.warning(f"Token validation failed: {str(e)}")
        raise

# Refresh tokens
async def refresh_user_tokens(refresh_token: str):
    try:
        # Refresh tokens (will validate and blacklist the old refresh token)
        new_tokens = await refresh_tokens(refresh_token)
        return new_tokens
    except AuthenticationException as e:
        logger.warning(f"Token refresh failed: {str(e)}")
        raise

# Logout (revoke token)
async def logout_user(token: str, user_id: str):
    try:
        # Revoke the token (add to blacklist)
        await revoke_token(token)
        return {"success": True, "message": "Logged out successfully"}
    except Exception as e:
        logger.error(f"Logout failed: {str(e)}")
        handle_exception(e, user_id=user_id)
        raise


async def test_validation_refresh_logout() -> None:
    """Validate, rotate (old refresh token rejected, reuse revokes the family), and logout revokes."""
    _, pair = token_management()
    info = await validate_user_token(pair.access_token)
    assert info["user_id"] == "user-123" and info["role"] == "admin"
    assert datetime.datetime.fromisoformat(info["expires_at"]) > datetime.datetime.now(datetime.UTC)
    with pytest.raises(AuthenticationException):
        await validate_user_token("not.a.token")
    with pytest.raises(AuthenticationException):
        await validate_user_token(pair.refresh_token)  # a refresh token is not an access token
    new = await refresh_user_tokens(pair.refresh_token)
    assert new.access_token != pair.access_token and new.refresh_token != pair.refresh_token
    assert (await validate_user_token(new.access_token))["user_id"] == "user-123"
    with pytest.raises(AuthenticationException):
        await refresh_user_tokens(pair.refresh_token)  # rotated: the old one is revoked
    with pytest.raises(AuthenticationException):
        await refresh_user_tokens(new.refresh_token)  # reuse detected: the family is revoked
    other = create_token_pair(user_id="user-9")
    assert await logout_user(other.access_token, "user-9") == {"success": True, "message": "Logged out successfully"}
    with pytest.raises(AuthenticationException):
        await validate_user_token(other.access_token)


async def test_alg_none_and_tampering_rejected() -> None:
    """SPEC §5: alg none and a tampered signature are AuthenticationException, never another type."""
    import base64
    import json

    token = create_token("user-1")
    header, payload, sig = token.split(".")
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    for bad in (f"{none_header}.{payload}.", f"{header}.{payload}.{sig[:-2]}AA", f"{header}.{payload}", "", "a.b.c"):
        with pytest.raises(AuthenticationException):
            await decode_token(bad)


# --- §12 'Using the Security Service' (login endpoint) ----------------------------------------------

from crown_nexus.core.security import get_password_hash


class LoginRequest(BaseModel):
    """The user's login body."""

    email: str
    password: str


class PermissionValue:
    """A permission with ``.value`` as the user's enum members have."""

    def __init__(self, value: str) -> None:
        self.value = value


class StoredUser:
    """The user's User row."""

    def __init__(self) -> None:
        self.id = 7
        self.email = "ann@example.com"
        self.name = "Ann"
        self.role = "manager"
        self.permissions = [PermissionValue("product:read"), PermissionValue("product:create")]
        self.hashed_password = get_password_hash("C0rrect-Horse!")


class UserRepository:
    """The user's repository."""

    def __init__(self) -> None:
        self.users = {"ann@example.com": StoredUser()}

    async def get_by_email(self, email: str) -> StoredUser | None:
        return self.users.get(email)

    async def get_by_id(self, user_id: str) -> Any:
        return next((u for u in self.users.values() if str(u.id) == str(user_id)), None)


user_repository = UserRepository()


class FakeSession:
    """The user's session marker (endpoints that do not touch the database)."""


async def get_db() -> AsyncIterator[Any]:
    """The user's ``get_db`` dependency."""
    yield FakeSession()


def login_router() -> APIRouter:
    """The guide's login endpoint on the user's models, session dependency and repository."""
    user_objects = {"LoginRequest": LoginRequest, "AsyncSession": AsyncSession, "get_db": get_db}
    return login_routes(APIRouter(), user_repository=user_repository, **user_objects)


async def test_login_endpoint() -> None:
    """Right password: a token pair and a CSRF cookie; wrong/unknown: 401 with the error body and a challenge."""
    from crown_nexus.container import use_container
    from crown_nexus.core.security import get_security_service

    app = app_with(login_router())
    events: list[dict[str, Any]] = []
    async with app_client(app, base_url="https://testserver") as client:
        from crown_nexus.core.dependency_manager import get_service

        event_service = get_service("event_service")

        @event_service.event_handler("security.password_verification_failed")
        async def on_failed(event: dict[str, Any]) -> None:
            events.append(event)

        ok = await client.post("/auth/login", json={"email": "ann@example.com", "password": "C0rrect-Horse!"})
        wrong = await client.post("/auth/login", json={"email": "ann@example.com", "password": "nope"})
        unknown = await client.post("/auth/login", json={"email": "bob@example.com", "password": "x"})
        malformed = await client.post("/auth/login", json={"email": "ann@example.com"})
        await event_service.wait_for_pending(5)
        event_service.unsubscribe("security.password_verification_failed", on_failed)
    assert ok.status_code == 200, ok.text
    pair = data_of(ok.json())
    assert set(pair) >= {"access_token", "refresh_token", "token_type", "expires_in"}
    with use_container(app.state.container):  # the app's tokens are checked with its secret
        token = await decode_token(pair["access_token"])
        csrf = ok.cookies["csrf_token"]
        assert get_security_service().validate_csrf_token(csrf, "7")
    assert token.sub == "7" and token.role == "manager"
    assert list(token.permissions) == ["product:read", "product:create"]
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith("csrf_token=") and "Secure" in cookie and "SameSite=strict" in cookie
    for bad in (wrong, unknown):
        assert bad.status_code == 401
        assert_error_body(bad.json(), "AUTHENTICATION_ERROR", "Invalid credentials")
        assert bad.headers["WWW-Authenticate"].startswith("Bearer")
    assert malformed.status_code == 422
    assert [e["data"]["user_id"] for e in events] == ["7"]


# --- §12 'Password Management', verbatim -----------------------------------------------------------

from crown_nexus.core.security import get_password_hash, verify_password, validate_password_policy

# Hash a password
def hash_user_password(plain_password: str):
    hashed = get_password_hash(plain_password)
    return hashed

# Verify a password
def check_user_password(plain_password: str, hashed_password: str):
    return verify_password(plain_password, hashed_password)

# Validate password against security policy
async def validate_new_password(password: str, user_id: Optional[str] = None):
    is_valid, message = await validate_password_policy(password, user_id)

    if not is_valid:
        raise ValidationException(
            message="Password policy validation failed",
            errors=[{
                "loc": ["password"],
                "msg": message,
                "type": "password_policy_error"
            }]
        )

    return True


async def test_password_management() -> None:
    """Argon2id hashes verify; bcrypt verifies and needs a rehash; weak passwords fail the policy with a 422."""
    from crown_nexus.core.security import needs_rehash

    hashed = hash_user_password("Tr1cky-Passw0rd")
    assert hashed.startswith("$argon2id$") and "Tr1cky" not in hashed
    assert check_user_password("Tr1cky-Passw0rd", hashed) is True
    assert check_user_password("tr1cky-passw0rd", hashed) is False
    assert check_user_password("x", "not a hash") is False
    assert needs_rehash(hashed) is False
    legacy = bcrypt.hashpw(b"Old-Secret-1", bcrypt.gensalt(4)).decode()
    assert check_user_password("Old-Secret-1", legacy) is True and needs_rehash(legacy) is True
    assert await validate_new_password("Unusual-Kettle-93") is True
    for weak in ("short1!", "alllowercase1!", "Password1!", "NoDigitsHere!"):
        with pytest.raises(ValidationException) as info:
            await validate_new_password(weak)
        assert info.value.status_code == 422
        [error] = info.value.errors
        assert error["loc"] == ["password"] and error["type"] == "password_policy_error" and error["msg"]
        assert weak not in error["msg"]
    with pytest.raises(ValidationException):
        await validate_new_password("Xy-annabelle-77", user_id="annabelle")


# --- §12 'API Key Management' (async def: the block awaits) -----------------------------------------


class Base(DeclarativeBase):
    """The user's declarative base."""


class ApiKey(Base):
    """The user's ApiKey table."""

    __tablename__ = "guide_s12_api_keys"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(80))
    hashed_secret: Mapped[str] = mapped_column(String(128))
    permissions: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime.datetime] = mapped_column()


class UserSecureData(Base):
    """The user's encrypted-record table."""

    __tablename__ = "guide_s12_secure"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: uuid.uuid4().hex)
    user_id: Mapped[str] = mapped_column(String(40))
    encrypted_data: Mapped[str] = mapped_column(Text)


db: AsyncSession


@pytest.fixture
async def session() -> AsyncIterator[AsyncSession]:
    """The user's module-level ``db`` session (SQLite in memory)."""
    global db
    async with sqlite_database(Base) as sessions, sessions() as db:
        yield db


from crown_nexus.core.security import generate_api_key, verify_api_key

# Generate an API key for a user
async def create_user_api_key(user_id: str, name: str, permissions: List[str]):
    api_key_data = generate_api_key(user_id, name, permissions)

    # Store the hashed key in database (never store the actual key)
    db_api_key = ApiKey(
        id=api_key_data.key_id,
        user_id=user_id,
        name=name,
        hashed_secret=api_key_data.hashed_secret,
        permissions=permissions,
        created_at=datetime.datetime.now(datetime.UTC)
    )
    db.add(db_api_key)
    await db.commit()

    # Return the API key to the user (this is the only time they'll see it)
    return {
        "api_key": api_key_data.api_key,
        "name": name,
        "permissions": permissions,
        "created_at": db_api_key.created_at.isoformat()
    }

# Verify an API key
async def verify_user_api_key(api_key: str):
    # Extract key ID from the API key
    parts = api_key.split(".")
    if len(parts) != 2:
        raise AuthenticationException(message="Invalid API key format")

    key_id, _ = parts

    # Find the stored key data
    stored_key = await db.execute(select(ApiKey).where(ApiKey.id == key_id))
    stored_key = stored_key.scalar_one_or_none()

    if not stored_key:
        raise AuthenticationException(message="Invalid API key")

    # Verify the key
    if not verify_api_key(api_key, stored_key.hashed_secret):
        raise AuthenticationException(message="Invalid API key")

    # At this point, the API key is valid
    return {
        "user_id": stored_key.user_id,
        "key_id": stored_key.id,
        "name": stored_key.name,
        "permissions": stored_key.permissions
    }


async def test_api_keys(session: AsyncSession) -> None:
    """The key is '<key_id>.<secret>', only a hash is stored, and only the exact key verifies."""
    created = await create_user_api_key("u1", "ci", ["product:read"])
    key = created["api_key"]
    key_id, secret = key.split(".")
    row = (await db.execute(select(ApiKey))).scalar_one()
    assert row.id == key_id and secret not in row.hashed_secret and key not in repr(row.__dict__)
    assert await verify_user_api_key(key) == {"user_id": "u1", "key_id": key_id, "name": "ci", "permissions": ["product:read"]}
    for bad in (key + "x", f"{key_id}.{'A' * len(secret)}", "no-dot", "a.b.c", f"ck_unknown.{secret}"):
        with pytest.raises(AuthenticationException):
            await verify_user_api_key(bad)
    assert verify_api_key(key, row.hashed_secret) is True and verify_api_key("", row.hashed_secret) is False


async def test_api_key_functions_record_metrics_and_events(session: AsyncSession) -> None:
    """'Metrics and Events Integration': the guide's module-level generate_api_key/verify_api_key
    publish security.api_key_created and record their metrics too (issue 13)."""
    from crown_nexus.core.events import event_service
    from crown_nexus.core.metrics import get_metrics_service

    metrics = get_metrics_service()
    created_events: list[dict[str, Any]] = []

    async def on_created(event: dict[str, Any]) -> None:
        created_events.append(event["data"])

    ok_labels, bad_labels = {"success": "true"}, {"success": "false"}

    def verifications(labels: dict[str, str]) -> float:
        return metrics.registry.get_sample_value("api_key_verification_duration_seconds_count", labels) or 0.0

    before = (metrics.get_counter_sum("api_keys_created_total"), verifications(ok_labels), verifications(bad_labels))
    event_service.subscribe("security.api_key_created", on_created)
    try:
        created = await create_user_api_key("u-metrics", "ci", ["product:read"])
        await verify_user_api_key(created["api_key"])
        with pytest.raises(AuthenticationException):
            await verify_user_api_key(created["api_key"] + "x")
        await asyncio.sleep(0)
        assert await event_service.wait_for_pending(timeout=5)
    finally:
        event_service.unsubscribe("security.api_key_created", on_created)
    key_id = created["api_key"].split(".")[0]
    assert created_events == [{"user_id": "u-metrics", "key_id": key_id, "name": "ci", "permissions": ["product:read"]}]
    assert created["api_key"] not in str(created_events)
    after = (metrics.get_counter_sum("api_keys_created_total"), verifications(ok_labels), verifications(bad_labels))
    assert after == (before[0] + 1, before[1] + 1, before[2] + 1)


# --- §12 'CSRF Protection' --------------------------------------------------------------------------


def test_csrf_functions() -> None:
    """A token validates for its own session only; tampering fails with a 403 SecurityException."""
    ns = csrf_block(APIRouter())
    get_csrf_token, check_csrf_token = ns["get_csrf_token"], ns["check_csrf_token"]
    token = get_csrf_token("session-1")
    assert check_csrf_token(token, "session-1") is True
    for bad_token, session_id in ((token, "session-2"), (token[:-2] + "xx", "session-1"), ("", "session-1"), ("garbage", "session-1")):
        with pytest.raises(SecurityException) as info:
            check_csrf_token(bad_token, session_id)
        assert info.value.status_code == 403 and info.value.code == "SECURITY_ERROR"


def csrf_router() -> APIRouter:
    """The guide's settings endpoint on the user's router."""
    router = APIRouter()
    csrf_block(router)
    return router


async def test_csrf_endpoint() -> None:
    """Own settings with a valid CSRF header: 200; bad CSRF: 403; other user: 403; no token: 401; no header: 422."""
    from crown_nexus.core.security import generate_csrf_token

    app = app_with(csrf_router())
    async with app_client(app) as client:
        token = create_token("u5")
        csrf = generate_csrf_token("u5")
        auth = {"Authorization": f"Bearer {token}"}
        ok = await client.post("/users/u5/settings", json={"theme": "dark"}, headers={**auth, "csrf-token": csrf})
        bad = await client.post("/users/u5/settings", json={}, headers={**auth, "csrf-token": generate_csrf_token("u6")})
        other = await client.post("/users/u6/settings", json={}, headers={**auth, "csrf-token": csrf})
        anon = await client.post("/users/u5/settings", json={}, headers={"csrf-token": csrf})
        missing = await client.post("/users/u5/settings", json={}, headers=auth)
    assert ok.status_code == 200 and data_of(ok.json()) == {"success": True}
    assert bad.status_code == 403
    assert_error_body(bad.json(), "SECURITY_ERROR", "Invalid CSRF token")
    assert other.status_code == 403
    assert_error_body(other.json(), "PERMISSION_DENIED", "Cannot modify another user's settings")
    assert anon.status_code == 401 and anon.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.status_code == 422
    assert_error_body(missing.json(), "VALIDATION_ERROR")


# --- §12 'Encryption' (async def: the blocks await) --------------------------------------------------

from crown_nexus.core.security import encrypt_data, decrypt_data

# Encrypt sensitive data
async def store_secure_data(user_id: str, sensitive_data: dict):
    try:
        # Encrypt the data
        encrypted = encrypt_data(sensitive_data)

        # Store in database
        secure_record = UserSecureData(
            user_id=user_id,
            encrypted_data=encrypted
        )
        db.add(secure_record)
        await db.commit()

        return {"id": secure_record.id, "success": True}
    except Exception as e:
        logger.error(f"Encryption error: {str(e)}")
        handle_exception(e, user_id=user_id)
        raise

# Decrypt sensitive data
async def retrieve_secure_data(user_id: str, record_id: str):
    try:
        # Get from database
        record = await db.execute(
            select(UserSecureData)
            .where(UserSecureData.id == record_id)
            .where(UserSecureData.user_id == user_id)
        )
        record = record.scalar_one_or_none()

        if not record:
            raise ResourceNotFoundException(
                resource_type="UserSecureData",
                resource_id=record_id
            )

        # Decrypt the data
        decrypted = decrypt_data(record.encrypted_data)

        return decrypted
    except Exception as e:
        logger.error(f"Decryption error: {str(e)}")
        handle_exception(e, user_id=user_id)
        raise


async def test_encryption_round_trip(session: AsyncSession) -> None:
    """The dict is stored encrypted (no plaintext in the row) and decrypts back equal; others get 404."""
    secret = {"ssn": "123-45-6789", "card": {"last4": "4242"}}
    stored = await store_secure_data("u1", secret)
    assert stored["success"] is True
    row = (await db.execute(select(UserSecureData))).scalar_one()
    assert "123-45-6789" not in row.encrypted_data and "ssn" not in row.encrypted_data
    assert await retrieve_secure_data("u1", stored["id"]) == secret
    with pytest.raises(ResourceNotFoundException):
        await retrieve_secure_data("u2", stored["id"])
    assert encrypt_data(secret) != row.encrypted_data  # fresh IV each time
    with pytest.raises(Exception) as info:
        decrypt_data(row.encrypted_data[:-4] + "AAAA")
    assert "123-45-6789" not in str(info.value)


# --- §12 'Input Validation and Sanitization', verbatim ---------------------------------------------

from crown_nexus.core.security.validation import (
    sanitize_input,
    detect_suspicious_content,
    validate_json_input,
    is_valid_hostname,
    is_trusted_ip,
    moderate_content
)

# Sanitize user input
def clean_user_input(input_text: str):
    return sanitize_input(input_text)

# Detect potentially malicious content
def check_user_content(content: str):
    if detect_suspicious_content(content):
        logger.warning("Suspicious content detected", content_length=len(content))
        raise SecurityException(
            message="Potentially malicious content detected",
            code=ErrorCode.SECURITY_ERROR
        )
    return content

# Validate JSON input
def validate_client_json(json_data: Any):
    if not validate_json_input(json_data):
        raise ValidationException(
            message="Invalid JSON data",
            errors=[{
                "loc": ["body"],
                "msg": "Invalid or malicious JSON data",
                "type": "json_validation_error"
            }]
        )
    return json_data

# Content moderation
async def moderate_user_content(content: str, content_type: str = "text"):
    is_allowed, reason = moderate_content(content, content_type)

    if not is_allowed:
        raise ValidationException(
            message="Content moderation failed",
            errors=[{
                "loc": ["content"],
                "msg": reason or "Content violates community guidelines",
                "type": "content_moderation_error"
            }]
        )

    return content


async def test_input_validation() -> None:
    """Markup is neutralised, attacks are detected, deep JSON is refused, plain input passes."""
    cleaned = clean_user_input("<script>alert(1)</script>Hello")
    assert "<script" not in cleaned and "Hello" in cleaned
    assert check_user_content("A perfectly normal review.") == "A perfectly normal review."
    for attack in ("<script>alert(1)</script>", "' OR 1=1 --", "../../etc/passwd", "javascript:alert(1)"):
        with pytest.raises(SecurityException) as info:
            check_user_content(attack)
        assert info.value.status_code == 403
    assert validate_client_json({"a": [1, {"b": "c"}]}) == {"a": [1, {"b": "c"}]}
    deep: Any = 1
    for _ in range(100):
        deep = {"x": deep}
    with pytest.raises(ValidationException):
        validate_client_json(deep)
    assert await moderate_user_content("hello world") == "hello world"
    assert is_valid_hostname("api.example.com") and not is_valid_hostname("bad host!")
    assert is_trusted_ip("10.0.0.1", ["10.0.0.0/8"]) and not is_trusted_ip("8.8.8.8", ["10.0.0.0/8"])


def test_detect_suspicious_content_records_detections() -> None:
    """The guide's check_user_content (module-level detect_suspicious_content) counts each attack
    class in suspicious_content_detections_total (issue 13)."""
    from crown_nexus.core.metrics import get_metrics_service

    metrics = get_metrics_service()
    before = {c: metrics.get_counter_sum("suspicious_content_detections_total", {"category": c}) for c in ("xss", "path_traversal")}
    total = metrics.get_counter_sum("suspicious_content_detections_total")
    with pytest.raises(SecurityException):
        check_user_content("<script>alert(1)</script>")
    with pytest.raises(SecurityException):
        check_user_content("../../etc/passwd")
    check_user_content("A perfectly normal review.")
    assert metrics.get_counter_sum("suspicious_content_detections_total", {"category": "xss"}) == before["xss"] + 1
    assert metrics.get_counter_sum("suspicious_content_detections_total", {"category": "path_traversal"}) == before["path_traversal"] + 1
    assert metrics.get_counter_sum("suspicious_content_detections_total") == total + 2


# --- §12 'Security Headers' (the user's @app.middleware) -------------------------------------------


async def test_security_headers_middleware() -> None:
    """The user's http middleware adds every header get_security_headers returns, errors included."""
    from crown_nexus.core.security import get_security_headers, get_security_service

    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    add_security_headers(app)

    expected = get_security_headers()
    assert {"X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy"} <= set(expected)
    async with app_client(app) as client:
        for path in ("/ok", "/missing"):
            response = await client.get(path)
            for name, value in expected.items():
                assert response.headers[name] == value


# --- §12 'FastAPI Authentication Dependencies', verbatim --------------------------------------------


class ProductRow:
    """The user's product with ``to_response``."""

    def __init__(self, id: str, name: str, owner: str = "") -> None:
        self.id, self.name, self.owner = id, name, owner

    def to_response(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "owner": self.owner}


class ProductRepository:
    """The user's product repository."""

    def __init__(self) -> None:
        self.items = {"p1": ProductRow("p1", "Lamp")}

    async def get_by_id(self, product_id: str) -> ProductRow | None:
        return self.items.get(product_id)

    async def create(self, data: Any, user_id: str) -> ProductRow:
        row = ProductRow(f"p{len(self.items) + 1}", data.name, user_id)
        self.items[row.id] = row
        return row


class ProductViewService:
    """The user's view recorder."""

    def __init__(self) -> None:
        self.views: list[tuple[str, str]] = []

    async def record_view(self, product_id: str, user_id: str) -> None:
        self.views.append((product_id, user_id))


class ProductCreate(BaseModel):
    """The user's product body."""

    name: str


class _Me:
    id = "u1"

    def to_response(self) -> dict[str, str]:
        return {"id": "u1", "name": "Ann"}


product_repository = ProductRepository()
product_view_service = ProductViewService()


def deps_router() -> APIRouter:
    router = APIRouter()
    users = {"u1": _Me()}

    class _Repo:
        async def get_by_id(self, user_id: str) -> Any:
            return users.get(user_id)

    user_repository = _Repo()

    from crown_nexus.core.security.dependencies import (
        get_current_user_id,
        get_optional_user_id,
        get_current_user_with_permissions
    )

    # Endpoint requiring authentication
    @router.get("/users/me")
    async def get_current_user_profile(
        current_user_id: str = Depends(get_current_user_id),
        db: AsyncSession = Depends(get_db)
    ):
        # Get user by ID
        user = await user_repository.get_by_id(current_user_id)

        if not user:
            raise ResourceNotFoundException(resource_type="User", resource_id=current_user_id)

        return user.to_response()

    # Endpoint with optional authentication
    @router.get("/products/{product_id}")
    async def get_product(
        product_id: str,
        user_id: Optional[str] = Depends(get_optional_user_id),
        db: AsyncSession = Depends(get_db)
    ):
        # Get product
        product = await product_repository.get_by_id(product_id)

        if not product:
            raise ResourceNotFoundException(resource_type="Product", resource_id=product_id)

        # If user is authenticated, record view
        if user_id:
            await product_view_service.record_view(product_id, user_id)

        return product.to_response()

    # Endpoint requiring authentication with permissions
    @router.post("/products")
    async def create_product(
        product_data: ProductCreate,
        user_data: dict = Depends(get_current_user_with_permissions),
        db: AsyncSession = Depends(get_db)
    ):
        # Check permission
        if "product:create" not in user_data["permissions"]:
            raise PermissionDeniedException(
                message="You don't have permission to create products",
                action="create",
                resource_type="product",
                permission="product:create"
            )

        # Create product
        product = await product_repository.create(product_data, user_data["id"])

        return product.to_response()

    return router


async def test_authentication_dependencies() -> None:
    """Required auth: 401 without/with a bad token; optional auth records views only when signed in; permissions gate creation."""
    app = app_with(deps_router())
    product_view_service.views.clear()
    async with app_client(app) as client:
        me_token = create_token("u1", permissions=["product:read"])
        creator = create_token("u2", permissions=["product:create"])
        ghost = create_token("u404")
        me = await client.get("/users/me", headers={"Authorization": f"Bearer {me_token}"})
        anon_me = await client.get("/users/me")
        bad_me = await client.get("/users/me", headers={"Authorization": "Bearer nope"})
        ghost_me = await client.get("/users/me", headers={"Authorization": f"Bearer {ghost}"})
        anon_product = await client.get("/products/p1")
        signed_product = await client.get("/products/p1", headers={"Authorization": f"Bearer {me_token}"})
        bad_optional = await client.get("/products/p1", headers={"Authorization": "Bearer nope"})
        denied = await client.post("/products", json={"name": "Desk"}, headers={"Authorization": f"Bearer {me_token}"})
        created = await client.post("/products", json={"name": "Desk"}, headers={"Authorization": f"Bearer {creator}"})
    assert me.status_code == 200 and data_of(me.json()) == {"id": "u1", "name": "Ann"}
    for r in (anon_me, bad_me):
        assert r.status_code == 401
        assert_error_body(r.json(), "AUTHENTICATION_ERROR")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert ghost_me.status_code == 404
    assert anon_product.status_code == 200 and signed_product.status_code == 200
    assert product_view_service.views == [("p1", "u1")]
    assert bad_optional.status_code == 401  # invalid credentials are never silently anonymous
    assert denied.status_code == 403
    assert_error_body(denied.json(), "PERMISSION_DENIED", "You don't have permission to create products")
    assert created.status_code == 200 and data_of(created.json())["owner"] == "u2"


# --- §12 'Metrics and Events Integration', verbatim -------------------------------------------------


async def test_token_revoked_event_and_metrics() -> None:
    """The guide's handler sees security.token_revoked with user_id and reason; counters move."""
    from crown_nexus.core.dependency_manager import get_service
    from crown_nexus.core.metrics import get_metrics_service
    from crown_nexus.core.security import get_security_service

    event_service = get_service("event_service")
    await event_service.initialize()
    seen: list[dict[str, Any]] = []

    # Example event handler for monitoring
    @event_service.event_handler("security.token_revoked")
    async def log_token_revocation(event):
        data = event["data"]
        logger.info(
            "Token revoked",
            user_id=data["user_id"],
            reason=data["reason"]
        )
        seen.append(data)

    metrics = get_metrics_service()
    service = get_security_service()
    before_created = metrics.get_counter_sum("tokens_created_total")
    before_csrf = metrics.get_counter_sum("csrf_validations_total")
    try:
        token = create_token("user-rev")
        await logout_user(token, "user-rev")
        service.validate_csrf_token("bad", "s")
        service.generate_api_key("user-rev", "k")
        await event_service.wait_for_pending(5)
    finally:
        event_service.unsubscribe("security.token_revoked", log_token_revocation)
    assert [(d["user_id"], d["reason"]) for d in seen] == [("user-rev", "logout")]
    service.telemetry.flush()  # batched token counts handed to the metrics service
    assert metrics.get_counter_sum("tokens_created_total") >= before_created + 1
    assert metrics.get_counter_sum("csrf_validations_total") >= before_csrf + 1
    assert metrics.get_counter_sum("api_keys_created_total") >= 1


# --- SPEC §10: sync/async split and signatures -----------------------------------------------------


def test_spec_sync_async_and_signatures() -> None:
    """The functions the guide calls plainly are sync, the awaited ones async; create_token's signature is SPEC §10's."""
    import inspect

    import crown_nexus.core.security as security

    for name in ("generate_api_key", "verify_api_key", "encrypt_data", "decrypt_data", "generate_csrf_token",
                 "validate_csrf_token", "get_password_hash", "verify_password", "create_token", "create_token_pair",
                 "needs_rehash"):
        assert callable(getattr(security, name)) and not inspect.iscoroutinefunction(getattr(security, name)), name
    for name in ("decode_token", "refresh_tokens", "revoke_token", "validate_password_policy"):
        assert inspect.iscoroutinefunction(getattr(security, name)), name
    params = inspect.signature(security.create_token).parameters
    assert list(params)[:2] == ["subject", "token_type"] and params["token_type"].default == TokenType.ACCESS
    for keyword in ("expires_delta", "role", "permissions", "user_data"):
        assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY and params[keyword].default is None
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert isinstance(security.needs_rehash(get_password_hash("Abc-12345!x")), bool)


async def test_expired_and_custom_claims() -> None:
    """expires_delta in the past gives an expired token (401 type); extra claims cannot override registered ones."""
    expired = create_token("u1", expires_delta=datetime.timedelta(seconds=-120))
    with pytest.raises(AuthenticationException):
        await decode_token(expired)
    with pytest.raises(ValueError):
        create_token("u1", sub="someone-else")
    assert (await decode_token(create_token("u1", tenant="t1"))).sub == "u1"


async def test_logout_is_shared_between_workers_with_redis(redis_url: str) -> None:
    """SPEC §5: with Redis configured, a token revoked by the guide's logout is refused by another worker's service."""
    from crown_nexus.core.security import SecurityService, configure_security, get_security_service
    from crown_nexus.settings import Settings

    previous = get_security_service().settings
    # a generous per-call bound: this test is about sharing through Redis; a reply slower than
    # the default 100 ms (a loaded CI machine) is answered from the replica, whose pub/sub copy
    # may not have arrived yet -- that fallback has its own tests
    settings = Settings(
        ENVIRONMENT="production", secret_key=SECRET, REDIS_URI=redis_url, redis_timeout_ms=5000
    )
    configure_security(settings)
    other_worker = SecurityService(settings)
    try:
        pair = create_token_pair(user_id=f"w-{uuid.uuid4().hex[:6]}")
        assert (await other_worker.decode_token(pair.access_token)).sub.startswith("w-")
        await logout_user(pair.access_token, "w")
        with pytest.raises(AuthenticationException):
            await other_worker.decode_token(pair.access_token)
        restarted = SecurityService(settings)  # a fresh process after a restart
        with pytest.raises(AuthenticationException):
            await restarted.decode_token(pair.access_token)
        await restarted.close()
    finally:
        await other_worker.close()
        configure_security(previous)


async def test_app_settings_secret_signs_and_checks_tokens() -> None:
    """An app built with its own production secret refuses tokens signed with the built-in default key (SPEC §7)."""
    import time as _time

    import jwt as pyjwt

    from crown_nexus.settings import DEFAULT_SECRET_KEY

    strong = "app-secret-" + uuid.uuid4().hex * 2
    app = guide_app(deps_router(), ENVIRONMENT="production", secret_key=strong)
    now = int(_time.time())
    claims = {"sub": "u1", "type": "access", "iat": now, "nbf": now, "exp": now + 600, "jti": uuid.uuid4().hex,
              "role": "admin", "permissions": ["product:create"]}
    forged = pyjwt.encode(claims, DEFAULT_SECRET_KEY, algorithm="HS256")
    async with app_client(app) as client:
        genuine = create_token("u1")  # the guide's module-level call, inside the running app
        ok = await client.get("/users/me", headers={"Authorization": f"Bearer {genuine}"})
        refused = await client.get("/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert ok.status_code == 200
    assert refused.status_code == 401
    assert_error_body(refused.json(), "AUTHENTICATION_ERROR")


# --- the same blocks on a second setup: bare FastAPI apps, on each jwt implementation -------------
# (with the password/API key/encryption/validation calls the guide's other §12 blocks make)
import httpx

from crown_nexus.core.exceptions import install_exception_handlers
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
from crown_nexus.core.security.validation import (
    detect_suspicious_content,
    moderate_content,
    sanitize_input,
    validate_json_input,
)


class ExampleLoginRequest(BaseModel):
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


@pytest.mark.usefixtures("cheap_argon2")
async def test_login_example_with_the_security_service(configured) -> None:
    """'Using the Security Service': login with get_security_service(db), token pair and CSRF cookie."""
    users = {"john@example.com": _User(get_password_hash("Correct-Horse-1!"))}

    class ExampleUserRepository:
        """The application's user lookup."""

        async def get_by_email(self, email: str) -> _User | None:
            return users.get(email)

    async def get_db() -> Any:
        return None

    router = login_routes(
        APIRouter(),
        LoginRequest=ExampleLoginRequest,
        AsyncSession=Any,
        get_db=get_db,
        user_repository=ExampleUserRepository(),
    )
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


@pytest.mark.usefixtures("cheap_argon2")
async def test_csrf_endpoint_example(configured) -> None:
    """'CSRF Protection': the settings endpoint with a csrf-token header and get_current_user_id."""
    router = APIRouter()
    csrf_block(router)

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


@pytest.mark.usefixtures("cheap_argon2")
async def test_security_headers_middleware_example(configured) -> None:
    """'Security Headers': an http middleware copying security_service.get_security_headers()."""
    app = FastAPI()
    add_security_headers(app)

    @app.get("/")
    async def root() -> dict:
        return {}

    async with _client(app) as client:
        resp = await client.get("/")
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["content-security-policy"]


@pytest.mark.usefixtures("cheap_argon2")
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


# The fixtures of the examples above (formerly tests/core/security/conftest.py's).
from collections.abc import Iterator

from argon2 import PasswordHasher

from crown_nexus import accel
from crown_nexus.core.security import configure_security
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.settings import Settings
from tests.conftest import implementations_of


@pytest.fixture(params=implementations_of("jwt"))
def jwt_impl(request: pytest.FixtureRequest) -> Any:
    """Each available implementation of the jwt hot path (pure, native)."""
    return accel.available("jwt")[request.param]


@pytest.fixture
def cheap_argon2() -> Iterator[PasswordHasher]:
    """Argon2id with tiny costs so the examples stay fast (the parameters are not under test)."""
    hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    previous = set_password_hasher(hasher)
    try:
        yield hasher
    finally:
        set_password_hasher(previous)


@pytest.fixture
def configured(jwt_impl: Any) -> Iterator[Settings]:
    """The shared security service configured with issuer and audience for ``jwt_impl``."""
    settings = Settings(
        secret_key="test-secret-key-for-the-security-suite-0123456789",
        jwt_issuer="crown-nexus-tests",
        jwt_audience="crown-nexus-api",
    )
    configure_security(settings, jwt_impl=jwt_impl)
    try:
        yield settings
    finally:
        configure_security(None)
