"""HTTP-level tests of the reference service's authentication: login, me, refresh, logout, API keys, JWKS."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher

from crown_nexus.core.security import configure_security
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

ADMIN = {"email": "admin@example.com", "password": "Crown-Admin-2024!"}
USER = {"email": "user@example.com", "password": "Crown-User-2024!"}
SPEC_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}


@pytest.fixture(autouse=True)
def cheap_argon2():
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


def _settings(tmp_path, database_url: str | None = None, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url or f"sqlite+aiosqlite:///{tmp_path}/auth.db",
        secret_key="demo-auth-test-secret-0123456789abcdef",
        **extra,
    )


def _data(resp) -> Any:
    body = resp.json()
    if isinstance(body, dict) and body.get("success") is True and "data" in body:
        return body["data"]
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_401(resp) -> dict:
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == "Bearer"
    body = resp.json()
    assert set(body) == SPEC_KEYS
    assert body["success"] is False and body["code"] == "AUTHENTICATION_ERROR"
    return body


async def _login(client, creds: dict) -> dict:
    resp = await client.post("/auth/login", json=creds)
    assert resp.status_code == 200, resp.text
    return _data(resp)


async def test_login_me_refresh_reuse_and_logout(tmp_path, database_url: str) -> None:
    """The whole session life (SQLite and PostgreSQL): login, /users/me, rotation, reuse, logout."""
    async with app_client(create_app(_settings(tmp_path, database_url))) as client:
        resp = await client.post("/auth/login", json=ADMIN)
        assert resp.status_code == 200
        assert "csrf_token=" in resp.headers["set-cookie"]
        pair = _data(resp)
        assert pair["token_type"] == "bearer" and pair["expires_in"] == 1800

        me = await client.get("/users/me", headers=_bearer(pair["access_token"]))
        assert me.status_code == 200
        profile = _data(me)
        assert profile["email"] == "admin@example.com" and profile["role"] == "admin"
        assert profile["auth_method"] == "bearer"
        assert "hashed_password" not in profile

        rotated = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert rotated.status_code == 200
        second = _data(rotated)
        assert second["refresh_token"] != pair["refresh_token"]
        assert (
            await client.get("/users/me", headers=_bearer(second["access_token"]))
        ).status_code == 200

        reuse = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert _assert_401(reuse)["details"] == {"reason": "reuse_detected"}
        # the whole family is gone: tokens issued by the rotation no longer work
        _assert_401(await client.get("/users/me", headers=_bearer(second["access_token"])))
        _assert_401(
            await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
        )

        fresh = await _login(client, ADMIN)
        out = await client.post("/auth/logout", headers=_bearer(fresh["access_token"]))
        assert out.status_code == 200 and _data(out)["success"] is True
        body = _assert_401(await client.get("/users/me", headers=_bearer(fresh["access_token"])))
        assert body["details"] == {"reason": "revoked"}
        _assert_401(
            await client.post("/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
        )


async def test_bad_credentials_and_bad_tokens(tmp_path) -> None:
    """Wrong password, unknown user, garbage/expired-style tokens: 401 with the SPEC §3 body."""
    async with app_client(create_app(_settings(tmp_path))) as client:
        wrong = await client.post("/auth/login", json={**ADMIN, "password": "nope"})
        unknown = await client.post("/auth/login", json={"email": "x@example.com", "password": "p"})
        assert (
            _assert_401(wrong)["message"]
            == _assert_401(unknown)["message"]
            == "Invalid credentials"
        )
        missing = await client.post("/auth/login", json={"email": "admin@example.com"})
        assert missing.status_code == 422 and missing.json()["code"] == "VALIDATION_ERROR"

        _assert_401(await client.get("/users/me"))
        for token in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."]:
            body = _assert_401(await client.get("/users/me", headers=_bearer(token)))
            assert token not in body["message"]
        pair = await _login(client, USER)
        wrong_type = await client.get("/users/me", headers=_bearer(pair["refresh_token"]))
        assert _assert_401(wrong_type)["details"] == {"reason": "wrong_token_type"}
        not_refresh = await client.post(
            "/auth/refresh", json={"refresh_token": pair["access_token"]}
        )
        _assert_401(not_refresh)


async def test_api_keys(tmp_path, database_url: str) -> None:
    """API keys (SQLite and PostgreSQL): only a hash stored, /users/me with it, permissions limited."""
    async with app_client(create_app(_settings(tmp_path, database_url))) as client:
        user = await _login(client, USER)
        created = await client.post(
            "/auth/api-keys",
            json={"name": "ci", "permissions": ["document:read"]},
            headers=_bearer(user["access_token"]),
        )
        assert created.status_code == 201, created.text
        key = _data(created)
        assert key["api_key"].startswith(key["key_id"] + ".")

        me = await client.get("/users/me", headers={"X-API-Key": key["api_key"]})
        assert me.status_code == 200
        profile = _data(me)
        assert profile["email"] == "user@example.com"
        assert profile["auth_method"] == "api_key"
        assert profile["credential_permissions"] == ["document:read"]

        _assert_401(
            await client.get("/users/me", headers={"X-API-Key": key["api_key"][:-2] + "xx"})
        )
        _assert_401(await client.get("/users/me", headers={"X-API-Key": "not-a-key"}))

        escalate = await client.post(
            "/auth/api-keys",
            json={"name": "evil", "permissions": ["system:admin"]},
            headers=_bearer(user["access_token"]),
        )
        assert escalate.status_code == 403
        assert escalate.json()["code"] == "PERMISSION_DENIED"
        _assert_401(await client.post("/auth/api-keys", json={"name": "anon"}))

        app = client._transport.app  # the stored row holds a hash, never the key
        from sqlalchemy import select

        from crown_nexus.demo.models_users import ApiKey

        async with app.state.sessionmaker() as db:
            row = (await db.execute(select(ApiKey).where(ApiKey.id == key["key_id"]))).scalar_one()
        secret = key["api_key"].split(".", 1)[1]
        assert secret not in row.hashed_secret and len(row.hashed_secret) == 64


async def test_jwks_endpoint(tmp_path) -> None:
    """/.well-known/jwks.json is empty for HS256 and publishes the EdDSA key that signs tokens."""
    async with app_client(create_app(_settings(tmp_path))) as client:
        assert _data(await client.get("/.well-known/jwks.json")) == {"keys": []}
    configure_security(None)
    async with app_client(create_app(_settings(tmp_path, jwt_algorithm="EdDSA"))) as client:
        jwks = _data(await client.get("/.well-known/jwks.json"))
        pair = await _login(client, USER)
    import jwt as pyjwt

    (jwk,) = jwks["keys"]
    assert jwk["kty"] == "OKP" and "d" not in jwk
    assert pyjwt.get_unverified_header(pair["access_token"])["kid"] == jwk["kid"]
    claims = pyjwt.decode(
        pair["access_token"],
        pyjwt.PyJWK(jwk).key,
        algorithms=["EdDSA"],
        options={"verify_aud": False},
    )
    assert claims["type"] == "access"


async def test_suspicious_requests_are_blocked(tmp_path) -> None:
    """SecureRequestMiddleware answers 400 (SPEC §3 body) to an injection in the query string."""
    async with app_client(create_app(_settings(tmp_path))) as client:
        resp = await client.get("/users/me", params={"q": "1' OR '1'='1"})
    assert resp.status_code == 400
    assert resp.json()["code"] == "SECURITY_ERROR"


async def test_logout_survives_restart_with_redis(tmp_path, redis_url: str, redis_client) -> None:
    """With Redis configured a logged-out token stays revoked after the app restarts."""
    settings = _settings(tmp_path, REDIS_URI=redis_url)
    async with app_client(create_app(settings)) as client:
        pair = await _login(client, USER)
        assert (
            await client.post("/auth/logout", headers=_bearer(pair["access_token"]))
        ).status_code == 200
    async with app_client(create_app(settings)) as client:
        _assert_401(await client.get("/users/me", headers=_bearer(pair["access_token"])))
