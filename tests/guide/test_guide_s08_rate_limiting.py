"""Guide §8 (Rate Limiting), its §13/§14 usages, run as written on memory and real Redis.

Each block is run from the guide itself (``tests/guide/_blocks.py``) with the user's objects, once per setup.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Dict  # noqa: UP035 - the guide's own spelling, handed to its blocks

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.dependency_manager import override_service as override_registered_service
from crown_nexus.core.exceptions import install_exception_handlers
from crown_nexus.core.rate_limiting import MemoryRateLimitBackend, RateLimitingService
from crown_nexus.core.rate_limiting.exceptions import RateLimitExceededException
from crown_nexus.core.rate_limiting.models import RateLimitRule, RateLimitStrategy
from crown_nexus.core.rate_limiting.utils import check_rate_limit
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client, override_service
from tests.guide._blocks import guide_block, section
from tests.guide._support import assert_error_body, data_of, guide_app

logger = get_logger("app.guide.s08")

# the §8 blocks, by a line of each
MODELS = "auth_rule = RateLimitRule("
MIDDLEWARE = "block_exceeding_requests=True"
SERVICE_ENDPOINT = '@router.post("/custom-rate-limited")'
MANUAL = "async def send_email(user_id: str, subject: str, body: str):"
HANDLER = "async def rate_limit_exception_handler("
# §13 'RateLimitMiddleware' and §14 'Rate Limited Service Methods'
S13_MIDDLEWARE = "from app.middleware import RateLimitMiddleware"
ANALYTICS = "async def generate_report(self, user_id: str, report_type: str):"


s08 = section(8)


def rules() -> dict[str, Any]:
    """§8 'Rate Limit Models': ``basic_rule``, ``api_rule``, ``auth_rule``."""
    return s08(MODELS).run()


def middleware_app() -> FastAPI:
    """§8 'Basic Usage with Middleware': its ``app``."""
    app: FastAPI = s08(MIDDLEWARE).run()["app"]
    return app


def s13_app() -> FastAPI:
    """§13 'RateLimitMiddleware' (imports from crown_nexus.middleware / crown_nexus.core.rate_limiting): its ``app``."""
    app: FastAPI = guide_block(13, S13_MIDDLEWARE).run()["app"]
    return app


def service_router() -> APIRouter:
    """§8 'Using the Rate Limiting Service': the guide's endpoint on the user's ``router``."""
    router = APIRouter()
    s08(SERVICE_ENDPOINT).run(router=router, Request=Request, Dict=Dict, Any=Any)  # noqa: UP006 - the typing names the guide uses
    return router


def manual_send_email(user_logger: Any = logger) -> Any:
    """§8 'Manual Rate Limiting' (the exception imported as the guide's previous block does): ``send_email``."""
    names = {"logger": user_logger, "RateLimitExceededException": RateLimitExceededException}
    return s08(MANUAL).run(**names)["send_email"]


def install_user_handler(app: FastAPI) -> None:
    """§8 'Exception Handling': the guide's own handler registered on the user's ``app``."""
    s08(HANDLER).run(app=app, JSONResponse=JSONResponse)


def analytics_service(report: Any) -> Any:
    """§14 'Rate Limited Service Methods': ``AnalyticsService``, its report logic returning ``report``."""
    names = {
        "get_logger": get_logger,
        "get_service": get_service,
        "RateLimitRule": RateLimitRule,
        "RateLimitStrategy": RateLimitStrategy,
        "RateLimitExceededException": RateLimitExceededException,
        "report": report,
    }
    return guide_block(14, ANALYTICS).run(**names)["AnalyticsService"]


@pytest.fixture(params=["memory", "redis"])
async def service(request: pytest.FixtureRequest) -> AsyncIterator[RateLimitingService]:
    """A fresh rate limiting service registered as "rate_limiting_service": memory, then real Redis."""
    if request.param == "redis":
        from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend

        backend: Any = RedisRateLimitBackend(request.getfixturevalue("redis_url"), prefix=f"guide8:{uuid.uuid4().hex}:")
    else:
        backend = MemoryRateLimitBackend()
    svc = RateLimitingService(backend, settings=Settings(ENVIRONMENT="test"))
    with override_service("rate_limiting_service", svc):
        yield svc
    await svc.close()


# --- §8 'Rate Limit Models' ------------------------------------------------------------------------


def test_rule_paths() -> None:
    """The path rule applies under /api/v1/ except its excluded paths; the basic rule everywhere."""
    ns = rules()
    basic_rule, api_rule, auth_rule = ns["basic_rule"], ns["api_rule"], ns["auth_rule"]
    assert basic_rule.matches("/anything") and basic_rule.matches("/api/v1/health")
    assert api_rule.matches("/api/v1/users") and not api_rule.matches("/other")
    assert not api_rule.matches("/api/v1/health") and not api_rule.matches("/api/v1/docs")
    assert auth_rule.matches("/api/v1/auth/login") and not auth_rule.matches("/api/v1/users")


async def test_burst_allows_40(service: RateLimitingService) -> None:
    """'Allow up to 40 requests in bursts': 40 immediate requests pass, the 41st is refused."""
    auth_rule = rules()["auth_rule"]
    key = f"burst:{uuid.uuid4().hex}"
    outcomes = [await service.is_rate_limited(key, auth_rule) for _ in range(41)]
    assert [limited for limited, _, _ in outcomes[:40]] == [False] * 40
    assert outcomes[40][0] is True


# --- §8 'Basic Usage with Middleware' ---------------------------------------------------------------


def _routes(app: FastAPI) -> FastAPI:
    @app.post("/api/v1/auth/login")
    async def login() -> dict[str, str]:
        return {"token": "t"}

    @app.get("/api/v1/items")
    async def items() -> list[int]:
        return [1, 2]

    return app


@pytest.mark.parametrize("store", ["default", "redis"])
async def test_middleware_example(store: str, request: pytest.FixtureRequest) -> None:
    """The 21st auth request gets 429 with the SPEC §3 body and rate limit headers; other paths still pass."""
    app = _routes(middleware_app())
    if store == "redis":  # the deployment's settings name the Redis server (as REDIS_URI would)
        app.state.settings = Settings(ENVIRONMENT="test", REDIS_URI=request.getfixturevalue("redis_url"))
    ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(ip, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            admitted = [await client.post("/api/v1/auth/login") for _ in range(20)]
            refused = await client.post("/api/v1/auth/login")
            other = await client.get("/api/v1/items")
            layer = app.middleware_stack
            while type(layer).__name__ != "RateLimitMiddleware":
                layer = layer.app
            backend_name = layer.service.backend.name
    assert backend_name == ("redis" if store == "redis" else "memory")
    assert [r.status_code for r in admitted] == [200] * 20
    assert admitted[0].headers["X-RateLimit-Limit"] == "20"
    assert admitted[0].headers["X-RateLimit-Remaining"] == "19"
    assert admitted[-1].headers["X-RateLimit-Remaining"] == "0"
    assert refused.status_code == 429
    body = refused.json()  # a bare app has no request context: request_id may be null (SPEC §3)
    assert body["request_id"] is None
    assert_error_body({**body, "request_id": "-"}, "RATE_LIMIT_EXCEEDED")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert other.status_code == 200 and other.json() == [1, 2]
    assert other.headers["X-RateLimit-Limit"] == "100"
    assert other.headers["X-RateLimit-Remaining"] == str(100 - 22)


# --- §8 'Using the Rate Limiting Service' -----------------------------------------------------------


async def test_service_endpoint(service: RateLimitingService) -> None:
    """Five calls pass with their count; the sixth is a 429 carrying the endpoint's headers and details."""
    app = guide_app(service_router(), ENVIRONMENT="test")
    async with app_client(app) as client:
        ok = [await client.post("/custom-rate-limited", json={"x": 1}) for _ in range(5)]
        refused = await client.post("/custom-rate-limited", json={"x": 1})
        bad = await client.post("/custom-rate-limited", json=[1, 2])
    assert [r.status_code for r in ok] == [200] * 5
    assert [data_of(r.json())["rate_limit"] for r in ok] == [{"current": n, "limit": 5} for n in range(1, 6)]
    assert refused.status_code == 429
    body = refused.json()
    assert_error_body(body, "RATE_LIMIT_EXCEEDED", "Custom rate limit exceeded")
    assert body["details"]["path"] == "/custom-rate-limited"
    assert body["details"]["headers"]["Retry-After"] == "60"
    assert refused.headers["Retry-After"] == "60"
    assert refused.headers["X-RateLimit-Limit"] == "5" and refused.headers["X-RateLimit-Reset"] == "60"
    assert bad.status_code == 422  # a client mistake is never a 500
    assert_error_body(bad.json(), "VALIDATION_ERROR")


# --- §8 'Manual Rate Limiting' ----------------------------------------------------------------------


async def test_manual_rate_limiting(service: RateLimitingService) -> None:
    """Ten emails per hour per user; the eleventh raises with a Retry-After of whole seconds ≥ 1."""
    send_email = manual_send_email()
    user = f"u-{uuid.uuid4().hex}"
    for _ in range(10):
        assert await send_email(user, "hi", "body") == {"success": True}
    with pytest.raises(RateLimitExceededException) as info:
        await send_email(user, "hi", "body")
    exc = info.value
    assert exc.status_code == 429 and exc.code == "RATE_LIMIT_EXCEEDED"
    retry = int(exc.headers["Retry-After"])
    assert 1 <= retry <= 3600
    assert exc.details["headers"]["Retry-After"] == exc.headers["Retry-After"]
    assert exc.details["user_id"] == user and exc.details["limit"] == 10
    assert await send_email(f"other-{user}", "hi", "body") == {"success": True}  # per user


async def test_check_rate_limit_shape(service: RateLimitingService) -> None:
    """SPEC §10: check_rate_limit returns (is_limited, count, reset_seconds); is_rate_limited (is_limited, count, limit)."""
    key = f"shape:{uuid.uuid4().hex}"
    first = await check_rate_limit(key=key, max_requests=2, window_seconds=60)
    second = await check_rate_limit(key=key, max_requests=2, window_seconds=60)
    third = await check_rate_limit(key=key, max_requests=2, window_seconds=60)
    assert (first[0], first[1]) == (False, 1) and (second[0], second[1]) == (False, 2)
    assert third[0] is True and third[1] == 2 and 1 <= third[2] <= 60
    assert all(isinstance(v, int) for v in (*first[1:], *third[1:]))
    rule = RateLimitRule(requests_per_window=3, window_seconds=60)
    assert await service.is_rate_limited(key, rule) == (False, 1, 3)


# --- §8 'Exception Handling' (the user's own handler) -----------------------------------------------


def handler_app() -> FastAPI:
    """A setup_app app with the guide's handler registered and an endpoint that raises."""
    router = APIRouter()
    send_email = manual_send_email()

    @router.get("/send")
    async def send() -> Any:
        for _ in range(11):
            await send_email("handler-user-" + suffix, "s", "b")
        return {"unreachable": True}

    app = guide_app(router, ENVIRONMENT="test")
    install_user_handler(app)
    return app


suffix = uuid.uuid4().hex


async def test_user_exception_handler(service: RateLimitingService) -> None:
    """The user's handler reads the headers from details (SPEC §10) and sends Retry-After."""
    app = handler_app()
    async with app_client(app) as client:
        response = await client.get("/send")
    assert response.status_code == 429
    body = response.json()
    assert body["message"] == "Email sending limit exceeded"
    assert body["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["retry_after"] == response.headers["Retry-After"]
    assert int(body["retry_after"]) >= 1


# --- §8 'Integration with Metrics' -----------------------------------------------------------------


async def test_metrics_recorded(service: RateLimitingService) -> None:
    """A refused check and middleware traffic show up in the metric names the guide lists."""
    from crown_nexus.core.metrics import get_metrics_service

    metrics = get_metrics_service()
    before_exceeded = metrics.get_counter_sum("rate_limit_exceeded_total")
    before_checks = metrics.get_counter_sum("rate_limiting_checks_total")
    before_requests = metrics.get_counter_sum("rate_limiting_requests_total")
    key = f"m:{uuid.uuid4().hex}"
    rule = RateLimitRule(requests_per_window=1, window_seconds=60)
    await service.is_rate_limited(key, rule)
    await service.is_rate_limited(key, rule)
    app = _routes(middleware_app())
    async with app_client(app) as client:
        assert (await client.get("/api/v1/items")).status_code == 200
    from crown_nexus.core.rate_limiting import _metrics

    _metrics.flush()  # allowed checks are tallied in batches (flushed within 1 s); read them now
    assert metrics.get_counter_sum("rate_limiting_checks_total") >= before_checks + 2
    assert metrics.get_counter_sum("rate_limit_exceeded_total") >= before_exceeded + 1
    assert metrics.get_counter_sum("rate_limiting_requests_total") >= before_requests + 1
    assert metrics.get_metric("rate_limiting_middleware_duration_seconds") is not None
    assert metrics.get_metric("rate_limiting_check_duration_seconds") is not None


# --- §13 'RateLimitMiddleware' ---------------------------------------------------------------------


async def test_s13_rate_limit_middleware() -> None:
    """§13: 100 requests per minute per IP; the 101st is refused with Retry-After."""
    app = _routes(s13_app())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(f"192.0.2.{uuid.uuid4().int % 250}", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            codes = [(await client.get("/api/v1/items")).status_code for _ in range(101)]
            refused = await client.get("/api/v1/items")
    assert codes[:100] == [200] * 100 and codes[100] == 429
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


# --- §14 'Rate Limited Service Methods' -------------------------------------------------------------

report = {"rows": [1, 2, 3]}


async def test_rate_limited_service_method(service: RateLimitingService) -> None:
    """§14: five reports per user per hour; the sixth raises 429 with Retry-After and the details."""
    analytics = analytics_service(report)(db=None)
    user = f"u-{uuid.uuid4().hex}"
    for _ in range(5):
        assert await analytics.generate_report(user, "sales") is report
    with pytest.raises(RateLimitExceededException) as info:
        await analytics.generate_report(user, "sales")
    exc = info.value
    assert exc.status_code == 429 and int(exc.headers["Retry-After"]) >= 1
    assert exc.details["limit"] == 5 and exc.details["report_type"] == "sales"
    assert exc.details["headers"]["Retry-After"] == exc.headers["Retry-After"]
    assert await analytics.generate_report(f"x{user}", "sales") is report


# --- 'Support for different rate limit strategies (IP-based, user-based, combined)' ----------------


async def test_user_strategy_counts_each_user_separately() -> None:
    """Under setup_app, a USER rule keys authenticated callers by user id (bearer token), anonymous ones by IP."""
    from crown_nexus.core.security import create_token
    from crown_nexus.integrations.fastapi import setup_app

    app = _routes(FastAPI())
    setup_app(
        app,
        Settings(ENVIRONMENT="production", secret_key="r" * 64),
        middleware_options={
            "RateLimitMiddleware": {
                "rules": [RateLimitRule(requests_per_window=2, window_seconds=60, strategy=RateLimitStrategy.USER, path_pattern="/api/v1/")],
                "use_redis": False,
            }
        },
    )
    async with app_client(app) as client:
        ann = {"Authorization": f"Bearer {create_token('ann')}"}
        bob = {"Authorization": f"Bearer {create_token('bob')}"}
        ann_codes = [(await client.get("/api/v1/items", headers=ann)).status_code for _ in range(3)]
        bob_codes = [(await client.get("/api/v1/items", headers=bob)).status_code for _ in range(3)]
        anon_codes = [(await client.get("/api/v1/items")).status_code for _ in range(3)]
        forged = await client.get("/api/v1/items", headers={"Authorization": "Bearer forged"})
    assert ann_codes == [200, 200, 429]
    assert bob_codes == [200, 200, 429]
    assert anon_codes == [200, 200, 429]
    assert forged.status_code == 429  # an invalid token is anonymous: counted with the IP


# --- SPEC §10: Retry-After is always whole seconds, at least 1 -------------------------------------


@hsettings(max_examples=150, deadline=None)
@given(
    header=st.one_of(st.none(), st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True).map(str), st.integers(-10**6, 10**9).map(str)),
    reset=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**9)),
)
def test_retry_after_always_whole_seconds(header: str | None, reset: float | None) -> None:
    """Whatever Retry-After header or reset_seconds a caller passes, the exception sends whole seconds ≥ 1, in both places."""
    headers = None if header is None else {"Retry-After": header}
    exc = RateLimitExceededException(message="m", headers=headers, reset_seconds=reset)
    value = exc.headers["Retry-After"]
    assert value.isdigit() and int(value) >= 1, value
    assert exc.details["headers"]["Retry-After"] == value


# --- the same blocks on a second setup: an in-memory service on a frozen clock, bare FastAPI apps ---


@pytest.fixture
def fresh_service() -> Iterator[RateLimitingService]:
    """Each example gets its own in-memory rate limiting service on a frozen clock."""
    svc = RateLimitingService(MemoryRateLimitBackend(clock=lambda: 1010.0), settings=Settings())
    with override_registered_service("rate_limiting_service", svc):
        yield svc


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.mark.usefixtures("fresh_service")
def test_rate_limit_models_example() -> None:
    """§8 "Rate Limit Models": the three rules build, with the burst selecting the token bucket."""
    ns = rules()
    basic_rule, api_rule, auth_rule = ns["basic_rule"], ns["api_rule"], ns["auth_rule"]
    assert basic_rule.matches("/anything")
    assert api_rule.matches("/api/v1/products") and not api_rule.matches("/api/v1/health")
    assert not api_rule.matches("/api/v1/docs/index.html")
    assert auth_rule.burst == 40 and auth_rule.matches("/api/v1/auth/login")


@pytest.mark.usefixtures("fresh_service")
async def test_middleware_example_on_a_frozen_clock() -> None:
    """§8 "Basic Usage with Middleware": the auth path gets 20, then 429 with headers."""
    app = middleware_app()

    @app.get("/api/v1/auth/login")
    async def login() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/api/v1/items")
    async def items() -> dict[str, bool]:
        return {"ok": True}

    # the middleware's own memory counters use the monotonic clock: stay clear of a bucket edge
    left = 60 - time.monotonic() % 60
    if left < 3:
        await asyncio.sleep(left + 0.05)
    async with client_for(app) as client:
        statuses = [(await client.get("/api/v1/auth/login")).status_code for _ in range(20)]
        assert statuses == [200] * 20
        refused = await client.get("/api/v1/auth/login")
        other = await client.get("/api/v1/items")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Limit"] == "20"
    assert refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert other.status_code == 200
    assert other.headers["X-RateLimit-Limit"] == "100"
    assert other.headers["X-RateLimit-Remaining"] == "78"  # 21 auth requests + this one


@pytest.mark.usefixtures("fresh_service")
async def test_middleware_section_13_example() -> None:
    """§13 "RateLimitMiddleware": imports from crown_nexus.middleware and the package root."""
    app = s13_app()

    @app.get("/")
    async def root() -> dict[str, int]:
        return {"n": 1}

    async with client_for(app) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["RateLimit-Policy"] == '"default";q=100;w=60'
    assert response.headers["RateLimit"].startswith('"default";r=99;t=')


@pytest.mark.usefixtures("fresh_service")
async def test_service_endpoint_example() -> None:
    """§8 "Using the Rate Limiting Service": 5 pass, the 6th is a 429 with the guide's headers."""
    router = service_router()
    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(router)
    async with client_for(app) as client:
        ok = [await client.post("/custom-rate-limited", json={"a": 1}) for _ in range(5)]
        refused = await client.post("/custom-rate-limited", json={"a": 1})
    assert [r.json()["rate_limit"]["current"] for r in ok] == [1, 2, 3, 4, 5]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.headers["X-RateLimit-Limit"] == "5"
    body = refused.json()
    assert body["success"] is False and body["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["message"] == "Custom rate limit exceeded"
    assert body["details"]["path"] == "/custom-rate-limited"
    assert set(body) == {"success", "message", "code", "details", "request_id", "timestamp"}


@pytest.mark.usefixtures("fresh_service")
async def test_manual_rate_limiting_example() -> None:
    """§8 "Manual Rate Limiting": the 11th email in an hour raises with reset_seconds."""
    send_email = manual_send_email(get_logger("tests.email"))
    for _ in range(10):
        assert await send_email("u1", "s", "b") == {"success": True}
    with pytest.raises(RateLimitExceededException) as info:
        await send_email("u1", "s", "b")
    exc = info.value
    assert exc.status_code == 429
    assert 1 <= int(exc.headers["Retry-After"]) <= 7200
    assert exc.details["headers"]["Retry-After"] == exc.headers["Retry-After"]
    assert await send_email("u2", "s", "b") == {"success": True}


@pytest.mark.usefixtures("fresh_service")
async def test_exception_handling_example() -> None:
    """§8 "Exception Handling": the guide's own handler reads details['headers'] as written."""
    app = FastAPI()
    install_user_handler(app)

    @app.get("/limited")
    async def limited() -> None:
        raise RateLimitExceededException(message="Too many", reset_seconds=12.2)

    async with client_for(app) as client:
        response = await client.get("/limited")
    assert response.status_code == 429
    assert response.json() == {
        "success": False, "message": "Too many", "code": "RATE_LIMIT_EXCEEDED", "retry_after": "13"
    }
    assert response.headers["Retry-After"] == "13"


@pytest.mark.usefixtures("fresh_service")
async def test_rate_limited_service_methods_example() -> None:
    """§14 "Rate Limited Service Methods": the 6th report in an hour raises."""
    report = {"kind": "user-supplied report"}  # the user's own domain object
    AnalyticsService = analytics_service(report)
    service = AnalyticsService(db=None)
    for _ in range(5):
        assert await service.generate_report("u1", "sales") is report
    with pytest.raises(RateLimitExceededException) as info:
        await service.generate_report("u1", "sales")
    assert info.value.details["limit"] == 5
    assert int(info.value.headers["Retry-After"]) >= 1
