"""FastAPI dependencies: Bearer tokens, API keys through a resolver, 401s with WWW-Authenticate."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from crown_nexus.core.exceptions import install_exception_handlers
from crown_nexus.core.security import (
    SecurityService,
    create_token_pair,
    generate_api_key,
    verify_api_key,
)
from crown_nexus.core.security.api_keys import parse_api_key
from crown_nexus.core.security.dependencies import (
    get_current_user_id,
    get_current_user_with_permissions,
    get_optional_user_id,
    register_api_key_resolver,
)


@pytest.fixture
def app(configured) -> FastAPI:
    """An app with one endpoint per dependency and an in-memory API key resolver."""
    app = FastAPI()
    install_exception_handlers(app)
    key = generate_api_key("key-owner", "test", ["document:read"])
    store = {key.key_id: key}
    app.state.test_api_key = key.api_key

    async def resolver(api_key: str, request: Request) -> dict[str, Any] | None:
        parsed = parse_api_key(api_key)
        stored = store.get(parsed[0]) if parsed else None
        if stored is None or not verify_api_key(api_key, stored.hashed_secret):
            return None
        return {"id": stored.user_id, "role": "service", "permissions": stored.permissions}

    register_api_key_resolver(resolver, app=app)

    @app.get("/me")
    async def me(user_id: str = Depends(get_current_user_id)) -> dict:
        return {"id": user_id}

    @app.get("/maybe")
    async def maybe(user_id: str | None = Depends(get_optional_user_id)) -> dict:
        return {"id": user_id}

    @app.get("/full")
    async def full(user: dict = Depends(get_current_user_with_permissions)) -> dict:
        return {k: user[k] for k in ("id", "role", "permissions", "auth_method")}

    return app


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_bearer_token(app) -> None:
    """A valid access token authenticates all three dependencies."""
    pair = create_token_pair(user_id="u-1", role="admin", permissions=["user:read"])
    headers = {"Authorization": f"Bearer {pair.access_token}"}
    async with _client(app) as client:
        assert (await client.get("/me", headers=headers)).json() == {"id": "u-1"}
        assert (await client.get("/maybe", headers=headers)).json() == {"id": "u-1"}
        full = (await client.get("/full", headers=headers)).json()
    assert full == {
        "id": "u-1",
        "role": "admin",
        "permissions": ["user:read"],
        "auth_method": "bearer",
    }


async def test_api_key(app) -> None:
    """X-API-Key is verified through the registered resolver; the key carries no role (SPEC §5)."""
    headers = {"X-API-Key": app.state.test_api_key}
    async with _client(app) as client:
        full = (await client.get("/full", headers=headers)).json()
        bad = await client.get("/me", headers={"X-API-Key": app.state.test_api_key + "x"})
    assert full == {
        "id": "key-owner",
        "role": None,
        "permissions": ["document:read"],
        "auth_method": "api_key",
    }
    assert bad.status_code == 401


async def test_missing_and_invalid_credentials(app) -> None:
    """No credentials: 401 (optional gives None); bad or refresh tokens: 401 with WWW-Authenticate."""
    pair = create_token_pair(user_id="u-1")
    async with _client(app) as client:
        missing = await client.get("/me")
        optional = await client.get("/maybe")
        garbage = await client.get("/maybe", headers={"Authorization": "Bearer not.a.jwt"})
        refresh = await client.get("/me", headers={"Authorization": f"Bearer {pair.refresh_token}"})
    assert optional.json() == {"id": None}
    for resp in (missing, garbage, refresh):
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == "Bearer"
        body = resp.json()
        assert body["success"] is False and body["code"] == "AUTHENTICATION_ERROR"
        assert "not.a.jwt" not in resp.text


async def test_api_key_without_resolver(configured) -> None:
    """Without a registered resolver an API key is refused with 401."""
    bare = FastAPI()
    install_exception_handlers(bare)

    @bare.get("/me")
    async def me(user_id: str = Depends(get_current_user_id)) -> dict:
        return {"id": user_id}

    async with _client(bare) as client:
        resp = await client.get("/me", headers={"X-API-Key": "ck_1.abcdefghijklmnopqrstuvwxyz"})
    assert resp.status_code == 401


async def test_app_state_service_is_preferred(app, settings) -> None:
    """Tokens are checked by app.state.security_service when the app sets one."""
    own = SecurityService(settings.model_copy())
    app.state.security_service = own
    token = own.create_token("u-own")
    await own.revoke_token(token)
    async with _client(app) as client:
        resp = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert resp.json()["details"] == {"reason": "revoked"}


async def test_authenticate_request_outside_dependencies(app) -> None:
    """authenticate_request reads Bearer / X-API-Key from a plain Request (for decorators)."""
    from crown_nexus.core.security.dependencies import authenticate_request

    @app.get("/raw")
    async def raw(request: Request) -> dict:
        user = await authenticate_request(request)
        return {"id": None if user is None else user["id"]}

    pair = create_token_pair(user_id="u-raw")
    async with _client(app) as client:
        assert (await client.get("/raw")).json() == {"id": None}
        bearer = await client.get("/raw", headers={"Authorization": f"Bearer {pair.access_token}"})
        keyed = await client.get("/raw", headers={"X-API-Key": app.state.test_api_key})
        bad = await client.get("/raw", headers={"Authorization": "Bearer nope"})
    assert bearer.json() == {"id": "u-raw"}
    assert keyed.json() == {"id": "key-owner"}
    assert bad.status_code == 401
