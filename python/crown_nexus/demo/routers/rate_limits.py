"""Rate limits of the reference service (guide §8), built only from the public API.

* Middleware rules (:data:`RULES`): every path 600 requests/min per client IP, except
  ``/health`` (``/metrics`` is limited too); the authentication endpoints (``/auth/``) 20 requests/min per IP
  with an exact sliding log, so credential guessing is throttled far more than browsing.
* ``GET /rate-limits`` lists the rules and what the calling client has left.
* ``POST /rate-limits/reports`` (authenticated) is limited in the endpoint itself, as the guide's
  "Using the Rate Limiting Service" example does: 3 reports per hour per user (the caller is
  authenticated first, so the key is the user's id, never a shared IP).

:func:`middleware_options` builds the app's :class:`RateLimitingService` for its settings
(Redis when ``REDIS_URI`` is set, memory otherwise) and hands it to ``setup_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, Request

from crown_nexus.core.rate_limiting import (
    RateLimitAlgorithm,
    RateLimitingService,
    RateLimitRule,
    RateLimitStrategy,
    create_rate_limiting_service,
    exceeded_from_result,
)
from crown_nexus.core.security.dependencies import get_current_user_with_permissions
from crown_nexus.integrations.fastapi import rate_limit_rules
from crown_nexus.settings import Settings

__all__ = ["AUTH_RULE", "GLOBAL_RULE", "REPORT_RULE", "RULES", "middleware_options", "router"]

router = APIRouter(prefix="/rate-limits", tags=["demo: rate limits"])

GLOBAL_RULE = RateLimitRule(
    requests_per_window=600,
    window_seconds=60,
    strategy=RateLimitStrategy.IP,
    exclude_paths=["/health"],
    name="global",
)
AUTH_RULE = RateLimitRule(
    requests_per_window=20,
    window_seconds=60,
    strategy=RateLimitStrategy.IP,
    path_pattern="/auth/",
    algorithm=RateLimitAlgorithm.SLIDING_LOG,
    name="auth",
)
REPORT_RULE = RateLimitRule(
    requests_per_window=3,
    window_seconds=3600,
    strategy=RateLimitStrategy.USER,
    name="reports",
)
RULES: tuple[RateLimitRule, ...] = (GLOBAL_RULE, AUTH_RULE)


def middleware_options(app: Any, settings: Settings) -> dict[str, dict[str, Any]]:
    """``setup_app`` options installing :data:`RULES` on the app's own rate limiting service.

    ``CROWN_NEXUS_RATE_LIMIT_RULES`` replaces the rules, ``CROWN_NEXUS_RATE_LIMIT_DEFAULT``
    retunes the global one (:func:`crown_nexus.integrations.fastapi.rate_limit_rules`).

    The service is stored as ``app.state.rate_limiting_service`` and closed when the app shuts
    down (its lifespan is wrapped).
    """
    service = create_rate_limiting_service(settings)
    app.state.rate_limiting_service = service
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(the_app: Any) -> AsyncIterator[Any]:
        """Run the app's lifespan, then close the rate limiting service."""
        try:
            async with inner(the_app) as state:
                yield state
        finally:
            await service.close()

    app.router.lifespan_context = lifespan
    # CROWN_NEXUS_RATE_LIMIT_RULES / _DEFAULT replace or retune these rules
    rules = rate_limit_rules(settings, RULES)
    app.state.rate_limit_rules = rules
    return {"RateLimitMiddleware": {"rules": rules, "service": service}}


def _service(request: Request) -> RateLimitingService:
    return request.app.state.rate_limiting_service  # type: ignore[no-any-return]


@router.get("")
async def rate_limit_status(request: Request) -> dict[str, Any]:
    """The middleware rules and the calling client's state under the rule that governs it."""
    current = getattr(request.state, "rate_limit", None)
    return {
        "rules": [
            {
                "name": rule.policy_name,
                "requests_per_window": rule.requests_per_window,
                "window_seconds": rule.window_seconds,
                "strategy": rule.strategy.value,
                "algorithm": rule.effective_algorithm.value,
                "path_pattern": rule.path_pattern,
                "exclude_paths": rule.exclude_paths,
            }
            for rule in getattr(request.app.state, "rate_limit_rules", RULES)
        ],
        "client": None
        if current is None
        else {"limit": current.limit, "remaining": current.remaining, "reset": current.reset_seconds},
    }


@router.post("/reports", status_code=201)
async def create_report(
    request: Request,
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """Create a (pretend) report: authenticated only (401 otherwise); at most 3 per hour per
    user (whatever address they call from), 429 with headers beyond that."""
    service = _service(request)
    key = service.get_key_for_request(request, REPORT_RULE)
    result = await service.check(key, REPORT_RULE)
    if not result.allowed:
        raise exceeded_from_result(
            result,
            message="Report generation limit exceeded",
            details={"limit": result.limit, "window": "1 hour"},
        )
    return {"report": "queued", "rate_limit": {"current": result.count, "limit": result.limit}}
