"""The abstract rate-limit backend: memory and Redis implement it, one test suite runs on both."""

from __future__ import annotations

import abc

from crown_nexus.core.rate_limiting.models import RateLimitResult, RateLimitRule

__all__ = ["RateLimitBackend", "RateLimitBackendError", "check_cost", "make_result"]


class RateLimitBackendError(Exception):
    """The backend could not answer (e.g. Redis is unreachable); the service applies its policy."""


def check_cost(rule: RateLimitRule, cost: int) -> None:
    """Raise ``ValueError`` unless ``1 <= cost <= capacity`` (a request that could never pass)."""
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int, not {type(cost).__name__}")
    capacity = rule.burst
    if cost < 1 or cost > capacity:
        raise ValueError(f"cost must be between 1 and {capacity} for this rule, got {cost}")


def make_result(rule: RateLimitRule, allowed: bool, count: int, reset_after: float) -> RateLimitResult:
    """Build a result from a window's ``(allowed, count, reset_after)`` triple.

    The triple follows ``crown_nexus._pure.rate_window``: when denied, ``reset_after`` is the
    time until a retry would be admitted; when allowed, the time until the count is zero.
    """
    _, _, _, capacity, _, policy_name, window = rule.hot_params
    return RateLimitResult(
        allowed,
        capacity,
        count,
        capacity - count if capacity > count else 0,
        reset_after,
        0.0 if allowed else reset_after,
        window,
        policy_name,
    )


class RateLimitBackend(abc.ABC):
    """Stores rate-limit state; every method is atomic for one key.

    ``key`` is the client key (e.g. ``"ip:10.0.0.1"``); backends namespace it by
    ``rule.signature`` so rules with different limits never share counters.
    """

    #: name used in metrics labels and logs
    name: str = "abstract"

    @abc.abstractmethod
    async def hit(self, key: str, rule: RateLimitRule, cost: int = 1) -> RateLimitResult:
        """Count ``cost`` requests for ``key`` if they fit; return the outcome.

        A refused hit changes nothing. Raises :class:`RateLimitBackendError` when the store
        cannot be reached.
        """

    @abc.abstractmethod
    async def reset(self, key: str, rule: RateLimitRule) -> None:
        """Forget everything counted for ``key`` under ``rule``."""

    async def close(self) -> None:
        """Release connections; the backend is not used afterwards."""
        return None
