"""The middleware stack follows ``Settings`` / ``CROWN_NEXUS_*`` variables (issue 15 item 5).

Each test sets environment variables, builds ``Settings()`` from them and an app with
``setup_app``, and checks the behaviour over HTTP.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from crown_nexus.core.config import settings as loaded_settings
from crown_nexus.core.events import configure_events, get_event_service
from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.security.headers import DEFAULT_CONTENT_SECURITY_POLICY
from crown_nexus.integrations.fastapi import metrics_router, middleware_stack, setup_app
from crown_nexus.middleware._gzip import gzip_body
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

SECRET = "s" * 40


@pytest.fixture(autouse=True)
def _restore_shared_services() -> Iterator[None]:
    """Point the shared services back at the loaded settings after each test."""
    yield
    from crown_nexus.core.cache import configure_cache

    configure_cache(loaded_settings)
    events = get_event_service()
    configure_events(loaded_settings)
    events._configured = None


def _env_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """``Settings()`` read from ``CROWN_NEXUS_<NAME>`` variables (and nothing else of ours)."""
    monkeypatch.setenv("CROWN_NEXUS_SECRET_KEY", SECRET)
    for name, value in env.items():
        monkeypatch.setenv(f"CROWN_NEXUS_{name}", value)
    return Settings()


def _app(settings: Settings) -> FastAPI:
    app = FastAPI()

    @app.get("/items")
    async def items() -> dict[str, Any]:
        return {"items": ["x" * 40 for _ in range(40)]}

    @app.get("/tiny")
    async def tiny() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(5)
        return {"late": "yes"}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/upload/file")
    async def upload(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    setup_app(app, settings)
    app.include_router(metrics_router())
    return app


@pytest.fixture
async def make_client() -> AsyncIterator[Any]:
    """``await make_client(settings, **client_options)``: a client of a fresh app."""
    stack: list[Any] = []

    async def make(settings: Settings, **options: Any) -> httpx.AsyncClient:
        cm = app_client(_app(settings), **options)
        client = await cm.__aenter__()
        stack.append(cm)
        return client  # type: ignore[no-any-return]

    yield make
    for cm in reversed(stack):
        await cm.__aexit__(None, None, None)


async def test_rate_limit_default_sets_the_catch_all_rule(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    """CROWN_NEXUS_RATE_LIMIT_DEFAULT=2/60: the third request of a client is a 429."""
    client = await make_client(_env_settings(monkeypatch, RATE_LIMIT_DEFAULT="2/60"))
    statuses = [(await client.get("/tiny")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = await client.get("/tiny")
    assert refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused.headers["X-RateLimit-Limit"] == "2"


async def test_rate_limit_rules_replace_the_defaults(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    """CROWN_NEXUS_RATE_LIMIT_RULES: only the listed rules apply (here: /echo, 1 per minute)."""
    rules = [{"requests_per_window": 1, "window_seconds": 60, "path_pattern": "/echo"}]
    client = await make_client(_env_settings(monkeypatch, RATE_LIMIT_RULES=json.dumps(rules)))
    assert [(await client.post("/echo", content=b"a")).status_code for _ in range(2)] == [200, 429]
    assert {(await client.get("/tiny")).status_code for _ in range(5)} == {200}


def test_invalid_rate_limit_rules_refuse_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule the model refuses is a ConfigurationException at set-up, not a silent default."""
    settings = _env_settings(
        monkeypatch, RATE_LIMIT_RULES='[{"requests_per_window": 0, "window_seconds": 60}]'
    )
    with pytest.raises(ConfigurationException, match="RATE_LIMIT_RULES"):
        middleware_stack(settings)


async def test_trusted_proxies_key_rate_limits_by_forwarded_client(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    """Behind a trusted proxy each X-Forwarded-For client has its own budget; untrusted, not."""
    trusted = await make_client(
        _env_settings(
            monkeypatch, RATE_LIMIT_DEFAULT="1/60", TRUSTED_PROXIES='["127.0.0.1"]'
        )
    )
    first = await trusted.get("/tiny", headers={"X-Forwarded-For": "203.0.113.1"})
    second = await trusted.get("/tiny", headers={"X-Forwarded-For": "203.0.113.2"})
    again = await trusted.get("/tiny", headers={"X-Forwarded-For": "203.0.113.1"})
    assert (first.status_code, second.status_code, again.status_code) == (200, 200, 429)

    monkeypatch.setenv("CROWN_NEXUS_TRUSTED_PROXIES", "[]")
    untrusted = await make_client(Settings())
    first = await untrusted.get("/tiny", headers={"X-Forwarded-For": "203.0.113.1"})
    second = await untrusted.get("/tiny", headers={"X-Forwarded-For": "203.0.113.2"})
    assert (first.status_code, second.status_code) == (200, 429)  # a spoofed header is ignored


async def test_request_timeout_seconds(monkeypatch: pytest.MonkeyPatch, make_client: Any) -> None:
    """CROWN_NEXUS_REQUEST_TIMEOUT_SECONDS=0.2: a 5 s handler answers 504 TIMEOUT."""
    client = await make_client(_env_settings(monkeypatch, REQUEST_TIMEOUT_SECONDS="0.2"))
    resp = await client.get("/slow")
    assert resp.status_code == 504 and resp.json()["code"] == "TIMEOUT"


async def test_max_body_size_and_per_prefix_override(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    """CROWN_NEXUS_MAX_BODY_SIZE caps every route; CROWN_NEXUS_MAX_BODY_SIZES raises one prefix."""
    client = await make_client(
        _env_settings(monkeypatch, MAX_BODY_SIZE="100", MAX_BODY_SIZES='{"/upload": 1000}')
    )
    refused = await client.post("/echo", content=b"x" * 200)
    assert refused.status_code == 413 and refused.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert refused.json()["details"] == {"max_body_size": 100}
    assert (await client.post("/echo", content=b"x" * 100)).status_code == 200
    accepted = await client.post("/upload/file", content=b"x" * 200)
    assert accepted.status_code == 200 and accepted.json()["data"] == {"received": 200}
    too_big = await client.post("/upload/file", content=b"x" * 1001)
    assert too_big.status_code == 413 and too_big.json()["details"] == {"max_body_size": 1000}


def test_max_body_sizes_refuses_bad_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A prefix that is not a path or a non-positive size is refused when settings load."""
    from pydantic import ValidationError

    monkeypatch.setenv("CROWN_NEXUS_MAX_BODY_SIZES", '{"upload": 10}')
    with pytest.raises(ValidationError, match="max_body_sizes"):
        Settings(secret_key=SECRET)


async def test_slow_body_answers_408(monkeypatch: pytest.MonkeyPatch, make_client: Any) -> None:
    """CROWN_NEXUS_BODY_READ_TIMEOUT_SECONDS=0.3: a body trickling in for 2 s gets 408."""
    client = await make_client(_env_settings(monkeypatch, BODY_READ_TIMEOUT_SECONDS="0.3"))

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x"
            await asyncio.sleep(0.1)

    resp = await client.post("/echo", content=trickle())
    assert resp.status_code == 408
    body = resp.json()
    assert body["success"] is False and body["code"] == "REQUEST_TIMEOUT"
    assert body["details"] == {"body_timeout_seconds": 0.3}

    async def prompt() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x"
            await asyncio.sleep(0.01)

    assert (await client.post("/echo", content=prompt())).status_code == 200


async def test_compression_minimum_size_and_level(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    """CROWN_NEXUS_COMPRESSION_MINIMUM_SIZE / _LEVEL: what is gzipped, and how hard."""
    headers = {"Accept-Encoding": "gzip"}
    small = await make_client(
        _env_settings(monkeypatch, COMPRESSION_MINIMUM_SIZE="10", COMPRESSION_LEVEL="9")
    )
    resp = await small.get("/tiny", headers=headers)
    assert resp.headers.get("content-encoding") == "gzip"  # a ~100 byte envelope, over 10
    raw = await small.get("/items", headers=headers)
    assert raw.headers["content-encoding"] == "gzip"
    big = await make_client(
        _env_settings(monkeypatch, COMPRESSION_MINIMUM_SIZE="100000", COMPRESSION_LEVEL="1")
    )
    untouched = await big.get("/items", headers=headers)
    assert "content-encoding" not in untouched.headers

    fast = await make_client(
        _env_settings(monkeypatch, COMPRESSION_MINIMUM_SIZE="10", COMPRESSION_LEVEL="1")
    )
    # httpx decodes, so read the raw bytes: they are exactly the formatter's gzip of the
    # envelope at the configured level (deterministic: mtime 0), i.e. the level reached it
    for client, level in ((small, 9), (fast, 1)):
        async with client.stream("GET", "/items", headers=headers) as streamed:
            data = b"".join([chunk async for chunk in streamed.aiter_raw()])
        envelope = gzip.decompress(data)
        assert json.loads(envelope)["success"] is True
        assert data == gzip_body(envelope, level)
        assert data != gzip_body(envelope, 9 if level == 1 else 1)


async def test_content_security_policy(monkeypatch: pytest.MonkeyPatch, make_client: Any) -> None:
    """CROWN_NEXUS_CONTENT_SECURITY_POLICY replaces the policy; an empty value sends none."""
    default = await make_client(_env_settings(monkeypatch))
    assert (await default.get("/tiny")).headers["content-security-policy"] == (
        DEFAULT_CONTENT_SECURITY_POLICY
    )
    custom = await make_client(
        _env_settings(monkeypatch, CONTENT_SECURITY_POLICY="default-src 'none'")
    )
    assert (await custom.get("/tiny")).headers["content-security-policy"] == "default-src 'none'"
    none = await make_client(_env_settings(monkeypatch, CONTENT_SECURITY_POLICY=""))
    resp = await none.get("/tiny")
    assert "content-security-policy" not in resp.headers
    assert resp.headers["x-content-type-options"] == "nosniff"  # the other headers stay


async def test_cors_settings(monkeypatch: pytest.MonkeyPatch, make_client: Any) -> None:
    """CROWN_NEXUS_CORS_*: the preflight grants the configured methods, headers and max age."""
    client = await make_client(
        _env_settings(
            monkeypatch,
            CORS_ORIGINS='["https://app.example"]',
            CORS_ALLOW_METHODS='["GET", "POST"]',
            CORS_ALLOW_HEADERS='["X-Custom"]',
            CORS_MAX_AGE="1234",
            CORS_ALLOW_CREDENTIALS="false",
        )
    )
    resp = await client.options(
        "/echo",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-Custom",
        },
    )
    assert resp.status_code == 200
    assert resp.headers["access-control-max-age"] == "1234"
    assert resp.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-credentials" not in resp.headers
    denied = await client.options(
        "/echo",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "DELETE"},
    )
    assert denied.status_code == 400


async def test_metrics_disabled_removes_the_layer_and_the_route(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    """CROWN_NEXUS_METRICS_ENABLED=false: no MetricsMiddleware, and /metrics answers 404."""
    settings = _env_settings(monkeypatch, METRICS_ENABLED="false")
    assert "MetricsMiddleware" not in [cls.__name__ for cls, _ in middleware_stack(settings)]
    client = await make_client(settings)
    assert (await client.get("/tiny")).status_code == 200
    resp = await client.get("/metrics")
    assert resp.status_code == 404 and resp.json()["code"] == "RESOURCE_NOT_FOUND"

    on = _env_settings(monkeypatch, METRICS_ENABLED="true")
    assert "MetricsMiddleware" in [cls.__name__ for cls, _ in middleware_stack(on)]
    enabled = await make_client(on)
    await enabled.get("/tiny")
    exposition = await enabled.get("/metrics")  # development: open to anyone
    assert exposition.status_code == 200 and "http_requests_total" in exposition.text


def test_rate_limit_default_does_not_inherit_cached_rule_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retuned catch-all rule computes its own hot-path numbers, even when the default
    rule's were already cached by an earlier app (a model_copy would carry them over)."""
    from crown_nexus.integrations.fastapi import rate_limit_rules
    from crown_nexus.middleware.rate_limiting import DEFAULT_RULES

    assert DEFAULT_RULES[0].hot_params[1] == 1000  # cached on the shared default rule
    (rule,) = rate_limit_rules(_env_settings(monkeypatch, RATE_LIMIT_DEFAULT="2/60"))
    assert (rule.requests_per_window, rule.hot_params[1]) == (2, 2)
    assert rule.exclude_paths == DEFAULT_RULES[0].exclude_paths
