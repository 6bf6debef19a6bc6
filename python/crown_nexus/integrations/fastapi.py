"""``setup_app(app, settings=None)``: exception handlers, the guide §13 middleware stack, lifespan.

The stack, outermost first: RequestContext, Tracing, Metrics, SecurityHeaders, CORS,
RateLimit, SecureRequest, Csrf, Timeout, CacheControl, ResponseFormatter, Compression,
Idempotency, ErrorHandler. Csrf checks cookie-authenticated unsafe requests only (bearer and
API-key callers pass untouched); Idempotency sits inside compression so a stored response is
the application's own and a replay is formatted and compressed like any response.
It is the guide §13 order with two deliberate changes: SecurityHeaders and CORS sit outside every
layer that can refuse a request, so a 413, 414, 431, 400, 429 or 504 carries the security
headers and the CORS grant like any other response (a browser can read the 429); and the rate
limit runs before SecureRequest's content checks, so a flood of attack URLs is throttled before
it is inspected (its size caps are O(n)). ErrorHandler is closest to the routes, so errors get the
SPEC §3 body and still pass through the layers above. A middleware
whose module cannot be imported is a ``ConfigurationException``, never skipped.

Each app owns its services: ``setup_app`` gives it an :class:`~crown_nexus.container.AppContainer`
(``app.state.container``: its settings, its registry of service instances, its per-app state) and
wraps the whole app — outside Starlette's own error middleware — in a pure-ASGI
:class:`~crown_nexus.container.ContainerScope` that makes the container current for every scope
(HTTP, WebSocket, lifespan). So ``get_service``, ``get_settings``, the token functions... answer
for this app, and two apps with different settings serve side by side in one process. Start-up
builds and starts the registered services in the app's container before the app's own lifespan
runs; shutdown stops them after.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from crown_nexus.container import (
    AppContainer,
    ContainerScope,
    reset_current,
    set_current,
    use_container,
)
from crown_nexus.core import dependency_manager
from crown_nexus.core import error as _error_reporting  # noqa: F401 - registers the 5xx report hook
from crown_nexus.core.exceptions import ConfigurationException, install_exception_handlers
from crown_nexus.integrations.observability import health_router, metrics_router
from crown_nexus.integrations.openapi import install_openapi
from crown_nexus.integrations.routing import install_method_not_allowed
from crown_nexus.logging import configure_logging_for_app
from crown_nexus.settings import Settings, get_settings

__all__ = [
    "MIDDLEWARE_ORDER",
    "health_router",
    "metrics_router",
    "middleware_stack",
    "rate_limit_rules",
    "setup_app",
]

logger = logging.getLogger("crown_nexus.integrations.fastapi")

#: (name, module), outermost first — guide §13 except: security headers and CORS wrap every
#: layer that refuses requests (their errors carry both), and rate limits are checked before
#: the content checks of SecureRequestMiddleware (a flood of attack URLs is throttled, not parsed).
MIDDLEWARE_ORDER: tuple[tuple[str, str], ...] = (
    ("RequestContextMiddleware", "crown_nexus.middleware.request_context"),
    ("TracingMiddleware", "crown_nexus.middleware.tracing"),
    ("MetricsMiddleware", "crown_nexus.middleware.metrics"),
    ("SecurityHeadersMiddleware", "crown_nexus.middleware.security_headers"),
    ("CORSMiddleware", "crown_nexus.middleware.cors"),  # Starlette's, precomputed
    ("RateLimitMiddleware", "crown_nexus.middleware.rate_limiting"),
    ("SecureRequestMiddleware", "crown_nexus.middleware.secure_request"),
    ("CsrfMiddleware", "crown_nexus.middleware.csrf"),
    ("TimeoutMiddleware", "crown_nexus.middleware.timeout"),
    ("CacheControlMiddleware", "crown_nexus.middleware.cache_control"),
    ("ResponseFormatterMiddleware", "crown_nexus.middleware.response_formatter"),
    ("CompressionMiddleware", "crown_nexus.middleware.compression"),
    ("IdempotencyMiddleware", "crown_nexus.middleware.idempotency"),
    ("ErrorHandlerMiddleware", "crown_nexus.middleware.error_handler"),
)


def _default_options(settings: Settings) -> dict[str, dict[str, Any]]:
    """Constructor arguments each middleware gets unless the caller overrides them.

    Every value comes from ``settings`` (the README's settings table lists the variables).
    """
    from crown_nexus.core.security.headers import DEFAULT_CONTENT_SECURITY_POLICY

    csp = settings.content_security_policy
    return {
        "MetricsMiddleware": {"ignore_paths": ["/metrics", "/health"]},
        "SecurityHeadersMiddleware": {
            "content_security_policy": DEFAULT_CONTENT_SECURITY_POLICY
            if csp is None
            else (csp.strip() or None),
        },
        "RateLimitMiddleware": {"rules": rate_limit_rules(settings), "settings": settings},
        "SecureRequestMiddleware": {
            "max_url_length": settings.max_url_length,
            "max_header_bytes": settings.max_header_bytes,
            "max_total_header_bytes": settings.max_total_header_bytes,
            "content_heuristics": settings.suspicious_content_mode,
            "max_body_size": settings.max_body_size,
            "max_body_sizes": dict(settings.max_body_sizes),
        },
        "TimeoutMiddleware": {
            "timeout_seconds": settings.request_timeout_seconds,
            "body_timeout_seconds": settings.body_read_timeout_seconds,
        },
        "CORSMiddleware": {
            "allow_origins": list(settings.cors_origins),
            "allow_credentials": settings.cors_allow_credentials,
            "allow_methods": list(settings.cors_allow_methods),
            "allow_headers": list(settings.cors_allow_headers),
            "max_age": settings.cors_max_age,
        },
        "CompressionMiddleware": {
            "minimum_size": settings.compression_minimum_size,
            "compresslevel": settings.compression_level,
        },
        "ErrorHandlerMiddleware": {"production": settings.is_production},
        "IdempotencyMiddleware": {
            "enabled": settings.idempotency_enabled,
            "ttl_seconds": settings.idempotency_ttl_seconds,
            "redis_url": _idempotency_redis_url(settings),
        },
    }


def rate_limit_rules(
    settings: Settings, defaults: Iterable[Any] | None = None
) -> tuple[Any, ...]:
    """The middleware's ``RateLimitRule`` objects for ``settings``.

    ``CROWN_NEXUS_RATE_LIMIT_RULES`` (a JSON list of rule fields) replaces ``defaults`` (the
    library's ``DEFAULT_RULES`` when ``None``); otherwise ``CROWN_NEXUS_RATE_LIMIT_DEFAULT``
    (``"<requests>/<seconds>"``) sets the numbers of the catch-all rule (the first rule without
    a ``path_pattern``). A rule the model refuses is a ``ConfigurationException``.
    """
    from pydantic import ValidationError

    from crown_nexus.core.rate_limiting.models import RateLimitRule
    from crown_nexus.middleware.rate_limiting import DEFAULT_RULES

    if settings.rate_limit_rules is not None:
        try:
            return tuple(RateLimitRule(**rule) for rule in settings.rate_limit_rules)
        except (ValidationError, TypeError) as exc:
            raise ConfigurationException(
                message=f"CROWN_NEXUS_RATE_LIMIT_RULES holds an invalid rule: {exc}"
            ) from exc
    rules = tuple(DEFAULT_RULES if defaults is None else defaults)
    if settings.rate_limit_default is None:
        return rules
    requests, _, seconds = settings.rate_limit_default.partition("/")
    fresh = RateLimitRule(requests_per_window=int(requests), window_seconds=int(seconds))
    for index, rule in enumerate(rules):
        if rule.path_pattern is None:
            # a new model, not model_copy(): a copy would keep the original's cached hot-path
            # parameters (cached_property values live in the instance __dict__)
            replaced = RateLimitRule(
                **{
                    **rule.model_dump(),
                    "requests_per_window": fresh.requests_per_window,
                    "window_seconds": fresh.window_seconds,
                }
            )
            return (*rules[:index], replaced, *rules[index + 1 :])
    return (*rules, fresh)


def _idempotency_redis_url(settings: Settings) -> str | None:
    """Where idempotency keys live: Redis when configured (``auto``) or required (``redis``)."""
    if settings.idempotency_store == "memory":
        return None
    if settings.idempotency_store == "redis" and not settings.redis_url:
        raise ConfigurationException(
            message="CROWN_NEXUS_IDEMPOTENCY_STORE=redis needs REDIS_URI (or the Redis cache)"
        )
    return settings.redis_url


def middleware_stack(
    settings: Settings,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    exclude: Iterable[str] = (),
) -> list[tuple[type[Any], dict[str, Any]]]:
    """The ``(class, kwargs)`` pairs ``setup_app`` installs, outermost first.

    The names in ``exclude`` are left out, MetricsMiddleware too when ``settings.metrics_enabled``
    is false; CORS is included only when ``settings.cors_origins``
    is set or CORS options are given. Every other middleware of ``MIDDLEWARE_ORDER`` is required:
    one whose module or class cannot be imported raises ``ConfigurationException`` naming it and
    the import error, rather than leaving the app without it.
    """
    excluded = set(exclude)
    opts = _default_options(settings)
    for name, extra in (options or {}).items():
        opts.setdefault(name, {}).update(extra)
    stack: list[tuple[type[Any], dict[str, Any]]] = []
    for name, module_name in MIDDLEWARE_ORDER:
        if name in excluded:
            continue
        if name == "MetricsMiddleware" and not settings.metrics_enabled:
            continue  # CROWN_NEXUS_METRICS_ENABLED=false: no request metrics at all
        if (
            name == "CORSMiddleware"
            and not settings.cors_origins
            and "CORSMiddleware" not in (options or {})
        ):
            continue
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            # Every middleware of the stack is part of the library: a broken import must not
            # silently remove rate limiting or security headers from the app.
            raise ConfigurationException(
                message=f"middleware {name} cannot be imported from {module_name}: {exc}",
                details={"middleware": name, "module": module_name, "error": repr(exc)},
            ) from exc
        kwargs = dict(opts.get(name, {}))
        if name == "CORSMiddleware":
            _refuse_credentialed_wildcard(kwargs)
        stack.append((cls, kwargs))
    return stack


def _refuse_credentialed_wildcard(cors: Mapping[str, Any]) -> None:
    """Refuse CORS that would let any site make credentialed requests.

    Starlette answers ``allow_origins=["*"]`` with credentials by reflecting whatever Origin the
    browser sends (``null`` included) next to ``Access-Control-Allow-Credentials: true``: every
    site could read responses made with the user's cookies. ``null`` is the origin of sandboxed
    frames and ``file:`` pages, so allowing it with credentials is the same hole.
    """
    if not cors.get("allow_credentials", False):
        return
    origins = {str(o).strip().lower() for o in cors.get("allow_origins", ())}
    bad = sorted(origins & {"*", "null"})
    regex = cors.get("allow_origin_regex")
    if regex is not None and str(regex).strip() in {".*", "^.*$", ".+", "^.+$"}:
        bad.append(f"allow_origin_regex={regex!r}")
    if bad:
        raise ConfigurationException(
            message=(
                f"CORS with credentials cannot allow {', '.join(bad)}: list the trusted origins "
                "in CROWN_NEXUS_CORS_ORIGINS, or set allow_credentials=False"
            ),
            details={"allow_origins": sorted(origins)},
        )


def _resolve_settings(app: Any, settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    existing = getattr(app.state, "settings", None)
    if isinstance(existing, Settings):
        return existing
    return get_settings()


def setup_app(
    app: Any,
    settings: Settings | None = None,
    *,
    middleware_options: Mapping[str, Mapping[str, Any]] | None = None,
    exclude_middleware: Iterable[str] = (),
    manage_services: bool = True,
) -> Any:
    """Make ``app`` a crown-nexus app; returns it.

    Installs the exception handlers (SPEC §3 body), the middleware stack in the guide's order
    (``middleware_options`` maps a middleware's class name to extra constructor arguments,
    ``exclude_middleware`` leaves some out) and, with ``manage_services``, wraps the app's
    lifespan so the app's services are started before it and stopped after it.

    Gives the app its own container (``app.state.container``) holding its settings and service
    instances — cache, rate limiter, event bus, security, metrics, features... built from these
    settings on first use — and makes it current for every ASGI scope of the app (see the module
    docstring). A ``SecurityService`` already in ``app.state.security_service`` becomes the
    container's ``"security_service"``; otherwise that attribute is set to the container's.
    Stores the settings as ``app.state.settings``. Calling it twice on one app does nothing the
    second time.
    """
    if getattr(app.state, "crown_nexus_setup", False):
        return app
    settings = _resolve_settings(app, settings)
    app.state.settings = settings
    container = AppContainer(settings, name=getattr(app, "title", None))
    app.state.container = container
    configure_logging_for_app(settings)  # JSON in production, console in development
    from crown_nexus.core.tracing.sdk import configure_tracing

    configure_tracing(settings)  # CROWN_NEXUS_OTEL_* / OTEL_*: an OTLP tracer provider, else no-op
    from crown_nexus.core.security import SecurityService, get_security_service

    with use_container(container):
        given = getattr(app.state, "security_service", None)
        if isinstance(given, SecurityService):  # the app built its own (a user loader...)
            dependency_manager.get_registry().provide("security_service", given)
        else:  # tokens are signed and checked with THIS app's secret
            app.state.security_service = get_security_service()
    install_exception_handlers(app)
    install_method_not_allowed(app)  # a 405's Allow lists every route of the path
    install_openapi(app)  # the document describes the envelope, SPEC §3 errors, every status
    stack = middleware_stack(settings, middleware_options, exclude_middleware)
    for cls, kwargs in reversed(stack):  # add_middleware puts the latest outermost
        app.add_middleware(cls, **kwargs)
    app.state.crown_nexus_middleware = [cls.__name__ for cls, _ in stack]
    if manage_services:
        app.router.lifespan_context = _with_services(app.router.lifespan_context)
    _scope_lifespan(app, container)
    _scope_app(app, container)
    app.state.crown_nexus_setup = True
    return app


def _scope_app(app: Any, container: AppContainer) -> None:
    """Make ``container`` current around the whole app: its middleware stack is built in it
    (middleware that look services up at construction get this app's) and wrapped, outermost,
    in a :class:`ContainerScope`."""
    build = app.build_middleware_stack

    def build_in_container() -> Any:
        token = set_current(container)
        try:
            inner = build()
        finally:
            reset_current(token)
        return ContainerScope(inner, container)

    app.build_middleware_stack = build_in_container


def _with_services(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A lifespan that starts the app's registered services (in its container), runs ``inner``,
    then stops them."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        started = await dependency_manager.initialize()
        app.state.services_started = started
        try:
            async with inner(app) as state:
                yield state
        finally:
            await dependency_manager.shutdown()

    return lifespan


def _in_container(inner: Callable[[Any], Any], container: AppContainer) -> Callable[[Any], Any]:
    """``inner`` (a lifespan) run with ``container`` current; it stays current in the body."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        token = set_current(container)
        try:
            async with inner(app) as state:
                yield state
        finally:
            reset_current(token)

    return lifespan


def _get_lifespan(router: Any) -> Callable[[Any], Any]:
    return _in_container(router.__dict__["_crown_nexus_lifespan"], router._crown_nexus_container)


def _set_lifespan(router: Any, value: Callable[[Any], Any]) -> None:
    router.__dict__["_crown_nexus_lifespan"] = value


_SCOPED_ROUTERS: dict[type, type] = {}


def _scope_lifespan(app: Any, container: AppContainer) -> None:
    """Make ``app.router.lifespan_context`` read as the stored lifespan run in ``container``,
    however it is entered or re-wrapped later: over ASGI, by ``crown_nexus.testing.app_client``,
    by a parent app running its mounts' lifespans, or after an app factory wraps it again
    (``router.lifespan_context = mine(router.lifespan_context)``). So what start-up starts —
    services, subscriptions, tasks — belongs to this app."""
    router = app.router
    base = type(router)
    scoped = _SCOPED_ROUTERS.get(base)
    if scoped is None:
        scoped = type(
            f"ContainerScoped{base.__name__}",
            (base,),
            {
                "lifespan_context": property(_get_lifespan, _set_lifespan),
                "__doc__": base.__doc__,
            },
        )
        scoped = _SCOPED_ROUTERS.setdefault(base, scoped)
    inner = router.__dict__.pop("lifespan_context", None) or router.lifespan_context
    router.__class__ = scoped
    router._crown_nexus_container = container
    router.__dict__["_crown_nexus_lifespan"] = inner
