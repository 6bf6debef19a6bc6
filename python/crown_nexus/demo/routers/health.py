"""``GET /health``: version, hot path implementations and the backends in use right now.

The Kubernetes probes ``GET /health/live`` and ``GET /health/ready`` (database, Redis and the
Celery broker when configured; 503 naming what failed) are the library's
:func:`crown_nexus.integrations.fastapi.health_router`, included as :data:`probes`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import text

import crown_nexus
from crown_nexus import accel
from crown_nexus.core.dependency_manager import get_service
from crown_nexus.demo.routers._operator import is_operator
from crown_nexus.integrations.fastapi import health_router

router = APIRouter(tags=["health"])
#: ``/health/live`` and ``/health/ready`` (the app's settings and ``app.state.engine``)
probes = health_router()


async def _database_status(request: Request) -> dict[str, Any]:
    url: str = request.app.state.settings.database_url
    status = "ok"
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # report, never fail the health check itself
        status = f"error: {type(exc).__name__}"
    return {"driver": url.split(":", 1)[0], "status": status}


#: how long /health waits for Redis to answer a PING (seconds): a bound, never a hang
REDIS_PROBE_TIMEOUT = 0.1
#: PINGs /health sends before it reports Redis unreachable: one slow reply on a loaded machine
#: is not an outage (a stalled or dead Redis fails them all, within 2 x the timeout)
REDIS_PROBE_ATTEMPTS = 2


async def _redis_answers(cache: Any) -> bool:
    """Whether the cache's Redis answers one of :data:`REDIS_PROBE_ATTEMPTS` bounded PINGs."""
    for _ in range(REDIS_PROBE_ATTEMPTS):
        try:
            async with asyncio.timeout(REDIS_PROBE_TIMEOUT):
                if await cache.backend.ping():
                    return True
        except Exception:  # noqa: S112 - refused or slow: the next PING decides
            continue
    return False


async def _cache_backend(cache: Any) -> dict[str, Any]:
    """The cache's configured and serving backend. A Redis that does not answer a bounded PING
    (:data:`REDIS_PROBE_ATTEMPTS` tries) is not reported as serving: the cache moves to memory
    on its next operation (SPEC §8)."""
    active = cache.active_backend_name
    out: dict[str, Any] = {"configured": type(cache.backend).__name__, "active": active}
    if active == "redis":
        reachable = await _redis_answers(cache)
        if not reachable:
            out["active"] = "memory"
            out["redis"] = "unreachable"
    return out


async def _service_backends(request: Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        # the app's own cache (what its routes use), else the shared service
        cache = getattr(request.app.state, "cache_service", None) or get_service("cache_service")
        out["cache"] = await _cache_backend(cache)
    except Exception as exc:
        out["cache"] = {"error": type(exc).__name__}
    try:
        events = get_service("event_service")
        backend_type = events.backend_type
        out["events"] = backend_type.value if backend_type is not None else "not initialized"
    except Exception as exc:
        out["events"] = {"error": type(exc).__name__}
    try:
        security = getattr(request.app.state, "security_service", None) or get_service(
            "security_service"
        )
        out["token_revocation"] = type(security.blacklist).__name__
        if getattr(security.blacklist, "available", True) is False:
            out["token_revocation_redis"] = "unreachable (answering from the local replica)"
    except Exception as exc:
        out["token_revocation"] = {"error": type(exc).__name__}
    return out


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Report liveness, the package version, ``accel.implementations()`` and the backends.

    ``backends.database`` names the SQLAlchemy driver in use; ``backends.services`` says which
    backend the cache (and whether it currently falls back to memory), the event bus and the
    token revocation list use. A failing backend is reported, never turned into a 500. In
    production only operators (see ``_operator``) see more than ``{"status": ...}``.
    """
    state = request.app.state
    backends: dict[str, Any] = dict(getattr(state, "backends", {}))
    database = await _database_status(request)
    status = "ok" if database["status"] == "ok" else "degraded"
    if not await is_operator(request):
        return {"status": status}  # production: versions and backends are for operators only
    backends["database_status"] = database["status"]
    backends["services"] = await _service_backends(request)
    return {
        "status": status,
        "version": crown_nexus.__version__,
        "environment": state.settings.ENVIRONMENT.value,
        "implementations": accel.implementations(),
        "backends": backends,
    }
