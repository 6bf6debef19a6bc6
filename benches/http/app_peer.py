"""The hand-written equivalent most teams use today (``granian app_peer:app``).

FastAPI + ``BaseHTTPMiddleware`` for the request id, the security headers and Prometheus
metrics (a counter and a duration histogram per request), slowapi for the rate limit (one limit
high enough never to refuse, counted per client IP in memory), Starlette's CORS and GZip.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from _routes import ORIGIN, add_routes
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIMiddleware
from slowapi.util import get_remote_address
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "http_requests_total", "Requests", ["method", "path", "status"], registry=REGISTRY
)
DURATION = Histogram(
    "http_request_duration_seconds", "Request duration", ["method", "path"], registry=REGISTRY
)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "default-src 'self'",
    "Permissions-Policy": "geolocation=(), microphone=(), camera=()",
}


class RequestIdMiddleware(BaseHTTPMiddleware):
    """X-Request-ID: the client's or a fresh uuid4, echoed on the response."""

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        request.state.request_id = request_id
        response: Response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        return response


class SecurityHeadersMiddleware(BaseHTTPMiddleware):
    """The usual security headers on every response."""

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response


class PrometheusMiddleware(BaseHTTPMiddleware):
    """A request counter and a duration histogram labelled by method and route path."""

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        path = request.url.path
        DURATION.labels(request.method, path).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, path, str(response.status_code)).inc()
        return response


limiter = Limiter(key_func=get_remote_address, default_limits=["1000000000/minute"])
app = add_routes(FastAPI(openapi_url=None, docs_url=None, redoc_url=None))
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
# added innermost first: the request id is outermost
app.add_middleware(GZipMiddleware, minimum_size=1000)
app.add_middleware(SlowAPIMiddleware)
app.add_middleware(
    CORSMiddleware,
    allow_origins=[ORIGIN],
    allow_credentials=True,
    allow_methods=["*"],
    allow_headers=["*"],
)
app.add_middleware(PrometheusMiddleware)
app.add_middleware(SecurityHeadersMiddleware)
app.add_middleware(RequestIdMiddleware)
