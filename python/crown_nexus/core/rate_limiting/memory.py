"""In-process rate-limit backend built on the compiled windows (``accel.get("rate_window")``).

One window object (sliding-window counter, sliding log or GCRA) per distinct rule signature;
the Cython twin is used when it is built, the pure Python reference otherwise. Each object
bounds its memory (``max_keys``, least-recently-used eviction of idle keys first) and drops
idle keys on :meth:`MemoryRateLimitBackend.sweep`. Checks never await, so on one event loop
each check is atomic: limit ``N`` admits exactly ``N`` concurrent requests per window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from crown_nexus import accel
from crown_nexus.core.rate_limiting.base import RateLimitBackend, make_result
from crown_nexus.core.rate_limiting.models import (
    RateLimitAlgorithm,
    RateLimitResult,
    RateLimitRule,
)

__all__ = ["MemoryRateLimitBackend"]

#: how often (seconds of the backend's clock) idle keys are swept, at most
SWEEP_INTERVAL = 60.0


class MemoryRateLimitBackend(RateLimitBackend):
    """Rate limits kept in this process.

    ``clock`` returns seconds (default ``time.monotonic``; tests inject a fake one).
    ``impl`` is a ``rate_window`` implementation module (default: the one ``accel`` chose).
    ``max_keys`` bounds the tracked keys per rule.
    """

    name = "memory"

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        impl: ModuleType | None = None,
        max_keys: int = 100_000,
    ) -> None:
        self._clock = clock
        self._impl = impl if impl is not None else accel.get("rate_window")
        self._max_keys = max_keys
        self._windows: dict[str, Any] = {}
        #: ``[when]``: the clock reading at which idle keys are next swept (a list, so a checker
        #: bound to this backend sees every update)
        self.sweep_due = [clock() + SWEEP_INTERVAL]

    @property
    def implementation(self) -> ModuleType:
        """The ``rate_window`` module in use (pure or compiled)."""
        return self._impl

    @property
    def clock(self) -> Callable[[], float]:
        """The clock the windows are read with (seconds)."""
        return self._clock

    def window(self, rule: RateLimitRule) -> Any:
        """The window object counting ``rule`` (one per rule signature, built on first use)."""
        win = self._windows.get(rule.hot_params[4])
        return win if win is not None else self._window(rule)

    def _window(self, rule: RateLimitRule) -> Any:
        sig = rule.signature
        win = self._windows.get(sig)
        if win is None:
            impl = self._impl
            algo = rule.effective_algorithm
            if algo is RateLimitAlgorithm.TOKEN_BUCKET:
                win = impl.GCRA(
                    rule.requests_per_window,
                    rule.window_seconds,
                    burst=rule.burst,
                    max_keys=self._max_keys,
                )
            elif algo is RateLimitAlgorithm.SLIDING_LOG:
                win = impl.SlidingLog(
                    rule.requests_per_window, rule.window_seconds, max_keys=self._max_keys
                )
            else:
                win = impl.SlidingWindowCounter(
                    rule.requests_per_window, rule.window_seconds, max_keys=self._max_keys
                )
            self._windows[sig] = win
        return win

    def hit_now(self, key: str, rule: RateLimitRule, cost: int = 1) -> RateLimitResult:
        """Synchronous :meth:`hit` (the check never waits on I/O)."""
        now = self._clock()
        if now >= self.sweep_due[0]:
            self.sweep(now)
        _, _, _, capacity, signature, policy_name, window = rule.hot_params
        win = self._windows.get(signature)
        if win is None:
            win = self._window(rule)
        allowed, count, reset = win.hit(key, now, cost)
        if allowed:
            return RateLimitResult(
                True, capacity, count, capacity - count if capacity > count else 0, reset, 0.0,
                window, policy_name,
            )
        return RateLimitResult(
            False, capacity, count, capacity - count if capacity > count else 0, reset, reset,
            window, policy_name,
        )

    async def hit(self, key: str, rule: RateLimitRule, cost: int = 1) -> RateLimitResult:
        """Count ``cost`` requests for ``key`` under ``rule`` if they fit (atomic, no I/O)."""
        return self.hit_now(key, rule, cost)

    def peek(self, key: str, rule: RateLimitRule) -> RateLimitResult:
        """What a unit hit would return now, without counting it."""
        allowed, count, reset = self._window(rule).peek(key, self._clock())
        return make_result(rule, allowed, count, reset)

    async def reset(self, key: str, rule: RateLimitRule) -> None:
        """Forget ``key`` under ``rule``."""
        self._window(rule).reset(key)

    def sweep(self, now: float | None = None) -> int:
        """Drop idle keys from every window; return how many were dropped."""
        if now is None:
            now = self._clock()
        self.sweep_due[0] = now + SWEEP_INTERVAL
        return sum(win.sweep(now) for win in self._windows.values())

    def clear(self) -> None:
        """Forget every key of every rule."""
        for win in self._windows.values():
            win.clear()
