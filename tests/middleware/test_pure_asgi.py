"""Pure ASGI only: no BaseHTTPMiddleware in the package, yet users' own still work in our stack."""

from __future__ import annotations

import ast
import contextvars
from pathlib import Path

from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware

import crown_nexus
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

PACKAGE = Path(crown_nexus.__file__).parent


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "starlette.middleware.base"
        ):
            found.append(f"{path}:{node.lineno} imports {node.module}")
        elif isinstance(node, ast.Import):
            found += [
                f"{path}:{node.lineno} imports {a.name}"
                for a in node.names
                if a.name.startswith("starlette.middleware.base")
            ]
        elif isinstance(node, ast.Name) and node.id == "BaseHTTPMiddleware":
            found.append(f"{path}:{node.lineno} uses BaseHTTPMiddleware")
        elif isinstance(node, ast.Attribute) and node.attr == "BaseHTTPMiddleware":
            found.append(f"{path}:{node.lineno} uses BaseHTTPMiddleware")
    return found


def test_package_never_uses_base_http_middleware() -> None:
    """No module of crown_nexus imports starlette.middleware.base or uses BaseHTTPMiddleware."""
    files = list(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    offences = [o for f in files for o in _offences(f)]
    assert offences == []


def test_checker_catches_an_offence(tmp_path) -> None:
    """The checker above does flag such a module."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from starlette.middleware.base import BaseHTTPMiddleware\nclass M(BaseHTTPMiddleware): ...\n"
    )
    assert len(_offences(bad)) == 2


user_var: contextvars.ContextVar[str] = contextvars.ContextVar("user_var", default="unset")


class UserHeaderMiddleware(BaseHTTPMiddleware):
    """A user's own BaseHTTPMiddleware (guide §13 'Creating Custom Middleware')."""

    def __init__(self, app, option1: str = "default") -> None:
        super().__init__(app)
        self.option1 = option1

    async def dispatch(self, request, call_next):
        response = await call_next(request)
        response.headers["X-Custom-Header"] = self.option1
        return response


async def test_users_base_http_middleware_works_inside_our_stack(tmp_path) -> None:
    """A user's BaseHTTPMiddleware added after setup_app wraps our stack and still sees errors rendered."""
    app = FastAPI()
    setup_app(app, Settings())
    app.add_middleware(UserHeaderMiddleware, option1="value")

    @app.get("/ok")
    async def ok() -> dict[str, int]:
        return {"a": 1}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal")

    async with app_client(app) as client:
        resp = await client.get("/ok")
        assert resp.status_code == 200
        assert resp.headers["x-custom-header"] == "value"
        assert resp.json()["data"] == {"a": 1}
        resp = await client.get("/boom")
        assert resp.status_code == 500
        assert resp.headers["x-custom-header"] == "value"
        assert resp.json()["code"] == "INTERNAL_SERVER_ERROR"


class RequestIdEchoMiddleware(BaseHTTPMiddleware):
    """A user's BaseHTTPMiddleware reading our request context."""

    async def dispatch(self, request, call_next):
        from crown_nexus.logging import get_current_request_id

        seen = get_current_request_id()
        response = await call_next(request)
        response.headers["X-Seen-Request-Id"] = str(seen)
        return response


async def test_users_base_http_middleware_innermost_sees_context_and_errors() -> None:
    """Added before setup_app it sits inside ErrorHandler: sees the request id; errors still render."""
    app = FastAPI()
    app.add_middleware(RequestIdEchoMiddleware)
    setup_app(app, Settings())
    assert app.user_middleware[-1].cls is RequestIdEchoMiddleware

    @app.get("/ok")
    async def ok() -> dict[str, int]:
        return {"a": 1}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal")

    async with app_client(app) as client:
        resp = await client.get("/ok", headers={"X-Request-ID": "user-rid-1"})
        assert resp.status_code == 200
        assert resp.json()["data"] == {"a": 1}
        if "RequestContextMiddleware" in app.state.crown_nexus_middleware:
            assert resp.headers["x-seen-request-id"] == "user-rid-1"
        resp = await client.get("/boom")
        assert resp.status_code == 500
        assert resp.json()["code"] == "INTERNAL_SERVER_ERROR"
