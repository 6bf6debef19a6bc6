"""A floor for fusing the stack: one hand-written pure ASGI layer around bare FastAPI (``app_floor:app``).

Not a product and not used by the library: it answers the question "what would the stack cost if
every layer's per-request work were fused into one coroutine and done the cheapest way we know?"
It does only the work visible in the benchmark's answers, each piece once, with no generality:

* the request id (``new_request_id``) and the log context (two context variables);
* a ``traceparent`` (new ids, no tracer provider);
* one counter per client and minute (a dict; no rules, no windows, no Redis);
* a timeout timer (``loop.call_at`` / ``cancel``);
* the SPEC §3 envelope (``orjson`` loads and dumps), gzip for bodies of 1,000 bytes or more when
  the client accepts it (the formatter's ``gzip_body``, level 3), ``Content-Length``;
* the response headers of the full stack's answer, precomputed where they are constant;
* the request counter and duration histogram (``prometheus_client``, children cached per label
  set) and the production ``"Request completed"`` log line (``get_logger(...).info``).

Everything else the real stack does per request is left out: security checks of the URL,
headers and query, CORS origin matching, rate-limit rules and windows, cache-control and ETag
rules, error rendering, idempotency and CSRF checks, in-progress gauges, sampling of the
decision timers. So the ratio of this app to bare FastAPI is an upper bound on what fusing the
real stack into one Python layer could reach on this server.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson
from app_bare import app as inner
from prometheus_client import CollectorRegistry, Counter, Histogram

from crown_nexus.logging import configure_logging, get_logger
from crown_nexus.logging.context import _request_id, _user_id
from crown_nexus.middleware._gzip import gzip_body
from crown_nexus.middleware.request_context import new_request_id

# production JSON log lines, as app_full (whose settings require a secret key)
os.environ.setdefault("ENVIRONMENT", "production")
os.environ.setdefault("CROWN_NEXUS_SECRET_KEY", "bench-only-" + "k" * 53)
configure_logging()

_REGISTRY = CollectorRegistry()
_REQUESTS = Counter(
    "http_requests_total", "requests", ["method", "endpoint", "status_code"], registry=_REGISTRY
)
_DURATION = Histogram(
    "http_request_duration_seconds", "duration", ["method", "endpoint"], registry=_REGISTRY
)
_LOG = get_logger("crown_nexus.request")
_ORIGIN = b"http://bench.example"
_STATIC = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"permissions-policy", b"geolocation=(), microphone=(), camera=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"access-control-allow-origin", _ORIGIN),
    (b"access-control-expose-headers", b"x-request-id, traceparent, ratelimit"),
    (b"x-ratelimit-limit", b"1000000000"),
]
_counts: dict[tuple[str, int], int] = {}
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_perf = time.perf_counter


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Bare FastAPI behind the fused floor layer (see the module docstring)."""
    if scope["type"] != "http":
        await inner(scope, receive, send)
        return
    started = _perf()
    rid = new_request_id()
    rid_token = _request_id.set(rid)
    uid_token = _user_id.set(None)
    ids = os.urandom(24).hex()
    traceparent = f"00-{ids[:32]}-{ids[32:]}-01".encode()
    gzip_ok = False
    for name, value in scope["headers"]:
        if name == b"accept-encoding":
            gzip_ok = b"gzip" in value
    window = (scope["client"][0], int(time.time()) // 60)
    count = _counts.get(window, 0) + 1
    _counts[window] = count
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    timer = loop.call_at(loop.time() + 30.0, task.cancel)  # type: ignore[union-attr]
    status = 500
    start: dict[str, Any] | None = None

    async def fused_send(message: Any) -> None:
        nonlocal status, start
        if message["type"] == "http.response.start":
            start = message
            status = message["status"]
            return
        if start is None or message.get("more_body"):
            await send(message)
            return
        body = orjson.dumps(
            {
                "success": True,
                "data": orjson.loads(message.get("body", b"")),
                "meta": {"request_id": rid},
            }
        )
        headers = [h for h in start["headers"] if h[0] != b"content-length"]
        headers += _STATIC
        if gzip_ok and len(body) >= 1000:
            body = gzip_body(body, 3)
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"vary", b"Origin, Accept-Encoding"))
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"x-request-id", rid.encode()))
        headers.append((b"traceparent", traceparent))
        headers.append((b"ratelimit", f"limit=1000000000, remaining={10**9 - count}".encode()))
        start["headers"] = headers
        await send(start)
        start = None
        await send({"type": "http.response.body", "body": body})

    try:
        await inner(scope, receive, fused_send)
    finally:
        timer.cancel()
        elapsed = _perf() - started
        method = scope["method"]
        route = scope["path"]
        key = (method, route, status)
        series = _children.get(key)
        if series is None:
            series = _children[key] = (
                _REQUESTS.labels(method, route, str(status)),
                _DURATION.labels(method, route),
            )
        series[0].inc()
        series[1].observe(elapsed)
        _LOG.info(
            "Request completed",
            method=method,
            path=route,
            status_code=status,
            duration_ms=round(elapsed * 1000.0, 3),
        )
        _user_id.reset(uid_token)
        _request_id.reset(rid_token)
