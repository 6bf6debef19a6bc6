"""Security review, finding 8: CORS ``*`` with credentials reflected any Origin.

Starlette answers ``allow_origins=["*"]`` with credentials by echoing the request's Origin
(``null`` included) with ``Access-Control-Allow-Credentials: true``. ``setup_app`` now refuses that
configuration; a listed origin still works and others get no CORS grant.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.security import configure_security
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.settings import Settings

SECRET = "cors-review-secret-0123456789-abcdefghij"


@pytest.fixture(autouse=True)
def _reset() -> Any:
    yield
    configure_security(None)


@pytest.mark.parametrize("origins", [["*"], ["null"], ["https://a.example", "*"], ["NULL"]])
def test_wildcard_or_null_with_credentials_is_refused(origins: list[str]) -> None:
    """The configuration that reflects every origin with credentials never starts."""
    with pytest.raises(ConfigurationException, match="CORS"):
        setup_app(FastAPI(), Settings(secret_key=SECRET, cors_origins=origins))


def test_regex_matching_everything_with_credentials_is_refused() -> None:
    """An origin regex that matches any site is the same hole."""
    with pytest.raises(ConfigurationException):
        setup_app(
            FastAPI(),
            Settings(secret_key=SECRET, cors_origins=["https://a.example"]),
            middleware_options={"CORSMiddleware": {"allow_origin_regex": ".*"}},
        )


def test_wildcard_without_credentials_is_allowed() -> None:
    """A public API may allow any origin when it does not allow credentials."""
    setup_app(
        FastAPI(),
        Settings(secret_key=SECRET, cors_origins=["*"]),
        middleware_options={"CORSMiddleware": {"allow_credentials": False}},
    )


async def test_listed_origin_only() -> None:
    """A listed origin is granted with credentials; an attacker's or ``null`` is not."""
    app = FastAPI()

    @app.get("/me")
    async def me() -> dict[str, str]:
        return {"id": "u"}

    setup_app(app, Settings(secret_key=SECRET, cors_origins=["https://app.example"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        good = await client.get("/me", headers={"Origin": "https://app.example"})
        assert good.headers["access-control-allow-origin"] == "https://app.example"
        assert good.headers["access-control-allow-credentials"] == "true"
        for origin in ("https://evil.example", "null"):
            bad = await client.get("/me", headers={"Origin": origin})
            assert "access-control-allow-origin" not in bad.headers, origin
