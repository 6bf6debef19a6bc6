"""Manual rate limiting for operations inside the application (guide §8 "Manual Rate Limiting")."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.core.rate_limiting.models import (
    RateLimitAlgorithm,
    RateLimitRule,
    RateLimitStrategy,
)

__all__ = ["check_rate_limit"]

_ceil = math.ceil
_SLIDING_WINDOW = RateLimitAlgorithm.SLIDING_WINDOW
#: ``get_service("rate_limiting_service")`` without the generic lookup's calls
_service = get_registry().getter("rate_limiting_service")
#: algorithm -> max_requests -> window_seconds -> [rule, service, checker]: the validated rule
#: and the synchronous checker the service built for it (``RateLimitingService.memory_checker``).
#: Only exact ``int`` limits are cached (``True`` or ``5.0`` are still validated by pydantic);
#: nested dicts, so a lookup builds no tuple; bounded, cleared when full.
_RULES: dict[RateLimitAlgorithm, dict[int, dict[int, list[Any]]]] = {
    algo: {} for algo in RateLimitAlgorithm
}
#: the default algorithm's table (looked up by identity: an enum member's hash is a Python call)
_DEFAULT_RULES = _RULES[_SLIDING_WINDOW]
_RULES_MAX = 1024
_cached = [0]


def _entry(max_requests: int, window_seconds: int, algorithm: RateLimitAlgorithm) -> list[Any]:
    """The validated rule for these limits (pydantic raises for bad ones), cached when exact."""
    rule = RateLimitRule(
        requests_per_window=max_requests,
        window_seconds=window_seconds,
        strategy=RateLimitStrategy.USER,
        algorithm=algorithm,
    )
    entry: list[Any] = [rule, None, None]
    if type(max_requests) is int and type(window_seconds) is int:
        if _cached[0] >= _RULES_MAX:
            for table in _RULES.values():
                table.clear()
            _cached[0] = 0
        by_limit = _RULES[rule.effective_algorithm]
        by_limit.setdefault(max_requests, {})[window_seconds] = entry
        _cached[0] += 1
    return entry


def _checker(entry: list[Any], service: Any) -> Callable[[str], Any] | None:
    """The service's synchronous checker for the entry's rule, rebuilt when the service changes."""
    entry[1] = service
    make = getattr(service, "memory_checker", None)
    entry[2] = make(entry[0]) if make is not None else None
    return entry[2]  # type: ignore[no-any-return]


async def check_rate_limit(
    key: str,
    max_requests: int,
    window_seconds: int,
    *,
    algorithm: RateLimitAlgorithm = _SLIDING_WINDOW,
) -> tuple[bool, int, int]:
    """Count one operation for ``key``: at most ``max_requests`` per ``window_seconds``.

    Returns ``(is_limited, count, reset_seconds)``: ``count`` is the operations counted in the
    window, ``reset_seconds`` whole seconds until a refused operation would be admitted (≥ 1
    when limited) or until the count is back to zero (when allowed). Uses the application's
    rate limiting service, so its backend (memory or Redis) and failure policy apply. Invalid
    limits raise ``pydantic.ValidationError`` (a ``ValueError``).

    The rule is validated once per distinct limits; on the memory backend the check itself is a
    synchronous call into the compiled window (metrics recorded exactly as by the service).
    """
    entry = None
    if type(max_requests) is int and type(window_seconds) is int:
        if algorithm is _SLIDING_WINDOW:
            by_window = _DEFAULT_RULES.get(max_requests)
        else:
            try:
                by_window = _RULES[algorithm].get(max_requests)
            except (KeyError, TypeError):  # not an algorithm: let pydantic say what is wrong
                by_window = None
        if by_window is not None:
            entry = by_window.get(window_seconds)
    if entry is None:
        entry = _entry(max_requests, window_seconds, algorithm)
    service = _service()
    checker = entry[2] if entry[1] is service else _checker(entry, service)
    if checker is not None:
        answer = checker(key)
        if answer is not None:
            allowed, count, reset = answer
            if allowed:
                return False, count, (_ceil(reset - 1e-9) if reset > 1e-9 else 0)
            whole = _ceil(reset - 1e-9)
            return True, count, (whole if whole > 1 else 1)
    result = await service.check(key, entry[0])
    if result.allowed:
        reset = result.reset_after
        return False, result.count, (_ceil(reset - 1e-9) if reset > 1e-9 else 0)
    return True, result.count, result.retry_after_seconds
