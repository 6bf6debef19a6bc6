"""Manual rate limiting for operations inside the application (guide §8 "Manual Rate Limiting")."""

from __future__ import annotations

import math

from crown_nexus.core.rate_limiting.models import (
    RateLimitAlgorithm,
    RateLimitRule,
    RateLimitStrategy,
)

__all__ = ["check_rate_limit"]


async def check_rate_limit(
    key: str,
    max_requests: int,
    window_seconds: int,
    *,
    algorithm: RateLimitAlgorithm = RateLimitAlgorithm.SLIDING_WINDOW,
) -> tuple[bool, int, int]:
    """Count one operation for ``key``: at most ``max_requests`` per ``window_seconds``.

    Returns ``(is_limited, count, reset_seconds)``: ``count`` is the operations counted in the
    window, ``reset_seconds`` whole seconds until a refused operation would be admitted (≥ 1
    when limited) or until the count is back to zero (when allowed). Uses the application's
    rate limiting service, so its backend (memory or Redis) and failure policy apply. Invalid
    limits raise ``pydantic.ValidationError`` (a ``ValueError``).
    """
    from crown_nexus.core.rate_limiting.service import get_rate_limiting_service

    rule = RateLimitRule(
        requests_per_window=max_requests,
        window_seconds=window_seconds,
        strategy=RateLimitStrategy.USER,
        algorithm=algorithm,
    )
    result = await get_rate_limiting_service().check(key, rule)
    if result.allowed:
        return False, result.count, max(0, math.ceil(result.reset_after - 1e-9))
    return True, result.count, result.retry_after_seconds
