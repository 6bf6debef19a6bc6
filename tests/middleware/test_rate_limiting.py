"""RateLimitMiddleware: pure ASGI, path rules, headers, the 429 body, outages."""

from __future__ import annotations

import asyncio
import inspect
import time

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from crown_nexus.core.rate_limiting import (
    MemoryRateLimitBackend,
    RateLimitAlgorithm,
    RateLimitingService,
    RateLimitRule,
    RateLimitStrategy,
)
from crown_nexus.middleware import rate_limiting as rl_module
from crown_nexus.middleware.rate_limiting import RateLimitMiddleware
from crown_nexus.settings import Settings

BODY_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}


def memory_service(**kw) -> RateLimitingService:  # type: ignore[no-untyped-def]
    return RateLimitingService(MemoryRateLimitBackend(clock=lambda: 1010.0), settings=Settings(), **kw)


def build(rules, service=None, **kw) -> tuple[FastAPI, list[str]]:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    app = FastAPI()

    @app.get("/{path:path}")
    async def anything(path: str) -> dict[str, str]:
        calls.append(path)
        return {"path": path}

    @app.post("/own-headers")
    async def own_headers() -> JSONResponse:
        return JSONResponse({"own": True}, headers={"X-RateLimit-Limit": "999"})

    app.add_middleware(
        RateLimitMiddleware, rules=rules, service=service or memory_service(), **kw
    )
    return app, calls


def client(app: FastAPI, **kw) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, **kw), base_url="http://t")


def test_is_pure_asgi() -> None:
    """No BaseHTTPMiddleware: the module never imports starlette.middleware.base."""
    source = inspect.getsource(rl_module)
    assert "starlette.middleware.base" not in source
    assert "BaseHTTPMiddleware" not in [c.__name__ for c in RateLimitMiddleware.__mro__]


async def test_limit_then_429_with_spec_body_and_headers() -> None:
    """N requests pass with headers; N+1 gets 429, SPEC §3 body, Retry-After; app not called."""
    app, calls = build([RateLimitRule(requests_per_window=3, window_seconds=60)])
    async with client(app) as c:
        ok = [await c.get("/a") for _ in range(3)]
        refused = await c.get("/a")
    assert [r.status_code for r in ok] == [200, 200, 200]
    assert [r.headers["X-RateLimit-Remaining"] for r in ok] == ["2", "1", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == "3" for r in ok)
    assert "Retry-After" not in ok[0].headers
    assert refused.status_code == 429
    body = refused.json()
    assert set(body) == BODY_KEYS
    assert body["success"] is False and body["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["details"]["limit"] == 3 and body["details"]["window_seconds"] == 60
    retry = int(refused.headers["Retry-After"])
    assert retry >= 1 and body["details"]["retry_after"] == retry
    assert refused.headers["content-type"] == "application/json"
    assert refused.headers["RateLimit-Policy"] == '"default";q=3;w=60'
    assert len(calls) == 3


async def test_excluded_and_unmatched_paths_are_untouched() -> None:
    """Excluded and non-matching paths are never limited and get no rate-limit headers."""
    rule = RateLimitRule(
        requests_per_window=1, window_seconds=60, path_pattern="/api/",
        exclude_paths=["/api/health"],
    )
    app, _ = build([rule])
    async with client(app) as c:
        for _ in range(3):
            for path in ("/api/health", "/other"):
                r = await c.get(path)
                assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers
        assert (await c.get("/api/x")).status_code == 200
        assert (await c.get("/api/x")).status_code == 429


async def test_stricter_path_rule_and_global_rule_both_count() -> None:
    """The tightest matching rule governs the headers; each rule counts on its own."""
    rules = [
        RateLimitRule(requests_per_window=10, window_seconds=60),
        RateLimitRule(requests_per_window=2, window_seconds=60, path_pattern="/auth/", name="auth"),
    ]
    app, _ = build(rules)
    async with client(app) as c:
        first = await c.get("/auth/login")
        assert first.headers["RateLimit-Policy"] == '"auth";q=2;w=60'
        await c.get("/auth/login")
        assert (await c.get("/auth/login")).status_code == 429
        other = await c.get("/products")
    assert other.status_code == 200
    assert other.headers["X-RateLimit-Remaining"] == "6"  # 3 auth requests + this one


async def test_concurrent_requests_exactly_limit_pass() -> None:
    """60 concurrent requests, limit 10: exactly 10 reach the app."""
    app, calls = build([RateLimitRule(requests_per_window=10, window_seconds=60,
                                      algorithm=RateLimitAlgorithm.SLIDING_LOG)])
    async with client(app) as c:
        responses = await asyncio.gather(*(c.get("/c") for _ in range(60)))
    assert sorted(r.status_code for r in responses) == [200] * 10 + [429] * 50
    assert len(calls) == 10


async def test_clients_are_keyed_by_ip() -> None:
    """Two client addresses have separate limits."""
    service = memory_service()
    rules = [RateLimitRule(requests_per_window=1, window_seconds=60, strategy=RateLimitStrategy.IP)]
    app, _ = build(rules, service=service)
    async with client(app, client=("198.51.100.1", 1)) as one, client(app, client=("198.51.100.2", 1)) as two:
        assert (await one.get("/x")).status_code == 200
        assert (await one.get("/x")).status_code == 429
        assert (await two.get("/x")).status_code == 200


async def test_report_only_mode() -> None:
    """block_exceeding_requests=False lets the request through with remaining 0."""
    app, calls = build([RateLimitRule(requests_per_window=1, window_seconds=60)],
                       block_exceeding_requests=False)
    async with client(app) as c:
        await c.get("/r")
        r = await c.get("/r")
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "0"
    assert len(calls) == 2


async def test_headers_can_be_disabled_but_429_keeps_them() -> None:
    """enable_headers=False: no headers on admitted responses; the 429 still has Retry-After."""
    app, _ = build([RateLimitRule(requests_per_window=1, window_seconds=60)], enable_headers=False)
    async with client(app) as c:
        ok = await c.get("/h")
        refused = await c.get("/h")
    assert "X-RateLimit-Limit" not in ok.headers
    assert refused.status_code == 429 and "Retry-After" in refused.headers


async def test_app_headers_are_not_overwritten() -> None:
    """A header the application set itself is kept, not duplicated."""
    app, _ = build([RateLimitRule(requests_per_window=5, window_seconds=60)])
    async with client(app) as c:
        r = await c.post("/own-headers")
    assert r.headers.get_list("X-RateLimit-Limit") == ["999"]
    assert r.headers["X-RateLimit-Remaining"] == "4"


async def test_result_is_available_to_endpoints() -> None:
    """The governing result is stored in request.state.rate_limit."""
    app = FastAPI()

    @app.get("/state")
    async def state(request: Request) -> dict[str, int]:
        return {"remaining": request.state.rate_limit.remaining}

    app.add_middleware(RateLimitMiddleware, rules=[RateLimitRule(requests_per_window=4, window_seconds=60)],
                       service=memory_service())
    async with client(app) as c:
        assert (await c.get("/state")).json() == {"remaining": 3}


def test_rules_must_be_rules() -> None:
    """Passing something else as a rule is a TypeError at start-up."""
    with pytest.raises(TypeError, match="RateLimitRule"):
        RateLimitMiddleware(FastAPI(), rules=[{"requests_per_window": 1}])  # type: ignore[list-item]


async def test_fail_closed_outage_renders_503(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Redis down with fail_open=False: 503 with the SPEC §3 body, never a 500."""
    from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend

    service = RateLimitingService(
        RedisRateLimitBackend(redis_server.url, timeout=0.3), settings=Settings(), fail_open=False
    )
    app, calls = build([RateLimitRule(requests_per_window=5, window_seconds=60)], service=service)
    async with client(app) as c:
        assert (await c.get("/f")).status_code == 200
        redis_server.stop()
        r = await c.get("/f")
    assert r.status_code == 503
    assert set(r.json()) == BODY_KEYS and r.json()["code"] == "NETWORK_ERROR"
    assert "Redis" not in r.text and "Connection" not in r.text  # no internals leak
    assert len(calls) == 1
    await service.close()


async def test_redis_killed_mid_test_requests_still_served(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Redis killed: requests keep being served (fail open); restarted: Redis counts again."""
    from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend

    service = RateLimitingService(
        RedisRateLimitBackend(redis_server.url, timeout=0.3), settings=Settings(),
        recheck_interval=0.05,
    )
    app, _ = build([RateLimitRule(requests_per_window=50, window_seconds=60)], service=service)
    async with client(app) as c:
        assert (await c.get("/k")).status_code == 200
        redis_server.stop()
        during = [await c.get("/k") for _ in range(5)]
        assert all(r.status_code == 200 for r in during)
        assert service.degraded
        redis_server.start()
        await asyncio.sleep(0.1)
        after = await c.get("/k")
    assert after.status_code == 200 and not service.degraded
    assert after.headers["X-RateLimit-Remaining"] == "49"  # counted in the new Redis
    await service.close()


async def test_settings_build_a_service_per_app() -> None:
    """settings= builds the app's own service (memory when Redis is not configured)."""
    mw = RateLimitMiddleware(FastAPI(), rules=[RateLimitRule(requests_per_window=1, window_seconds=1)],
                             settings=Settings())
    assert isinstance(mw.service.backend, MemoryRateLimitBackend)
    private = RateLimitMiddleware(FastAPI(), use_redis=False)
    assert isinstance(private.service.backend, MemoryRateLimitBackend)
    assert private.rules[0].requests_per_window == 1000
    assert not private.rules[0].matches("/health")


async def test_each_app_has_its_own_counters_and_closes_them(redis_url: str) -> None:
    """Without a service, each app builds one for app.state.settings (Redis when configured)
    and closes it when its lifespan ends."""
    from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend

    def make(settings: Settings, name: str = "default") -> FastAPI:
        app = FastAPI()

        @app.get("/x")
        async def x() -> dict[str, bool]:
            return {"ok": True}

        app.state.settings = settings
        rule = RateLimitRule(requests_per_window=1, window_seconds=60, name=name)
        app.add_middleware(RateLimitMiddleware, rules=[rule])
        return app

    one, two = make(Settings()), make(Settings())
    async with client(one) as c1, client(two) as c2:
        assert (await c1.get("/x")).status_code == 200
        assert (await c1.get("/x")).status_code == 429
        assert (await c2.get("/x")).status_code == 200  # another app, other counters
    redis_app = make(Settings(REDIS_URI=redis_url), name=f"lifespan{time.monotonic_ns()}")
    # drive the ASGI lifespan protocol as a server does (startup, requests, shutdown)
    inbox: asyncio.Queue = asyncio.Queue()
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(
        redis_app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    )
    async with client(redis_app) as c:
        r = await c.get("/x")
        assert r.status_code == 200
        mw = redis_app.middleware_stack
        while not isinstance(mw, RateLimitMiddleware):
            mw = mw.app
        assert isinstance(mw.service.backend, RedisRateLimitBackend)
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert mw._service is None  # closed and dropped at shutdown


async def test_user_strategy_keys_by_bearer_token_subject() -> None:
    """USER rules key by the bearer token's subject; invalid tokens fall back to the IP."""
    from crown_nexus.core.security import create_token

    rule = RateLimitRule(requests_per_window=1, window_seconds=60, strategy=RateLimitStrategy.USER)
    app, _ = build([rule])
    alice = {"Authorization": f"Bearer {create_token('alice')}"}
    bob = {"Authorization": f"Bearer {create_token('bob')}"}
    forged = {"Authorization": "Bearer not-a-token"}
    async with client(app) as c:
        assert (await c.get("/u", headers=forged)).status_code == 200  # anonymous: by IP
        assert (await c.get("/u")).status_code == 429  # same IP, same anonymous key
        assert (await c.get("/u", headers=alice)).status_code == 200
        assert (await c.get("/u", headers=alice)).status_code == 429
        assert (await c.get("/u", headers=bob)).status_code == 200


async def test_admitted_requests_are_counted_exactly_when_read() -> None:
    """rate_limiting_requests_total{result="allowed"} counts every admitted request: the batched
    tally is written at 256, and whatever is pending when a reader looks (flush hook)."""
    from crown_nexus.core.metrics import get_metrics_service

    metrics = get_metrics_service()
    labels = {"path": "/counted/", "result": "allowed"}
    before = metrics.get_counter_sum("rate_limiting_requests_total", labels)
    rule = RateLimitRule(requests_per_window=10_000, window_seconds=60, path_pattern="/counted/")
    app, _ = build([rule])
    sent = 0
    async with client(app) as c:
        for total in (1, 256, 300):
            while sent < total:
                assert (await c.get("/counted/x")).status_code == 200
                sent += 1
            assert metrics.get_counter_sum("rate_limiting_requests_total", labels) - before == total
