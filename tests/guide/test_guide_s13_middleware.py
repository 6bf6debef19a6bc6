"""Guide §13 (Middleware System) and SPEC §10 (order, error bodies), run as written with the user's objects supplied.

§13's RateLimitMiddleware block runs in test_guide_s08_rate_limiting.py; its logging and cache
integration blocks in the §1 and §9 files.
"""
# ruff: noqa: I001, E402, F401, F811, F841, E501, UP035 - the guide's blocks are copied verbatim

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.middleware.base import BaseHTTPMiddleware

from crown_nexus.core.exceptions import BusinessException
from crown_nexus.core.metrics import MetricsService
from crown_nexus.logging import get_current_request_id
from crown_nexus.testing import app_client, capture_logs, override_service
from tests.guide._support import assert_error_body, data_of, guide_app

BIG = "x" * 5000


def routes(app: FastAPI) -> FastAPI:
    """The user's endpoints: a small and a big JSON body, an app error, a crash, a slow one, a header echo."""

    @app.get("/small")
    async def small(request: Request) -> dict[str, Any]:
        return {"request_id": get_current_request_id(), "state_id": getattr(request.state, "request_id", None)}

    @app.get("/big")
    async def big() -> dict[str, str]:
        return {"blob": BIG}

    @app.post("/items")
    async def create() -> dict[str, str]:
        return {"created": "yes"}

    @app.get("/business")
    async def business() -> None:
        raise BusinessException("Out of stock", details={"sku": "A1"})

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret dsn postgres://admin:pw@db")

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(0.5)
        return {"slow": True}

    @app.get("/search")
    async def search(q: str = "") -> dict[str, str]:
        return {"q": q}

    @app.get("/text")
    async def text() -> PlainTextResponse:
        return PlainTextResponse("plain")

    return app


# --- the guide's per-middleware blocks, verbatim ---------------------------------------------------


def request_context_app() -> FastAPI:
    from crown_nexus.middleware import RequestContextMiddleware
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(RequestContextMiddleware)
    return app


async def test_request_context_middleware() -> None:
    """A sane X-Request-ID is echoed and seen by the endpoint (context and request.state); otherwise one is generated."""
    app = routes(request_context_app())
    async with app_client(app) as client:
        given = await client.get("/small", headers={"X-Request-ID": "req-1"})
        fresh = await client.get("/small")
        hostile = await client.get("/small", headers={"X-Request-ID": "bad id\twith spaces" + "x" * 200})
    assert given.headers["X-Request-ID"] == "req-1"
    assert given.json() == {"request_id": "req-1", "state_id": "req-1"}
    generated = fresh.headers["X-Request-ID"]
    assert uuid.UUID(generated) and fresh.json()["request_id"] == generated
    assert hostile.headers["X-Request-ID"] != "bad id\twith spaces" + "x" * 200
    assert hostile.json()["request_id"] == hostile.headers["X-Request-ID"]


def tracing_app() -> FastAPI:
    from crown_nexus.middleware import TracingMiddleware
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(TracingMiddleware, service_name="api-service")
    return app


async def test_tracing_middleware() -> None:
    """An incoming traceparent is continued (same trace id, new span); without one a new trace starts."""
    app = routes(tracing_app())
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with app_client(app) as client:
        continued = await client.get("/small", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        new = await client.get("/small")
    version, tid, span, flags = continued.headers["traceparent"].split("-")
    assert (version, tid) == ("00", trace_id) and span != "00f067aa0ba902b7" and len(span) == 16
    assert new.headers["traceparent"].split("-")[1] != trace_id


def metrics_app() -> FastAPI:
    from crown_nexus.middleware import MetricsMiddleware
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(MetricsMiddleware, ignore_paths=["/metrics", "/health"])
    return app


async def test_metrics_middleware() -> None:
    """Requests are counted by method, endpoint and status; ignored paths are not."""
    metrics = MetricsService()
    app = routes(metrics_app())

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    with override_service("metrics_service", metrics):
        async with app_client(app) as client:
            for _ in range(2):
                await client.get("/small")
            await client.get("/health")
            await client.get("/nowhere")
    assert metrics.get_counter_sum("http_requests_total", {"method": "GET", "status_code": "200"}) == 2
    assert metrics.get_counter_sum("http_requests_total", {"status_code": "404"}) == 1
    endpoints = {s.labels["endpoint"] for s in metrics._matching("http_requests_total", None)}
    assert not any("health" in e for e in endpoints)
    assert metrics.get_histogram_quantile("http_request_duration_seconds", 0.5) > 0


def security_app() -> FastAPI:
    from crown_nexus.middleware import SecurityHeadersMiddleware, SecureRequestMiddleware
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(SecurityHeadersMiddleware, content_security_policy="default-src 'self'")
    app.add_middleware(SecureRequestMiddleware, block_suspicious_requests=True)
    return app


async def test_security_middleware() -> None:
    """Responses carry the security headers with the given CSP; suspicious URLs are refused with the SPEC §3 body."""
    app = routes(security_app())
    async with app_client(app) as client:
        ok = await client.get("/search", params={"q": "lamps"})
        xss = await client.get("/search", params={"q": "<script>alert(1)</script>"})
        sqli = await client.get("/search", params={"q": "' OR 1=1 --"})
        traversal = await client.get("/search", params={"q": "../../etc/passwd"})
    assert ok.status_code == 200 and ok.json() == {"q": "lamps"}
    assert ok.headers["Content-Security-Policy"] == "default-src 'self'"
    assert ok.headers["X-Content-Type-Options"] == "nosniff"
    for refused in (xss, sqli, traversal):
        assert refused.status_code == 400, refused.text
        body = refused.json()
        assert set(body) == {"success", "message", "code", "details", "request_id", "timestamp"}
        assert body["success"] is False and "script" not in body["message"]


def timeout_app(seconds: float | None = None) -> FastAPI:
    from crown_nexus.middleware import TimeoutMiddleware
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(TimeoutMiddleware, timeout_seconds=30.0)
    if seconds is not None:  # the same block with a test-sized limit
        app = FastAPI()
        app.add_middleware(TimeoutMiddleware, timeout_seconds=seconds)
    return app


async def test_timeout_middleware() -> None:
    """Within the limit the response passes; past it the request is cancelled with a 504 SPEC body."""
    async with app_client(routes(timeout_app())) as client:
        assert (await client.get("/slow")).json() == {"slow": True}
    async with app_client(routes(timeout_app(0.05))) as client:
        started = time.monotonic()
        late = await client.get("/slow")
        elapsed = time.monotonic() - started
        fast = await client.get("/small")
    assert late.status_code == 504 and elapsed < 0.4
    body = late.json()
    assert body["success"] is False and body["code"]
    assert fast.status_code == 200


def cache_control_app() -> FastAPI:
    from crown_nexus.middleware import CacheControlMiddleware
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(CacheControlMiddleware)
    return app


async def test_cache_control_middleware() -> None:
    """GETs get a Cache-Control header; writes are never cached."""
    async with app_client(routes(cache_control_app())) as client:
        get = await client.get("/small")
        post = await client.post("/items")
    assert get.headers.get("Cache-Control")
    assert "no-store" in post.headers["Cache-Control"] or "no-cache" in post.headers["Cache-Control"]


def formatter_app() -> FastAPI:
    from crown_nexus.middleware import ResponseFormatterMiddleware
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(ResponseFormatterMiddleware)
    return app


async def test_response_formatter_middleware() -> None:
    """JSON bodies are wrapped as {success, data, meta}; non-JSON bodies are left alone."""
    async with app_client(routes(formatter_app())) as client:
        small = await client.post("/items")
        text = await client.get("/text")
    body = small.json()
    assert body["success"] is True and body["data"] == {"created": "yes"}
    assert set(body["meta"]) >= {"request_id", "timestamp"}
    assert text.text == "plain"


def compression_app() -> FastAPI:
    from crown_nexus.middleware import CompressionMiddleware
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(CompressionMiddleware, minimum_size=1000)
    return app


async def test_compression_middleware() -> None:
    """Bodies of at least minimum_size are gzipped for clients that accept it; small ones are not."""
    app = routes(compression_app())
    async with app_client(app) as client:
        big = await client.get("/big", headers={"Accept-Encoding": "gzip"})
        small = await client.get("/small", headers={"Accept-Encoding": "gzip"})
        plain = await client.get("/big", headers={"Accept-Encoding": "identity"})
    assert big.headers["Content-Encoding"] == "gzip" and big.json() == {"blob": BIG}
    assert int(big.headers.get("Content-Length", "0") or 0) < 1000 or "Content-Length" not in big.headers
    assert "Content-Encoding" not in small.headers
    assert "Content-Encoding" not in plain.headers and plain.json() == {"blob": BIG}


def error_handler_app() -> FastAPI:
    from crown_nexus.middleware import ErrorHandlerMiddleware
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(ErrorHandlerMiddleware)
    return app


async def test_error_handler_middleware() -> None:
    """Alone on a bare app: an AppException gets its status and body; a crash a 500 body."""
    async with app_client(routes(error_handler_app())) as client:
        business = await client.get("/business")
        crash = await client.get("/crash")
    assert business.status_code == 400
    assert business.json()["code"] == "BUSINESS_LOGIC_ERROR" and business.json()["message"] == "Out of stock"
    assert crash.status_code == 500 and crash.json()["code"] == "INTERNAL_SERVER_ERROR"


# --- Middleware Ordering under setup_app (SPEC §10) ------------------------------------------------

ORIGIN = "https://app.example.com"


def full_app(**settings: Any) -> FastAPI:
    """The user's routes under setup_app, CORS configured for ORIGIN."""
    router = APIRouter()
    holder = routes(FastAPI())
    for route in holder.routes:
        if getattr(route, "path", "").startswith(("/docs", "/openapi", "/redoc")):
            continue
        router.routes.append(route)
    return guide_app(router, ENVIRONMENT="production", secret_key="k" * 64, cors_origins=[ORIGIN], **settings)


def test_setup_app_order() -> None:
    """setup_app installs the guide's order, outermost → innermost (the guide's SecurityMiddleware is SecureRequestMiddleware), with security headers and CORS around the refusing layers and rate limits before content checks."""
    app = full_app()
    assert app.state.crown_nexus_middleware == [
        "RequestContextMiddleware",
        "TracingMiddleware",
        "MetricsMiddleware",
        "SecurityHeadersMiddleware",  # outside every refusing layer: their errors carry them
        "CORSMiddleware",
        "RateLimitMiddleware",  # before SecureRequest: floods are throttled before inspection
        "SecureRequestMiddleware",
        "CsrfMiddleware",  # cookie-authenticated unsafe requests only (guide §14)
        "TimeoutMiddleware",
        "CacheControlMiddleware",
        "ResponseFormatterMiddleware",
        "CompressionMiddleware",
        "IdempotencyMiddleware",  # inside compression: replays are compressed like any response
        "ErrorHandlerMiddleware",
    ]
    assert [m.cls.__name__ for m in app.user_middleware][:1] == ["RequestContextMiddleware"]


async def test_errors_pass_through_cors_security_headers_and_request_id() -> None:
    """An error from a route gets the SPEC §3 body with the echoed request id, CORS and security headers."""
    app = full_app()
    headers = {"Origin": ORIGIN, "X-Request-ID": "ord-1", "Accept-Encoding": "gzip"}
    async with app_client(app) as client:
        business = await client.get("/business", headers=headers)
        crash = await client.get("/crash", headers={**headers, "X-Request-ID": "ord-2"})
        missing = await client.get("/nowhere", headers={**headers, "X-Request-ID": "ord-3"})
        ok = await client.get("/small", headers={**headers, "X-Request-ID": "ord-4"})
        big = await client.get("/big", headers={**headers, "X-Request-ID": "ord-5"})
    for response, rid, status, code in (
        (business, "ord-1", 400, "BUSINESS_LOGIC_ERROR"),
        (crash, "ord-2", 500, "INTERNAL_SERVER_ERROR"),
        (missing, "ord-3", 404, None),
    ):
        assert response.status_code == status
        assert response.headers["X-Request-ID"] == rid
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        body = response.json()
        assert_error_body(body, code or body["code"])
        assert body["request_id"] == rid
        assert "data" not in body  # the formatter leaves error bodies alone
    assert "postgres" not in crash.text
    assert ok.json()["success"] is True and ok.json()["data"] == {"request_id": "ord-4", "state_id": "ord-4"}
    assert ok.json()["meta"]["request_id"] == "ord-4"
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN and ok.headers.get("Cache-Control")
    assert big.headers["Content-Encoding"] == "gzip" and big.json()["data"] == {"blob": BIG}


async def test_cors_preflight() -> None:
    """A CORS preflight from the allowed origin is answered; another origin is not allowed."""
    app = full_app()
    async with app_client(app) as client:
        ok = await client.options("/items", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        other = await client.options("/items", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert other.headers.get("Access-Control-Allow-Origin") != "https://evil.example"


async def test_timeout_and_rejections_render_the_error_body() -> None:
    """Rejections by outer middleware (timeout, suspicious URL) carry the SPEC §3 body with the request id."""
    from crown_nexus.integrations.fastapi import setup_app
    from crown_nexus.settings import Settings

    app = routes(FastAPI())
    setup_app(
        app,
        Settings(ENVIRONMENT="production", secret_key="k" * 64, cors_origins=[ORIGIN]),
        middleware_options={"TimeoutMiddleware": {"timeout_seconds": 0.05}},
    )
    async with app_client(app) as client:
        late = await client.get("/slow", headers={"X-Request-ID": "t-1", "Origin": ORIGIN})
        odd = await client.get("/search", params={"q": "<script>x</script>"}, headers={"X-Request-ID": "t-2"})
    assert late.status_code == 504
    assert_error_body(late.json(), late.json()["code"])
    assert late.json()["request_id"] == "t-1" and late.headers["X-Request-ID"] == "t-1"
    assert odd.status_code == 400
    assert_error_body(odd.json(), odd.json()["code"])
    assert odd.json()["request_id"] == "t-2"


# --- Creating Custom Middleware, verbatim (the user's BaseHTTPMiddleware in our stack) -------------

from fastapi import Request, Response
from starlette.middleware.base import BaseHTTPMiddleware
from typing import Callable, Any

from crown_nexus.logging import get_logger

logger = get_logger("app.middleware.custom")

class CustomMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: Any, option1: str = "default") -> None:
        super().__init__(app)
        self.option1 = option1
        logger.info("CustomMiddleware initialized", option1=option1)

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Response]
    ) -> Response:
        # Pre-processing logic
        logger.info("Processing request in custom middleware")

        try:
            # Call the next middleware or route handler
            response = await call_next(request)

            # Post-processing logic
            logger.info("Request processed successfully")

            return response
        except Exception as e:
            # Error handling logic
            logger.error(f"Error in custom middleware: {str(e)}")
            raise


async def test_custom_middleware_inside_our_stack() -> None:
    """The user's BaseHTTPMiddleware wraps the setup_app stack: responses, errors and request ids still work."""
    app = full_app()
    app.add_middleware(CustomMiddleware, option1="custom")
    with capture_logs() as logs:
        async with app_client(app) as client:
            ok = await client.get("/small", headers={"X-Request-ID": "cm-1"})
            business = await client.get("/business", headers={"X-Request-ID": "cm-2"})
            crash = await client.get("/crash", headers={"X-Request-ID": "cm-3"})
    assert ok.status_code == 200 and data_of(ok.json())["request_id"] == "cm-1"
    assert business.status_code == 400 and business.json()["request_id"] == "cm-2"
    assert crash.status_code == 500 and crash.json()["request_id"] == "cm-3"
    mine = [e["event"] for e in logs if e.get("logger") == "app.middleware.custom"]
    assert mine[0] == "CustomMiddleware initialized"
    assert mine.count("Processing request in custom middleware") == 3
    assert mine.count("Request processed successfully") == 3  # errors come back as responses


async def test_custom_middleware_innermost_sees_request_context() -> None:
    """Added to a bare app wrapped by RequestContextMiddleware, the user's middleware logs with the request id."""
    app = routes(FastAPI())
    app.add_middleware(CustomMiddleware)
    from crown_nexus.middleware import RequestContextMiddleware

    app.add_middleware(RequestContextMiddleware)
    with capture_logs() as logs:
        async with app_client(app) as client:
            ok = await client.get("/small", headers={"X-Request-ID": "inner-1"})
    assert ok.json()["request_id"] == "inner-1"
    mine = [e for e in logs if e.get("event") == "Processing request in custom middleware"]
    assert [e["request_id"] for e in mine] == ["inner-1"]


# --- Integration with Other Systems + Common Middleware Patterns (user dispatch bodies) ------------

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.error import handle_exception


class MetricsIntegration(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        # In your middleware
        metrics_service = get_service("metrics_service")
        metrics_service.increment_counter(
            "requests_total",
            1,
            {"path": request.url.path}
        )
        return await call_next(request)


class ErrorIntegration(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        # In your middleware
        try:
            # Process request
            return await call_next(request)
        except Exception as e:
            request_id = getattr(request.state, "request_id", None)
            handle_exception(e, request_id=request_id)
            raise


class Timing(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        start_time = time.monotonic()

        response = await call_next(request)

        # Calculate duration
        duration = time.monotonic() - start_time
        response.headers["X-Response-Time"] = f"{duration:.4f}s"

        return response


async def validate(token: str) -> str | None:
    """The user's token check."""
    from crown_nexus.core.exceptions import AuthenticationException
    from crown_nexus.core.security import decode_token

    try:
        return (await decode_token(token)).sub
    except AuthenticationException:
        return None


class AuthCheck(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        # Extract token
        auth_header = request.headers.get("Authorization")

        if auth_header and auth_header.startswith("Bearer "):
            token = auth_header.replace("Bearer ", "")
            # Validate token
            user_id = await validate(token)
            # Set user in request state
            request.state.user_id = user_id

        return await call_next(request)


class ResponseModification(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        response = await call_next(request)

        # Modify response headers
        response.headers["X-Custom-Header"] = "value"

        # Modify response body (for JSON responses)
        if isinstance(response, JSONResponse):
            content = response.body
            modified_content = json.loads(content)
            modified_content["extra_field"] = "value"

            return JSONResponse(
                content=modified_content,
                status_code=response.status_code,
                headers=dict(response.headers),
            )

        return response


class Conditional(BaseHTTPMiddleware):
    exclude_paths = ["/text"]

    async def dispatch(self, request: Request, call_next):
        # Skip processing for certain paths
        if any(request.url.path.startswith(prefix) for prefix in self.exclude_paths):
            return await call_next(request)

        # Skip processing for certain methods
        if request.method in ["OPTIONS", "HEAD"]:
            return await call_next(request)

        # Normal processing
        # ...
        request.state.processed = True

        return await call_next(request)


async def test_integration_and_pattern_middlewares() -> None:
    """The guide's dispatch bodies, stacked on a setup_app app, all do their part."""
    from crown_nexus.core.security import create_token
    from crown_nexus.testing import capture_errors

    app = FastAPI()
    routes(app)

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        return {"user_id": getattr(request.state, "user_id", None), "processed": getattr(request.state, "processed", False)}

    from crown_nexus.integrations.fastapi import setup_app
    from crown_nexus.settings import Settings

    setup_app(app, Settings(ENVIRONMENT="production", secret_key="k" * 64))
    for cls in (MetricsIntegration, ErrorIntegration, Timing, AuthCheck, ResponseModification, Conditional):
        app.add_middleware(cls)
    metrics = MetricsService()
    with override_service("metrics_service", metrics), capture_errors() as reporter:
        async with app_client(app) as client:
            token = create_token("mw-user")
            who = await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
            anon = await client.get("/whoami")
            text = await client.get("/text")
            crash = await client.get("/crash")
    assert data_of(who.json()) == {"user_id": "mw-user", "processed": True}
    assert data_of(anon.json()) == {"user_id": None, "processed": True}
    for r in (who, text, crash):
        assert r.headers["X-Custom-Header"] == "value"
        assert r.headers["X-Response-Time"].endswith("s") and float(r.headers["X-Response-Time"][:-1]) >= 0
    assert crash.status_code == 500  # our ErrorHandlerMiddleware answered inside; nothing re-raised outside
    assert metrics.get_counter_sum("requests_total", {"path": "/whoami"}) == 2
    assert metrics.get_counter_sum("requests_total") == 4
