"""``RateLimitMiddleware``: rate limits per client and path, as pure ASGI middleware (guide §8, §13).

Every rule whose ``path_pattern`` matches the request path (and does not exclude it) is checked
for the request's client key; if any refuses, the request is answered with 429, the SPEC §3
error body and ``Retry-After``/``X-RateLimit-*``/``RateLimit-Policy``/``RateLimit`` headers,
without reaching the application. Admitted responses on limited paths carry the same headers
(the tightest rule's numbers). When the backend is down the service's policy applies: fail
open (default; per-process limits) or fail closed (503 with the SPEC §3 body).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any

from crown_nexus.core.exceptions import render_exception
from crown_nexus.core.rate_limiting import _metrics
from crown_nexus.core.rate_limiting.exceptions import (
    RateLimiterUnavailableException,
    exceeded_from_result,
)
from crown_nexus.core.rate_limiting.memory import MemoryRateLimitBackend
from crown_nexus.core.rate_limiting.models import (
    RateLimitResult,
    RateLimitRule,
    RateLimitStrategy,
)
from crown_nexus.core.rate_limiting.service import (
    RateLimitingService,
    create_rate_limiting_service,
    user_id_from_scope,
)
from crown_nexus.core.tracing import span, tracing_enabled
from crown_nexus.logging import get_logger
from crown_nexus.middleware._send import RawHeaders, add_start_hook
from crown_nexus.settings import Settings, get_settings

__all__ = ["DEFAULT_RULES", "RateLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = get_logger("crown_nexus.middleware.rate_limiting")

#: used when no rules are given (e.g. by ``setup_app``): 1000 requests per minute per client IP
#: on every path except health checks, metrics and the API docs
DEFAULT_RULES: tuple[RateLimitRule, ...] = (
    RateLimitRule(
        requests_per_window=1000,
        window_seconds=60,
        exclude_paths=["/health", "/metrics", "/docs", "/redoc", "/openapi.json"],
    ),
)


def _governing(checked: list[tuple[RateLimitRule, RateLimitResult]]) -> tuple[RateLimitRule, RateLimitResult]:
    """The rule whose result the client should see: the refusal with the longest wait, else the
    admission with the fewest requests left."""
    refused = [item for item in checked if not item[1].allowed]
    if refused:
        return max(refused, key=lambda item: item[1].retry_after)
    return min(checked, key=lambda item: (item[1].remaining, -item[1].reset_after))


async def _authenticate(scope: Scope) -> None:
    """For user-keyed rules: resolve the caller from ``Authorization: Bearer`` / ``X-API-Key``.

    Uses ``crown_nexus.core.security.dependencies.authenticate_request``, which caches the
    user in ``request.state`` for the endpoint's own dependencies. Invalid or missing
    credentials leave the request anonymous (keyed by IP); the endpoint still rejects them.
    """
    if user_id_from_scope(scope, use_context=False) is not None:
        return
    names = {name for name, _ in scope.get("headers") or ()}
    if b"authorization" not in names and b"x-api-key" not in names:
        return
    try:
        from starlette.requests import Request

        from crown_nexus.core.security.dependencies import authenticate_request

        await authenticate_request(Request(scope))
    except Exception as exc:  # invalid credentials: the endpoint answers 401 itself
        logger.debug("rate limit: caller not authenticated", error=type(exc).__name__)


def _encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


#: every header name this middleware may add (lower case)
_RATE_LIMIT_NAMES = frozenset(
    {
        b"x-ratelimit-limit",
        b"x-ratelimit-remaining",
        b"x-ratelimit-reset",
        b"ratelimit",
        b"ratelimit-policy",
        b"retry-after",
    }
)

#: the names :func:`_allowed_headers` writes, without and with ``RateLimit-Policy``
_ALLOWED_NAMES = frozenset(
    {b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset", b"ratelimit"}
)
_ALLOWED_NAMES_POLICY = _ALLOWED_NAMES | {b"ratelimit-policy"}

#: per (policy name, limit, window): the encoded bytes that do not change between requests
_STATIC_PARTS: dict[tuple[str, int, int], tuple[bytes, bytes | None, bytes]] = {}


def _allowed_headers(result: RateLimitResult) -> list[tuple[bytes, bytes]]:
    """``result.headers()`` of an admitted request, encoded (the hot path: no dict, no lower())."""
    key = (result.policy_name, result.limit, result.window)
    parts = _STATIC_PARTS.get(key)
    if parts is None:
        name = result.policy_name
        policy = (
            f'"{name}";q={result.limit};w={result.window}'.encode("latin-1")
            if result.window
            else None
        )
        parts = (str(result.limit).encode("latin-1"), policy, f'"{name}";r='.encode("latin-1"))
        if len(_STATIC_PARTS) < 256:
            _STATIC_PARTS[key] = parts
    limit, policy, prefix = parts
    remaining = b"%d" % result.remaining
    reset = b"%d" % result.reset_seconds
    out = [
        (b"x-ratelimit-limit", limit),
        (b"x-ratelimit-remaining", remaining),
        (b"x-ratelimit-reset", reset),
        (b"ratelimit", prefix + remaining + b";t=" + reset),
    ]
    if policy is not None:
        out.append((b"ratelimit-policy", policy))
    return out


class RateLimitMiddleware:
    """Pure ASGI rate limiting (no dispatch-style base class).

    ``rules``: the limits (default :data:`DEFAULT_RULES`). ``use_redis``: keep counters in Redis
    when the settings configure it (``REDIS_URI``), so every worker shares them; otherwise, and
    with ``False``, counters live in this process. ``enable_headers``: add rate-limit headers to
    admitted responses. ``block_exceeding_requests``: answer 429 when a limit is exceeded
    (``False`` only reports it in headers and metrics).

    ``service`` pins the :class:`RateLimitingService` to use. Without it the middleware builds
    its own on the first request, for ``settings`` or else the app's ``app.state.settings``
    (set by ``setup_app``) or else ``crown_nexus.core.config.settings``, and closes it when the
    app's lifespan shuts down. Each app therefore has its own in-memory counters.
    """

    def __init__(
        self,
        app: ASGIApp,
        rules: Iterable[RateLimitRule] | None = None,
        use_redis: bool = True,
        enable_headers: bool = True,
        block_exceeding_requests: bool = True,
        *,
        service: RateLimitingService | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.app = app
        self.rules: tuple[RateLimitRule, ...] = tuple(rules) if rules is not None else DEFAULT_RULES
        for rule in self.rules:
            if not isinstance(rule, RateLimitRule):
                raise TypeError(f"rules must be RateLimitRule objects, got {type(rule).__name__}")
        self.use_redis = bool(use_redis)
        self.enable_headers = bool(enable_headers)
        self.block_exceeding_requests = bool(block_exceeding_requests)
        self._settings = settings
        self._owns_service = service is None
        self._service = service
        self._needs_user = any(
            rule.strategy is not RateLimitStrategy.IP for rule in self.rules
        )
        #: ``(service, checker)``: the memory backend's synchronous check of the only rule
        #: (``RateLimitingService.memory_checker``), rebuilt when the service changes
        self._fast: tuple[Any, Any] = (None, None)
        #: position in the duration sampling: this middleware's first request is timed, then
        #: one in ``DURATION_SAMPLE_EVERY`` (like the service's checks)
        self._requests = 0
        _metrics.declare_rules(self.rules)  # refusal counters exist (at 0) from the start

    @property
    def service(self) -> RateLimitingService:
        """The rate limiting service this middleware checks against (built on first use)."""
        if self._service is None:
            self._service = self._build_service(None)
        return self._service

    def _build_service(self, scope: Scope | None) -> RateLimitingService:
        settings = self._settings
        if settings is None and scope is not None:
            app_settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
            if isinstance(app_settings, Settings):
                settings = app_settings
        if settings is None:
            settings = get_settings()
        if self.use_redis:
            return create_rate_limiting_service(settings)
        return RateLimitingService(MemoryRateLimitBackend(), settings=settings)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the lifespan through; close the service this middleware built at shutdown."""

        async def send_closing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete" and self._service is not None:
                _metrics.flush()  # the admitted requests counted in this app's tally
                service, self._service = self._service, None
                try:
                    await service.close()
                except Exception as exc:
                    logger.warning("rate limiting service did not close", error=str(exc))
            await send(message)

        await self.app(scope, receive, send_closing)

    def matching_rules(self, path: str) -> Sequence[RateLimitRule]:
        """The rules that apply to ``path``."""
        return [rule for rule in self.rules if rule.matches(path)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self._owns_service:
                await self._lifespan(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if len(self.rules) == 1:  # the usual configuration: no list built per request
            only = self.rules[0]
            rules: Sequence[RateLimitRule] = self.rules if only.matches(scope["path"]) else ()
        else:
            rules = self.matching_rules(scope["path"])
        if not rules:
            await self.app(scope, receive, send)
            return
        if self._needs_user and any(r.strategy is not RateLimitStrategy.IP for r in rules):
            await _authenticate(scope)
        n = self._requests
        self._requests = n + 1 if n + 1 < _metrics.DURATION_SAMPLE_EVERY else 0
        timed = n == 0
        started = time.perf_counter() if timed else 0.0
        service = self._service
        if service is None:
            service = self._service = self._build_service(scope)
        checked: list[tuple[RateLimitRule, RateLimitResult]] = []
        fast = (
            self._fast_check(service, scope)
            if not timed and len(self.rules) == 1 and not tracing_enabled()
            else None
        )
        try:
            if fast is not None:
                checked.append((rules[0], fast))
            elif tracing_enabled():  # the check is a span of the request's trace
                with span(
                    "rate_limit.check",
                    tracer="crown_nexus.middleware",
                    attributes={"crown_nexus.rate_limit.rules": len(rules)},
                ) as current:
                    for rule in rules:
                        result = await service.check(service.key_for_scope(scope, rule), rule)
                        checked.append((rule, result))
                    if current is not None:
                        current.set_attribute(
                            "crown_nexus.rate_limit.allowed", all(r.allowed for _, r in checked)
                        )
            else:
                for rule in rules:
                    result = await service.check(service.key_for_scope(scope, rule), rule)
                    checked.append((rule, result))
        except RateLimiterUnavailableException as exc:
            label = rules[0].path_pattern or "*"
            _metrics.record_request(
                label, "unavailable", time.perf_counter() - started if timed else None
            )
            await self._send_error(exc, send)
            return
        rule, result = checked[0] if len(checked) == 1 else _governing(checked)
        label = rule.path_pattern or "*"
        state = scope.setdefault("state", {})
        state["rate_limit"] = result
        if not result.allowed:
            _metrics.record_request(
                label, "limited", time.perf_counter() - started if timed else None
            )
            logger.debug(
                "rate limit exceeded",
                path=scope["path"],
                rule=rule.policy_name,
                limit=result.limit,
                retry_after=result.retry_after_seconds,
                blocked=self.block_exceeding_requests,
            )
            if self.block_exceeding_requests:
                exceeded = exceeded_from_result(
                    result,
                    details={
                        "limit": result.limit,
                        "window_seconds": rule.window_seconds,
                        "retry_after": result.retry_after_seconds,
                    },
                )
                await self._send_error(exceeded, send)
                return
        elif timed:
            _metrics.record_request(label, "allowed", time.perf_counter() - started)
        else:
            cell = _metrics.request_cell(label)
            c = cell[0] + 1
            cell[0] = c
            if c == 1 or c >= _metrics.FLUSH_EVERY:
                _metrics.tally_noted(c)
        if not self.enable_headers:
            await self.app(scope, receive, send)
            return
        if result.allowed:
            extra = _allowed_headers(result)
            extra_names = _ALLOWED_NAMES_POLICY if result.window else _ALLOWED_NAMES
        else:
            extra = _encode_headers(result.headers())
            extra_names = frozenset(name for name, _ in extra)

        def rate_limit_hook(message: Message, headers: RawHeaders, names: set[bytes]) -> None:
            """Add the rate-limit headers the application did not set itself."""
            if names.isdisjoint(_RATE_LIMIT_NAMES):
                headers += extra
            else:
                headers.extend(item for item in extra if item[0] not in names)
            names |= extra_names

        await self.app(scope, receive, add_start_hook(send, rate_limit_hook))

    def _fast_check(self, service: RateLimitingService, scope: Scope) -> RateLimitResult | None:
        """The only rule checked through the memory backend's synchronous checker
        (``RateLimitingService.memory_checker``: counted and metered exactly as
        ``service.check`` would, the sampled check's duration included), or ``None`` when
        ``service.check`` must run instead (another backend, a key that is not a plain
        ``str``)."""
        fast_service, checker = self._fast
        if fast_service is not service:
            checker = service.memory_checker(self.rules[0])
            self._fast = (service, checker)
        if checker is None:
            return None
        rule = self.rules[0]
        answer = checker(service.key_for_scope(scope, rule))
        if answer is None:
            return None
        allowed, count, reset = answer
        _, _, _, capacity, _, policy_name, window = rule.hot_params
        return RateLimitResult(
            allowed, capacity, count, capacity - count if capacity > count else 0, reset,
            0.0 if allowed else reset, window, policy_name,
        )

    @staticmethod
    async def _send_error(exc: Exception, send: Send) -> None:
        status, body, headers = render_exception(exc)
        raw = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("latin-1")),
            *_encode_headers(headers),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
