"""Guide §8 (Rate Limiting System), its §13/§14 usages and SPEC §10, run as written with the user's objects supplied."""
# ruff: noqa: I001, E402, F401, F811, F841, E501, UP006, UP035 - the guide's blocks are copied verbatim (their imports and order)

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Dict

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from crown_nexus.core.rate_limiting import MemoryRateLimitBackend, RateLimitingService
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client, override_service
from tests.guide._support import assert_error_body, data_of, guide_app

logger = get_logger("app.guide.s08")


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


# --- §8 'Rate Limit Models', verbatim --------------------------------------------------------------

from crown_nexus.core.rate_limiting.models import RateLimitRule, RateLimitStrategy

# Create a basic rate limit rule
basic_rule = RateLimitRule(
    requests_per_window=100,
    window_seconds=60,
    strategy=RateLimitStrategy.IP
)

# Create a rule for specific paths
api_rule = RateLimitRule(
    requests_per_window=50,
    window_seconds=60,
    strategy=RateLimitStrategy.COMBINED,
    path_pattern="/api/v1/",
    exclude_paths=["/api/v1/health", "/api/v1/docs"]
)

# Create a rule with burst allowance
auth_rule = RateLimitRule(
    requests_per_window=20,
    window_seconds=60,
    strategy=RateLimitStrategy.IP,
    burst_multiplier=2.0,  # Allow up to 40 requests in bursts
    path_pattern="/api/v1/auth/"
)


def test_rule_paths() -> None:
    """The path rule applies under /api/v1/ except its excluded paths; the basic rule everywhere."""
    assert basic_rule.matches("/anything") and basic_rule.matches("/api/v1/health")
    assert api_rule.matches("/api/v1/users") and not api_rule.matches("/other")
    assert not api_rule.matches("/api/v1/health") and not api_rule.matches("/api/v1/docs")
    assert auth_rule.matches("/api/v1/auth/login") and not auth_rule.matches("/api/v1/users")


async def test_burst_allows_40(service: RateLimitingService) -> None:
    """'Allow up to 40 requests in bursts': 40 immediate requests pass, the 41st is refused."""
    key = f"burst:{uuid.uuid4().hex}"
    outcomes = [await service.is_rate_limited(key, auth_rule) for _ in range(41)]
    assert [limited for limited, _, _ in outcomes[:40]] == [False] * 40
    assert outcomes[40][0] is True


# --- §8 'Basic Usage with Middleware', verbatim ----------------------------------------------------


def middleware_app() -> FastAPI:
    """The guide's block; returns its ``app``."""
    from fastapi import FastAPI
    from crown_nexus.middleware.rate_limiting import RateLimitMiddleware
    from crown_nexus.core.rate_limiting.models import RateLimitRule, RateLimitStrategy

    app = FastAPI()

    # Add rate limiting middleware
    app.add_middleware(
        RateLimitMiddleware,
        rules=[
            RateLimitRule(
                requests_per_window=100,
                window_seconds=60,
                strategy=RateLimitStrategy.IP
            ),
            RateLimitRule(
                requests_per_window=20,
                window_seconds=60,
                strategy=RateLimitStrategy.IP,
                path_pattern="/api/v1/auth/"
            )
        ],
        use_redis=True,
        enable_headers=True,
        block_exceeding_requests=True
    )
    return app


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
    import httpx

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


# --- §8 'Using the Rate Limiting Service', verbatim ------------------------------------------------


def service_router() -> APIRouter:
    """The guide's endpoint on the user's ``router``."""
    router = APIRouter()

    from crown_nexus.core.dependency_manager import get_service
    from crown_nexus.core.rate_limiting import get_rate_limiting_service
    from crown_nexus.core.rate_limiting.models import RateLimitRule
    from crown_nexus.core.rate_limiting.exceptions import RateLimitExceededException

    # In FastAPI endpoints
    @router.post("/custom-rate-limited")
    async def custom_rate_limited_endpoint(
        request: Request,
        data: Dict[str, Any]
    ):
        # Get rate limiting service
        rate_limiting_service = get_rate_limiting_service()

        # Define custom rule for this endpoint
        rule = RateLimitRule(
            requests_per_window=5,
            window_seconds=60
        )

        # Get key for current request
        key = rate_limiting_service.get_key_for_request(request, rule)

        # Check rate limit
        is_limited, count, limit = await rate_limiting_service.is_rate_limited(key, rule)

        # Handle rate limit exceeded
        if is_limited:
            headers = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(rule.window_seconds),
                "Retry-After": str(rule.window_seconds)
            }

            raise RateLimitExceededException(
                message="Custom rate limit exceeded",
                details={"path": request.url.path},
                headers=headers,
                reset_seconds=rule.window_seconds
            )

        # Process the request
        # ...

        return {"success": True, "rate_limit": {"current": count, "limit": limit}}

    return router


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


# --- §8 'Manual Rate Limiting', verbatim -----------------------------------------------------------

from crown_nexus.core.rate_limiting.exceptions import RateLimitExceededException
from crown_nexus.core.rate_limiting.utils import check_rate_limit

async def send_email(user_id: str, subject: str, body: str):
    # Check if user has exceeded email sending limit
    key = f"email:{user_id}"
    is_limited, count, reset_seconds = await check_rate_limit(
        key=key,
        max_requests=10,  # 10 emails
        window_seconds=3600  # per hour
    )

    if is_limited:
        logger.warning(
            "Email rate limit exceeded",
            user_id=user_id,
            current_count=count,
            reset_seconds=reset_seconds
        )
        raise RateLimitExceededException(
            message="Email sending limit exceeded",
            details={"user_id": user_id, "limit": 10, "window": "1 hour"},
            reset_seconds=reset_seconds
        )

    # Send email
    # ...

    return {"success": True}


async def test_manual_rate_limiting(service: RateLimitingService) -> None:
    """Ten emails per hour per user; the eleventh raises with a Retry-After of whole seconds ≥ 1."""
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


# --- §8 'Exception Handling', verbatim (the user's own handler) ------------------------------------


def handler_app() -> FastAPI:
    """A setup_app app with the guide's handler registered and an endpoint that raises."""
    router = APIRouter()

    @router.get("/send")
    async def send() -> Any:
        for _ in range(11):
            await send_email("handler-user-" + suffix, "s", "b")
        return {"unreachable": True}

    app = guide_app(router, ENVIRONMENT="test")

    from fastapi import Request, HTTPException
    from crown_nexus.core.rate_limiting.exceptions import RateLimitExceededException

    @app.exception_handler(RateLimitExceededException)
    async def rate_limit_exception_handler(request: Request, exc: RateLimitExceededException):
        # Get response headers from exception
        headers = {}
        if isinstance(exc.details, dict) and "headers" in exc.details:
            headers = exc.details["headers"]

        return JSONResponse(
            status_code=429,
            content={
                "success": False,
                "message": str(exc),
                "code": "RATE_LIMIT_EXCEEDED",
                "retry_after": headers.get("Retry-After", "60")
            },
            headers=headers
        )

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


# --- §13 'RateLimitMiddleware', verbatim -----------------------------------------------------------


def s13_app() -> FastAPI:
    """The §13 block (imports from crown_nexus.middleware / crown_nexus.core.rate_limiting)."""
    from crown_nexus.middleware import RateLimitMiddleware
    from crown_nexus.core.rate_limiting import RateLimitRule, RateLimitStrategy
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(
        RateLimitMiddleware,
        rules=[
            RateLimitRule(
                requests_per_window=100,
                window_seconds=60,
                strategy=RateLimitStrategy.IP
            )
        ],
        use_redis=True
    )
    return app


async def test_s13_rate_limit_middleware() -> None:
    """§13: 100 requests per minute per IP; the 101st is refused with Retry-After."""
    app = _routes(s13_app())
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(f"192.0.2.{uuid.uuid4().int % 250}", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            codes = [(await client.get("/api/v1/items")).status_code for _ in range(101)]
            refused = await client.get("/api/v1/items")
    assert codes[:100] == [200] * 100 and codes[100] == 429
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


# --- §14 'Rate Limited Service Methods', verbatim --------------------------------------------------

from crown_nexus.core.dependency_manager import get_service

report = {"rows": [1, 2, 3]}


class AnalyticsService:
    def __init__(self, db):
        self.db = db
        self.logger = get_logger("app.domains.analytics.service")
        self.rate_limiting_service = get_service("rate_limiting_service")

    async def generate_report(self, user_id: str, report_type: str):
        """Generate a complex analytical report.

        This method is rate limited to prevent resource abuse.
        """
        self.logger.info("Generate report requested", user_id=user_id, report_type=report_type)

        # Define a rate limit rule for report generation
        rule = RateLimitRule(
            requests_per_window=5,  # 5 reports
            window_seconds=3600,    # per hour
            strategy=RateLimitStrategy.USER
        )

        # Use user ID directly as the key for consistent limits
        key = f"report_generation:{user_id}"

        # Check rate limit
        is_limited, count, limit = await self.rate_limiting_service.is_rate_limited(key, rule)

        if is_limited:
            self.logger.warning(
                "Report generation rate limit exceeded",
                user_id=user_id,
                report_type=report_type,
                count=count,
                limit=limit
            )

            raise RateLimitExceededException(
                message="Report generation limit exceeded",
                details={
                    "user_id": user_id,
                    "limit": limit,
                    "window": "1 hour",
                    "report_type": report_type
                }
            )

        # Generate report
        self.logger.info(
            "Generating report",
            user_id=user_id,
            report_type=report_type,
            remaining_limit=limit - count
        )

        # Complex report logic...

        self.logger.info("Report generated successfully", user_id=user_id, report_type=report_type)
        return report


async def test_rate_limited_service_method(service: RateLimitingService) -> None:
    """§14: five reports per user per hour; the sixth raises 429 with Retry-After and the details."""
    analytics = AnalyticsService(db=None)
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

from hypothesis import given, settings as hsettings, strategies as st


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


# ------------------------------------------------------------------------------------------------
# Each example run as written on a frozen-clock memory service (formerly tests/core/rate_limiting/test_guide_examples.py)
# Every guide §8 example (and the §13/§14 rate-limiting ones) run as written.
import asyncio
import time
from collections.abc import Iterator
from typing import Any, Dict  # noqa: UP035 - the guide's own spelling

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from crown_nexus.core.dependency_manager import override_service as override_registered_service
from crown_nexus.core.exceptions import install_exception_handlers
from crown_nexus.core.rate_limiting import MemoryRateLimitBackend, RateLimitingService
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings


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
    from crown_nexus.core.rate_limiting.models import RateLimitRule, RateLimitStrategy

    # Create a basic rate limit rule
    basic_rule = RateLimitRule(
        requests_per_window=100,
        window_seconds=60,
        strategy=RateLimitStrategy.IP
    )

    # Create a rule for specific paths
    api_rule = RateLimitRule(
        requests_per_window=50,
        window_seconds=60,
        strategy=RateLimitStrategy.COMBINED,
        path_pattern="/api/v1/",
        exclude_paths=["/api/v1/health", "/api/v1/docs"]
    )

    # Create a rule with burst allowance
    auth_rule = RateLimitRule(
        requests_per_window=20,
        window_seconds=60,
        strategy=RateLimitStrategy.IP,
        burst_multiplier=2.0,  # Allow up to 40 requests in bursts
        path_pattern="/api/v1/auth/"
    )
    assert basic_rule.matches("/anything")
    assert api_rule.matches("/api/v1/products") and not api_rule.matches("/api/v1/health")
    assert not api_rule.matches("/api/v1/docs/index.html")
    assert auth_rule.burst == 40 and auth_rule.matches("/api/v1/auth/login")


@pytest.mark.usefixtures("fresh_service")
async def test_middleware_example_on_a_frozen_clock() -> None:
    """§8 "Basic Usage with Middleware": the auth path gets 20, then 429 with headers."""
    from fastapi import FastAPI

    from crown_nexus.core.rate_limiting.models import RateLimitRule, RateLimitStrategy
    from crown_nexus.middleware.rate_limiting import RateLimitMiddleware

    app = FastAPI()

    # Add rate limiting middleware
    app.add_middleware(
        RateLimitMiddleware,
        rules=[
            RateLimitRule(
                requests_per_window=100,
                window_seconds=60,
                strategy=RateLimitStrategy.IP
            ),
            RateLimitRule(
                requests_per_window=20,
                window_seconds=60,
                strategy=RateLimitStrategy.IP,
                path_pattern="/api/v1/auth/"
            )
        ],
        use_redis=True,
        enable_headers=True,
        block_exceeding_requests=True
    )

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
    from fastapi import FastAPI

    from crown_nexus.core.rate_limiting import RateLimitRule, RateLimitStrategy
    from crown_nexus.middleware import RateLimitMiddleware

    app = FastAPI()
    app.add_middleware(
        RateLimitMiddleware,
        rules=[
            RateLimitRule(
                requests_per_window=100,
                window_seconds=60,
                strategy=RateLimitStrategy.IP
            )
        ],
        use_redis=True
    )

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
    from crown_nexus.core.dependency_manager import get_service  # noqa: F401 - as in the guide
    from crown_nexus.core.rate_limiting import get_rate_limiting_service
    from crown_nexus.core.rate_limiting.exceptions import RateLimitExceededException
    from crown_nexus.core.rate_limiting.models import RateLimitRule

    router = APIRouter()

    # In FastAPI endpoints
    @router.post("/custom-rate-limited")
    async def custom_rate_limited_endpoint(
        request: Request,
        data: Dict[str, Any]  # noqa: UP006 - as written in the guide
    ):
        # Get rate limiting service
        rate_limiting_service = get_rate_limiting_service()

        # Define custom rule for this endpoint
        rule = RateLimitRule(
            requests_per_window=5,
            window_seconds=60
        )

        # Get key for current request
        key = rate_limiting_service.get_key_for_request(request, rule)

        # Check rate limit
        is_limited, count, limit = await rate_limiting_service.is_rate_limited(key, rule)

        # Handle rate limit exceeded
        if is_limited:
            headers = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(rule.window_seconds),
                "Retry-After": str(rule.window_seconds)
            }

            raise RateLimitExceededException(
                message="Custom rate limit exceeded",
                details={"path": request.url.path},
                headers=headers,
                reset_seconds=rule.window_seconds
            )

        # Process the request
        # ...

        return {"success": True, "rate_limit": {"current": count, "limit": limit}}

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
    from crown_nexus.core.rate_limiting.exceptions import RateLimitExceededException
    from crown_nexus.core.rate_limiting.utils import check_rate_limit

    logger = get_logger("tests.email")

    async def send_email(user_id: str, subject: str, body: str):
        # Check if user has exceeded email sending limit
        key = f"email:{user_id}"
        is_limited, count, reset_seconds = await check_rate_limit(
            key=key,
            max_requests=10,  # 10 emails
            window_seconds=3600  # per hour
        )

        if is_limited:
            logger.warning(
                "Email rate limit exceeded",
                user_id=user_id,
                current_count=count,
                reset_seconds=reset_seconds
            )
            raise RateLimitExceededException(
                message="Email sending limit exceeded",
                details={"user_id": user_id, "limit": 10, "window": "1 hour"},
                reset_seconds=reset_seconds
            )

        # Send email
        # ...

        return {"success": True}

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
    from fastapi import HTTPException, Request  # noqa: F401 - as in the guide

    from crown_nexus.core.rate_limiting.exceptions import RateLimitExceededException

    app = FastAPI()

    @app.exception_handler(RateLimitExceededException)
    async def rate_limit_exception_handler(request: Request, exc: RateLimitExceededException):
        # Get response headers from exception
        headers = {}
        if isinstance(exc.details, dict) and "headers" in exc.details:
            headers = exc.details["headers"]

        return JSONResponse(
            status_code=429,
            content={
                "success": False,
                "message": str(exc),
                "code": "RATE_LIMIT_EXCEEDED",
                "retry_after": headers.get("Retry-After", "60")
            },
            headers=headers
        )

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
    from crown_nexus.core.dependency_manager import get_service
    from crown_nexus.core.rate_limiting.exceptions import RateLimitExceededException
    from crown_nexus.core.rate_limiting.models import RateLimitRule, RateLimitStrategy

    report = {"kind": "user-supplied report"}  # the user's own domain object

    class AnalyticsService:
        def __init__(self, db):
            self.db = db
            self.logger = get_logger("app.domains.analytics.service")
            self.rate_limiting_service = get_service("rate_limiting_service")

        async def generate_report(self, user_id: str, report_type: str):
            """Generate a complex analytical report.

            This method is rate limited to prevent resource abuse.
            """
            self.logger.info("Generate report requested", user_id=user_id, report_type=report_type)

            # Define a rate limit rule for report generation
            rule = RateLimitRule(
                requests_per_window=5,  # 5 reports
                window_seconds=3600,    # per hour
                strategy=RateLimitStrategy.USER
            )

            # Use user ID directly as the key for consistent limits
            key = f"report_generation:{user_id}"

            # Check rate limit
            is_limited, count, limit = await self.rate_limiting_service.is_rate_limited(key, rule)

            if is_limited:
                self.logger.warning(
                    "Report generation rate limit exceeded",
                    user_id=user_id,
                    report_type=report_type,
                    count=count,
                    limit=limit
                )

                raise RateLimitExceededException(
                    message="Report generation limit exceeded",
                    details={
                        "user_id": user_id,
                        "limit": limit,
                        "window": "1 hour",
                        "report_type": report_type
                    }
                )

            # Generate report
            self.logger.info(
                "Generating report",
                user_id=user_id,
                report_type=report_type,
                remaining_limit=limit - count
            )

            # Complex report logic...

            self.logger.info("Report generated successfully", user_id=user_id, report_type=report_type)
            return report

    service = AnalyticsService(db=None)
    for _ in range(5):
        assert await service.generate_report("u1", "sales") is report
    with pytest.raises(RateLimitExceededException) as info:
        await service.generate_report("u1", "sales")
    assert info.value.details["limit"] == 5
    assert int(info.value.headers["Retry-After"]) >= 1
