"""Every guide §8 example (and the §13/§14 rate-limiting ones) run as written."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, Dict  # noqa: UP035 - the guide's own spelling

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from crown_nexus.core.dependency_manager import override_service
from crown_nexus.core.exceptions import install_exception_handlers
from crown_nexus.core.rate_limiting import MemoryRateLimitBackend, RateLimitingService
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings


@pytest.fixture(autouse=True)
def fresh_service() -> Iterator[RateLimitingService]:
    """Each example gets its own in-memory rate limiting service on a frozen clock."""
    svc = RateLimitingService(MemoryRateLimitBackend(clock=lambda: 1010.0), settings=Settings())
    with override_service("rate_limiting_service", svc):
        yield svc


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


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


async def test_middleware_example() -> None:
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
