"""CsrfMiddleware: cookie-authenticated unsafe requests need a session-bound CSRF token (guide §14)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from crown_nexus.core.security import configure_security
from crown_nexus.core.security.csrf import csrf_session_id
from crown_nexus.core.security.dependencies import (
    get_current_user_with_permissions,
    get_optional_user,
    register_api_key_resolver,
)
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.middleware.csrf import CsrfMiddleware
from crown_nexus.settings import Settings

SPEC_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}
SECRET = "csrf-middleware-test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def _reset_security():
    """The shared security service is reset after each test."""
    yield
    configure_security(None)


def _routes(app: FastAPI) -> dict[str, int]:
    calls = {"transfer": 0, "public": 0}

    @app.post("/transfer")
    async def transfer(
        request: Request, user: dict[str, Any] = Depends(get_current_user_with_permissions)
    ) -> dict[str, Any]:
        calls["transfer"] += 1
        body = await request.body()
        return {"user": user["id"], "auth_method": user["auth_method"], "body": body.decode()}

    @app.delete("/transfer")
    async def delete_transfer(
        user: dict[str, Any] = Depends(get_current_user_with_permissions),
    ) -> dict[str, Any]:
        calls["transfer"] += 1
        return {"user": user["id"]}

    @app.get("/me")
    async def me(user: dict[str, Any] = Depends(get_current_user_with_permissions)) -> dict:
        return {"user": user["id"], "auth_method": user["auth_method"]}

    @app.post("/public")
    async def public(user: dict[str, Any] | None = Depends(get_optional_user)) -> dict:
        calls["public"] += 1
        return {"user": None if user is None else user["id"]}

    return calls


def _app(**setup: Any) -> tuple[FastAPI, dict[str, int]]:
    app = FastAPI()
    calls = _routes(app)
    setup_app(app, Settings(secret_key=SECRET), manage_services=False, **setup)

    async def resolver(api_key: str, request: Request) -> dict[str, Any] | None:
        return {"id": "key-owner", "permissions": []} if api_key == "good-key" else None

    register_api_key_resolver(resolver, app=app)
    return app, calls


def _session(app: FastAPI, user_id: str = "u1") -> tuple[str, str]:
    """(access token, its CSRF token) of a new login of ``user_id``."""
    service = app.state.security_service
    pair = service.create_token_pair_sync(user_id, role="user", permissions=[])
    data = service.tokens.verify(pair.access_token, None)
    return pair.access_token, service.generate_csrf_token(csrf_session_id(data.sub, data.fam))


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver")


def _assert_csrf_403(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert set(body) == SPEC_KEYS
    assert body["success"] is False and body["code"] == "CSRF_TOKEN_INVALID"
    return body


async def test_cross_site_post_with_only_the_cookie_is_refused() -> None:
    """The attack: a forged form post carrying just the session cookie gets 403, handler not run."""
    app, calls = _app()
    access, _ = _session(app)
    async with _client(app) as client:
        resp = await client.post(
            "/transfer",
            content=b"to=attacker&amount=1000",
            headers={
                "Cookie": f"access_token={access}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": "https://evil.example",
                "Sec-Fetch-Site": "cross-site",
            },
        )
    assert _assert_csrf_403(resp)["details"]["reason"] == "missing"
    assert calls["transfer"] == 0


async def test_cookie_with_header_token_is_authenticated_as_cookie() -> None:
    """Cookie + X-CSRF-Token of the session passes; the caller is authenticated by the cookie."""
    app, calls = _app()
    access, csrf = _session(app)
    async with _client(app) as client:
        resp = await client.post(
            "/transfer",
            json={"amount": 1},
            headers={"Cookie": f"access_token={access}", "X-CSRF-Token": csrf},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["auth_method"] == "cookie"
        deleted = await client.delete(
            "/transfer", headers={"Cookie": f"access_token={access}", "X-CSRF-Token": csrf}
        )
        assert deleted.status_code == 200
        refused = await client.delete("/transfer", headers={"Cookie": f"access_token={access}"})
        _assert_csrf_403(refused)
    assert calls["transfer"] == 2


async def test_token_of_another_session_or_user_or_forged_is_refused() -> None:
    """A token made for another login (same user), another user, or a tampered one: 403."""
    app, calls = _app()
    access, csrf = _session(app, "u1")
    _, other_login = _session(app, "u1")
    _, other_user = _session(app, "u2")
    service = app.state.security_service
    by_user_id_only = service.generate_csrf_token("u1")
    tampered = csrf[:-2] + ("AA" if not csrf.endswith("AA") else "BB")
    async with _client(app) as client:
        for token in (other_login, other_user, by_user_id_only, tampered, "x", "a" * 300):
            resp = await client.post(
                "/transfer",
                json={},
                headers={"Cookie": f"access_token={access}", "X-CSRF-Token": token},
            )
            assert _assert_csrf_403(resp)["details"]["reason"] == "invalid", token
    assert calls["transfer"] == 0


async def test_form_field_token_passes_and_body_is_replayed() -> None:
    """An urlencoded form's csrf_token field is accepted and the app still reads the whole body."""
    app, calls = _app()
    access, csrf = _session(app)
    form = f"amount=5&csrf_token={csrf}&note=hello".encode()
    async with _client(app) as client:
        resp = await client.post(
            "/transfer",
            content=form,
            headers={
                "Cookie": f"access_token={access}",
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            },
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["body"] == form.decode()
        wrong = await client.post(
            "/transfer",
            content=b"amount=5&csrf_token=nope",
            headers={
                "Cookie": f"access_token={access}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        _assert_csrf_403(wrong)
        # a JSON body's "csrf_token" is not a form field: the header is required
        as_json = await client.post(
            "/transfer", json={"csrf_token": csrf}, headers={"Cookie": f"access_token={access}"}
        )
        _assert_csrf_403(as_json)
    assert calls["transfer"] == 1


async def test_oversized_form_without_header_is_refused() -> None:
    """A form over max_form_bytes is not searched: without the header it is 403."""
    app, calls = _app(middleware_options={"CsrfMiddleware": {"max_form_bytes": 64}})
    access, csrf = _session(app)
    async with _client(app) as client:
        resp = await client.post(
            "/transfer",
            content=f"csrf_token={csrf}&pad={'x' * 200}".encode(),
            headers={
                "Cookie": f"access_token={access}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
    assert _assert_csrf_403(resp)["details"]["reason"] == "form_too_large"
    assert calls["transfer"] == 0


async def test_bearer_and_api_key_requests_are_exempt() -> None:
    """Bearer and X-API-Key callers need no CSRF token, even when a session cookie is present."""
    app, calls = _app()
    access, _ = _session(app, "cookie-user")
    bearer, _ = _session(app, "bearer-user")
    async with _client(app) as client:
        resp = await client.post(
            "/transfer",
            json={},
            headers={"Authorization": f"Bearer {bearer}", "Cookie": f"access_token={access}"},
        )
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        assert data["auth_method"] == "bearer" and data["user"] == "bearer-user"
        keyed = await client.post(
            "/transfer",
            json={},
            headers={"X-API-Key": "good-key", "Cookie": f"access_token={access}"},
        )
        assert keyed.status_code == 200 and keyed.json()["data"]["auth_method"] == "api_key"
        # an Authorization header of another scheme is not a credential the app uses: checked
        basic = await client.post(
            "/transfer",
            json={},
            headers={"Authorization": "Basic dTpw", "Cookie": f"access_token={access}"},
        )
        _assert_csrf_403(basic)
    assert calls["transfer"] == 2


async def test_safe_methods_are_not_checked() -> None:
    """GET with only the session cookie authenticates (safe methods change nothing)."""
    app, _ = _app()
    access, _ = _session(app)
    async with _client(app) as client:
        resp = await client.get("/me", headers={"Cookie": f"access_token={access}"})
    assert resp.status_code == 200
    assert resp.json()["data"] == {"user": "u1", "auth_method": "cookie"}


async def test_invalid_or_revoked_cookie_authenticates_nothing() -> None:
    """A forged or logged-out session cookie is ignored: protected routes 401, public ones run anonymously."""
    app, calls = _app()
    access, csrf = _session(app)
    async with _client(app) as client:
        forged = await client.post(
            "/public", json={}, headers={"Cookie": "access_token=not-a-jwt"}
        )
        assert forged.status_code == 200 and forged.json()["data"] == {"user": None}
        await app.state.security_service.revoke_token(access, revoke_family=True)
        revoked = await client.post(
            "/transfer",
            json={},
            headers={"Cookie": f"access_token={access}", "X-CSRF-Token": csrf},
        )
        assert revoked.status_code == 401
        read = await client.get("/me", headers={"Cookie": f"access_token={access}"})
        assert read.status_code == 401
    assert calls == {"transfer": 0, "public": 1}


async def test_cookie_is_not_accepted_without_the_middleware() -> None:
    """An app that leaves CsrfMiddleware out never authenticates by the session cookie."""
    app, calls = _app(exclude_middleware=["CsrfMiddleware"])
    access, csrf = _session(app)
    async with _client(app) as client:
        resp = await client.post(
            "/transfer",
            json={},
            headers={"Cookie": f"access_token={access}", "X-CSRF-Token": csrf},
        )
        assert resp.status_code == 401
        read = await client.get("/me", headers={"Cookie": f"access_token={access}"})
        assert read.status_code == 401
    assert calls["transfer"] == 0


async def test_exempt_paths_are_not_checked() -> None:
    """exempt_paths (prefixes) pass without a token."""
    app, calls = _app(middleware_options={"CsrfMiddleware": {"exempt_paths": ["/transfer"]}})
    access, _ = _session(app)
    async with _client(app) as client:
        resp = await client.post("/transfer", json={}, headers={"Cookie": f"access_token={access}"})
    assert resp.status_code == 200
    assert calls["transfer"] == 1


def test_bad_max_form_bytes_is_refused() -> None:
    """max_form_bytes must be a non-negative int."""
    with pytest.raises(ValueError, match="max_form_bytes"):
        CsrfMiddleware(FastAPI(), max_form_bytes=-1)
