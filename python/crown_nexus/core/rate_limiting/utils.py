"""Manual rate limiting for operations inside the application (guide §8 "Manual Rate Limiting")."""

from __future__ import annotations

import math
from typing import Any

from crown_nexus import accel
from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.core.rate_limiting.models import (
    RateLimitAlgorithm,
    RateLimitResult,
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
#: nested dicts, so a lookup builds no tuple; bounded, cleared when full -- in place, never
#: replaced: :data:`_fast` reads these very dicts.
_RULES: dict[RateLimitAlgorithm, dict[int, dict[int, list[Any]]]] = {
    algo: {} for algo in RateLimitAlgorithm
}
_RULES_MAX = 1024
_cached = [0]
#: the whole allowed or refused check in one call (``rate_window.CheckRateLimit`` of the chosen
#: implementation): cached rule, current service (looked up directly while the registry has no
#: overrides, see ``ServiceRegistry.direct_lookup``), its checker's ``guide`` answer -- or the
#: entry when that service must answer, ``None`` when :func:`_full_check` must
_fast = accel.get("rate_window").CheckRateLimit(
    _service, _RULES, _SLIDING_WINDOW, get_registry().direct_lookup("rate_limiting_service")
).fast


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


def _cached_entry(
    max_requests: int, window_seconds: int, algorithm: RateLimitAlgorithm
) -> list[Any] | None:
    """The cached entry for exact ``int`` limits, or ``None``."""
    if type(max_requests) is not int or type(window_seconds) is not int:
        return None
    try:
        by_limit = _RULES.get(algorithm)
    except TypeError:  # not hashable, so not an algorithm: pydantic says what is wrong
        return None
    by_window = by_limit.get(max_requests) if by_limit is not None else None
    return by_window.get(window_seconds) if by_window is not None else None


def _checker(entry: list[Any], service: Any) -> Any:
    """The service's synchronous checker for the entry's rule, rebuilt when the service changes."""
    entry[1] = service
    make = getattr(service, "memory_checker", None)
    entry[2] = make(entry[0]) if make is not None else None
    return entry[2]


async def _full_check(
    key: str, max_requests: int, window_seconds: int, algorithm: RateLimitAlgorithm
) -> tuple[bool, int, int]:
    """:func:`check_rate_limit` when the fast path declined: validate and cache the rule, build
    the service's checker, or await ``service.check`` (the sampled check, another backend, a key
    that is not a plain ``str``)."""
    entry = _cached_entry(max_requests, window_seconds, algorithm)
    service = _service()
    if entry is None:
        entry = _entry(max_requests, window_seconds, algorithm)
        checker = _checker(entry, service)
    elif entry[1] is not service:
        checker = _checker(entry, service)
    else:  # the current service's checker declined (or there is none): the service answers
        checker = None
    if checker is not None:
        answer: tuple[bool, int, int] | None = checker.guide(key)
        if answer is not None:
            return answer
    return _answer(await service.check(key, entry[0]))


def _answer(result: RateLimitResult) -> tuple[bool, int, int]:
    """The guide's ``(is_limited, count, reset_seconds)`` for a service's result."""
    if result.allowed:
        reset = result.reset_after
        return False, result.count, (_ceil(reset - 1e-9) if reset > 1e-9 else 0)
    return True, result.count, result.retry_after_seconds


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

    The rule is validated once per distinct limits; on the memory backend the check itself is
    one synchronous call into the compiled window (metrics recorded exactly as by the service).
    """
    answer = _fast(key, max_requests, window_seconds, algorithm)
    if type(answer) is tuple:
        return answer  # type: ignore[return-value]
    if answer is None:
        return await _full_check(key, max_requests, window_seconds, algorithm)
    # the cached entry of the current service, whose checker declined (the sampled check, a
    # key that is not a plain str) or which has none (another backend): the service answers
    return _answer(await answer[1].check(key, answer[0]))
