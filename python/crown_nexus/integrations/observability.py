"""Operator routes for a FastAPI app: a guarded ``/metrics`` and Kubernetes-style health probes.

``metrics_router(settings)`` serves ``GET /metrics``: the Prometheus text exposition of the
``metrics_service``, every granian worker included in multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``; the live gauges of exited workers are dropped before each scrape).
Who may read it (:class:`MetricsAccess`):

* a request with ``Authorization: Bearer <CROWN_NEXUS_METRICS_TOKEN>`` (compared in constant time);
* a request whose direct peer address is in ``CROWN_NEXUS_METRICS_ALLOWED_IPS`` (addresses or
  CIDR networks; the TCP peer, never ``X-Forwarded-For``: Prometheus scrapes pods directly);
* a request an optional ``authorize(request)`` callback accepts (the reference service lets
  ``system:admin`` users in);
* outside production, when neither a token nor an allow-list is configured, everyone.

Otherwise the answer is 401 (``WWW-Authenticate: Bearer``) when a token is configured or a
credential was presented, 403 when only the allow-list could have admitted the caller. In
production with nothing configured nobody is admitted (403): the metrics are never anonymous.

``health_router(...)`` serves three probes:

* ``GET /health/live``: the process answers; always ``200 {"status": "ok"}``, touches nothing.
* ``GET /health/ready``: every configured dependency answers within ``timeout`` seconds (a
  check gets :data:`CHECK_ATTEMPTS` tries within that bound, so one slow or refused reply on a
  loaded machine is no 503; a dead or stalled dependency fails every try)
  (database ``SELECT 1``; Redis ``PING`` when a Redis URL is configured; the Celery broker
  when ``event_backend`` is ``celery``); ``200 {"status": "ok", "checks": {...}}`` or ``503``
  with the SPEC §3 error body whose ``details`` are
  ``{"status": "unavailable", "failed": ["redis"], "checks": {"database": "ok", "redis": "down"}}``.
  Errors are logged (a warning when a dependency starts failing, info when it passes again),
  never put in the body.
* ``GET /health`` (``include_summary=True``): ``{"status": "ok" | "degraded"}``.

Neither route is rate limited by the default rules (``/health`` and ``/metrics`` are excluded by
prefix) nor counted by ``MetricsMiddleware``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from crown_nexus.core._redis import open_redis
from crown_nexus.core.exceptions import (
    AuthenticationException,
    ErrorCode,
    PermissionDeniedException,
    ResourceNotFoundException,
    current_request_id,
    error_body,
)
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings, get_settings

__all__ = [
    "DependencyCheck",
    "MetricsAccess",
    "ProbeStatus",
    "celery_broker_check",
    "database_check",
    "health_router",
    "metrics_router",
    "redis_check",
]

logger = get_logger("crown_nexus.integrations.observability")

#: the outcome of one dependency check
ProbeStatus = Literal["ok", "down", "timeout"]
#: an async callable answering when the dependency is reachable and raising when it is not
DependencyCheck = Callable[[], Awaitable[Any]]
Authorize = Callable[[Request], Awaitable[bool]]
SettingsSource = Settings | Callable[[Request], Settings] | None


def _settings_of(source: SettingsSource, request: Request) -> Settings:
    if isinstance(source, Settings):
        return source
    if source is not None:
        return source(request)
    found = getattr(request.app.state, "settings", None)
    return found if isinstance(found, Settings) else get_settings()


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


class MetricsAccess:
    """Who may read the metrics, for one app's settings (see the module docstring)."""

    def __init__(self, settings: Settings, authorize: Authorize | None = None) -> None:
        self.production = settings.is_production
        token = settings.metrics_token
        self.token: bytes | None = token.get_secret_value().encode() if token is not None else None
        self.networks = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in settings.metrics_allowed_ips
        )
        self.authorize = authorize

    @property
    def open(self) -> bool:
        """True when anyone may read (outside production, no token, no allow-list)."""
        return not self.production and self.token is None and not self.networks

    def token_matches(self, request: Request) -> bool:
        """True when the request's bearer token is the metrics token (constant-time)."""
        presented = _bearer(request)
        if self.token is None or presented is None:
            return False
        return hmac.compare_digest(presented.encode(), self.token)

    def peer_allowed(self, request: Request) -> bool:
        """True when the request's direct peer address is in the allow-list."""
        if not self.networks or request.client is None:
            return False
        try:
            address = ipaddress.ip_address(request.client.host)
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        candidates = (address, mapped) if mapped is not None else (address,)
        return any(a in net for a in candidates for net in self.networks if a.version == net.version)

    async def check(self, request: Request) -> None:
        """Return when ``request`` may read the metrics; raise 401/403 otherwise."""
        if self.open or self.token_matches(request) or self.peer_allowed(request):
            return
        if self.authorize is not None and await self.authorize(request):
            return
        if self.token is not None or _bearer(request) is not None or self.authorize is not None:
            raise AuthenticationException(message="Metrics need the metrics token")
        raise PermissionDeniedException(message="Metrics are not available to this client")


def metrics_router(
    settings: SettingsSource = None,
    *,
    path: str = "/metrics",
    metrics_service: Any = None,
    authorize: Authorize | None = None,
    tags: Sequence[str] = ("observability",),
) -> APIRouter:
    """A router serving ``GET {path}``: the Prometheus exposition, guarded by :class:`MetricsAccess`.

    ``settings``: a :class:`Settings`, a callable taking the request, or ``None`` for the app's
    ``app.state.settings`` (else the loaded settings); read per request. ``metrics_service``:
    default ``get_service("metrics_service")``. ``authorize(request)``: an extra way in (for
    example an admin user). In multiprocess mode every worker's values are included and the
    live gauges of dead workers are dropped first.
    """
    router = APIRouter(tags=list(tags))
    #: the access rules of the settings object seen last (rebuilt when it changes)
    cached: list[tuple[Settings, MetricsAccess]] = []

    def access_for(request: Request) -> MetricsAccess:
        current = _settings_of(settings, request)
        if cached and cached[0][0] is current:
            return cached[0][1]
        access = MetricsAccess(current, authorize)
        cached[:] = [(current, access)]
        return access

    def service() -> Any:
        if metrics_service is not None:
            return metrics_service
        from crown_nexus.core.dependency_manager import get_service

        return get_service("metrics_service")

    @router.get(path, include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """The Prometheus text exposition (all workers); operators only (module docstring).

        404 when ``CROWN_NEXUS_METRICS_ENABLED`` is false: nothing is recorded, nothing served.
        """
        if not _settings_of(settings, request).metrics_enabled:
            raise ResourceNotFoundException(message="Metrics are disabled")
        await access_for(request).check(request)
        svc = service()
        dead = svc.cleanup_dead_workers()
        if dead:
            logger.info("Dropped the live gauges of exited workers", pids=dead)
        body, content_type = svc.render_latest()
        return Response(content=body, media_type=content_type)

    return router


# ----------------------------------------------------------------------------- probes


def database_check(engine: Any) -> DependencyCheck:
    """A check running ``SELECT 1`` on ``engine`` (an ``AsyncEngine``)."""
    from sqlalchemy import text

    async def check() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return check


def redis_check(url: str, timeout: float = 0.5) -> DependencyCheck:
    """A check sending ``PING`` to the Redis at ``url`` on a fresh connection."""

    async def check() -> None:
        client = open_redis(
            url,
            what="the Redis readiness check",
            connect_timeout=timeout,
            socket_timeout=timeout,
            retries=0,  # a probe answers now; it is asked again soon
        )
        try:
            await client.ping()
        finally:
            await client.aclose()

    return check


def celery_broker_check(url: str, timeout: float = 0.5) -> DependencyCheck:
    """A check opening (then closing) a connection to the Celery broker at ``url`` (kombu)."""

    def connect() -> None:
        from kombu import Connection

        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        with Connection(url, connect_timeout=timeout, transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)

    async def check() -> None:
        await asyncio.to_thread(connect)

    return check


def _celery_broker(settings: Settings) -> str | None:
    if settings.event_backend != "celery":
        return None
    return settings.celery_broker_url or settings.redis_url


def default_checks(settings: Settings, engine: Any = None, timeout: float = 0.5) -> dict[str, DependencyCheck]:
    """The readiness checks ``settings`` call for: ``database`` (when ``engine`` is given),
    ``redis`` (when a Redis URL is configured), ``celery_broker`` (when events go to Celery)."""
    checks: dict[str, DependencyCheck] = {}
    if engine is not None:
        checks["database"] = database_check(engine)
    if settings.redis_url:
        checks["redis"] = redis_check(settings.redis_url, timeout)
    broker = _celery_broker(settings)
    if broker:
        checks["celery_broker"] = celery_broker_check(broker, timeout)
    return checks


#: attempts a readiness check gets within its ``timeout`` before its dependency counts as
#: failed: on a loaded machine one slow or refused reply is not an outage. Every attempt but the
#: last gets ``timeout / CHECK_ATTEMPTS``; the last gets what is left.
CHECK_ATTEMPTS = 2


async def _attempts(check: DependencyCheck, timeout: float) -> tuple[ProbeStatus, str]:  # noqa: ASYNC109
    """``check`` tried up to :data:`CHECK_ATTEMPTS` times within ``timeout`` seconds: its
    status and, when it failed, why (for the log)."""
    deadline = time.perf_counter() + timeout
    status: ProbeStatus = "down"
    reason = ""
    for attempt in range(1, CHECK_ATTEMPTS + 1):
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        bound = left if attempt == CHECK_ATTEMPTS else min(left, timeout / CHECK_ATTEMPTS)
        try:
            async with asyncio.timeout(bound):
                await check()
        except TimeoutError:
            status, reason = "timeout", f"no answer within {bound:.3f} s"
        except Exception as exc:  # any failure is "down"; the reason goes to the log only
            status, reason = "down", f"{type(exc).__name__}: {exc}"
        else:
            return "ok", ""
    return status, reason


class _CheckLog:
    """Logs each dependency's changes (a warning when it fails, info when it is back), not
    every failed probe: one warning per outage however often the probe is asked."""

    def __init__(self) -> None:
        self.failing: dict[str, float] = {}  # dependency -> when it started failing

    def record(self, name: str, status: ProbeStatus, reason: str, timeout: float) -> None:
        since = self.failing.get(name)
        if status == "ok":
            if since is not None:
                del self.failing[name]
                logger.info(
                    "Readiness check passes again",
                    dependency=name,
                    failed_for=round(time.monotonic() - since, 3),
                )
            return
        if since is not None:
            logger.debug("Readiness check still failing", dependency=name, status=status)
            return
        self.failing[name] = time.monotonic()
        logger.warning(
            "Readiness check timed out" if status == "timeout" else "Readiness check failed",
            dependency=name,
            error=reason,
            timeout=timeout,
            attempts=CHECK_ATTEMPTS,
        )


async def _run_check(
    name: str, check: DependencyCheck, timeout: float, log: _CheckLog  # noqa: ASYNC109
) -> ProbeStatus:
    status, reason = await _attempts(check, timeout)
    log.record(name, status, reason, timeout)
    return status


async def run_checks(
    checks: Mapping[str, DependencyCheck],
    timeout: float = 1.0,  # noqa: ASYNC109
    log: _CheckLog | None = None,
) -> dict[str, ProbeStatus]:
    """Run ``checks`` concurrently, each bounded by ``timeout`` seconds and tried up to
    :data:`CHECK_ATTEMPTS` times within it; name → outcome (``ok`` when an attempt passed)."""
    names = list(checks)
    log = log or _CheckLog()
    results = await asyncio.gather(*(_run_check(n, checks[n], timeout, log) for n in names))
    return dict(zip(names, results, strict=True))


def health_router(
    settings: SettingsSource = None,
    *,
    engine: Any = None,
    checks: Mapping[str, DependencyCheck] | None = None,
    extra_checks: Mapping[str, DependencyCheck] | None = None,
    prefix: str = "/health",
    timeout: float = 1.0,
    dependency_timeout: float = 0.5,
    include_summary: bool = False,
    tags: Iterable[str] = ("health",),
) -> APIRouter:
    """A router with ``{prefix}/live`` and ``{prefix}/ready`` (and ``{prefix}`` when
    ``include_summary``), as the module docstring describes.

    The readiness checks are ``checks`` when given, else :func:`default_checks` for the
    settings (``engine``: an ``AsyncEngine``, or ``None`` for ``app.state.engine`` when there is
    one), plus ``extra_checks``. Each check gets ``timeout`` seconds; Redis and the broker
    connect with ``dependency_timeout``.
    """
    router = APIRouter(prefix=prefix, tags=list(tags))
    check_log = _CheckLog()  # one warning per dependency outage, not one per probe

    def readiness_checks(request: Request) -> dict[str, DependencyCheck]:
        if checks is not None:
            chosen = dict(checks)
        else:
            current = _settings_of(settings, request)
            db = engine if engine is not None else getattr(request.app.state, "engine", None)
            chosen = default_checks(current, db, dependency_timeout)
        chosen.update(extra_checks or {})
        return chosen

    async def readiness(request: Request) -> tuple[bool, dict[str, ProbeStatus]]:
        results = await run_checks(readiness_checks(request), timeout, check_log)
        return all(r == "ok" for r in results.values()), results

    @router.get("/live")
    async def live() -> dict[str, str]:
        """Liveness: the process answers (no dependency is touched)."""
        return {"status": "ok"}

    @router.get("/ready", response_model=None)
    async def ready(request: Request) -> dict[str, Any] | JSONResponse:
        """Readiness: 200 when every configured dependency answers, else 503 naming them."""
        ok, results = await readiness(request)
        if ok:
            return {"status": "ok", "checks": results}
        failed = [name for name, status in results.items() if status != "ok"]
        body = error_body(
            f"Not ready: {', '.join(failed)} unavailable",
            ErrorCode.NETWORK_ERROR,
            {"status": "unavailable", "failed": failed, "checks": results},
            current_request_id(),
        )
        return JSONResponse(status_code=503, content=body, headers={"Cache-Control": "no-store"})

    if include_summary:

        @router.get("")
        async def summary(request: Request) -> dict[str, str]:
            """``{"status": "ok"}`` when ready, ``{"status": "degraded"}`` otherwise (200)."""
            ok, _ = await readiness(request)
            return {"status": "ok" if ok else "degraded"}

    return router
