"""Cheap cache metrics: count locally on the hot path, hand totals to the metrics service in batches.

A cache hit costs well under a microsecond on the memory backend, while one call into the metrics
service costs more than that. So each operation only bumps a local counter (and is timed while fewer than ``max_samples``
durations wait to be handed over); the totals are handed to ``metrics_service`` (``increment_counter``
with the batch amount, ``observe_histogram`` per timed sample) at most every 20 ms (the first operation after a quiet
spell is handed over at the end of its event-loop iteration), when 256 operations have piled up,
on :meth:`CacheMetrics.flush` (``CacheService.flush_metrics()``), and at shutdown.
The metrics are the guide's: ``cache_operations_total``, ``cache_hit_total``,
``cache_miss_total`` and ``cache_operation_duration_seconds``, labelled ``operation``,
``backend`` and ``component`` (as ``MetricsService.track_cache_operation`` labels them), plus
``cache_fallback_total`` (times Redis was replaced by memory) and the gauge ``cache_backend_up``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crown_nexus.logging import get_logger

__all__ = ["CacheMetrics"]

logger = get_logger("crown_nexus.core.cache")

_BATCH = 256
#: at most one hand-over per interval (seconds): under load every op yields to the loop, and
#: handing counts over after each one would cost more than the operation itself
FLUSH_INTERVAL = 0.02

OPERATIONS = "cache_operations_total"
HITS = "cache_hit_total"
MISSES = "cache_miss_total"
DURATION = "cache_operation_duration_seconds"
FALLBACKS = "cache_fallback_total"
BACKEND_UP = "cache_backend_up"


class CacheMetrics:
    """Local counters for one cache service, flushed to the metrics service in batches."""

    def __init__(self, component: str = "cache", *, enabled: bool = True, max_samples: int = 16):
        self.component = component
        self.enabled = enabled
        # (operation, backend, outcome) -> count; outcome: "hit", "miss" or "" (no hit/miss)
        self.counts: dict[tuple[str, str, str], int] = {}
        self.samples: list[tuple[str, str, float]] = []
        #: durations timed per hand-over: every operation at low traffic, a bounded sample at
        #: high traffic (so the histogram costs at most ``max_samples`` observations per 20 ms)
        self.max_samples = max_samples
        self.ops = 0
        self.pending = 0
        self._scheduled = False
        self._last_flush = 0.0
        self._failed_logged = False

    def count(self, key: tuple[str, str, str]) -> None:
        """Record one operation ``(operation, backend, outcome)`` (cheap; flushed later)."""
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        self.pending += 1
        if not self._scheduled:
            self._schedule()
        elif self.pending >= _BATCH:
            self.flush()

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        delay = self._last_flush + FLUSH_INTERVAL - time.monotonic()
        if delay <= 0:
            loop.call_soon(self.flush)
        else:
            loop.call_later(delay, self.flush)

    def _metrics_service(self) -> Any:
        from crown_nexus.core.dependency_manager import get_service

        return get_service("metrics_service")

    def flush(self) -> None:
        """Hand the pending counts and samples to ``metrics_service`` (never raises)."""
        self._scheduled = False
        self.pending = 0
        self._last_flush = time.monotonic()
        if not self.counts and not self.samples:
            return
        counts, self.counts = self.counts, {}
        samples, self.samples = self.samples, []
        if not self.enabled:
            return
        try:
            ms = self._metrics_service()
            component = self.component
            for (operation, backend, outcome), n in counts.items():
                labels = {"operation": operation, "backend": backend, "component": component}
                ms.increment_counter(OPERATIONS, n, labels)
                if outcome == "hit":
                    ms.increment_counter(HITS, n, labels)
                elif outcome == "miss":
                    ms.increment_counter(MISSES, n, labels)
            for operation, backend, seconds in samples:
                ms.observe_histogram(
                    DURATION,
                    seconds,
                    {"operation": operation, "backend": backend, "component": component},
                )
        except Exception as exc:  # metrics must never break the cache
            if not self._failed_logged:
                self._failed_logged = True
                logger.warning("cache metrics could not be recorded", error=repr(exc))

    def backend_state(self, backend: str, up: bool, *, count_fallback: bool = True) -> None:
        """Record a switch of ``backend`` to its fallback (``up=False``) or back (``up=True``);
        ``count_fallback=False`` only sets the gauge (the state found at start-up)."""
        if not self.enabled:
            return
        try:
            ms = self._metrics_service()
            labels = {"backend": backend, "component": self.component}
            # several workers: 0 while any live worker runs on its fallback
            ms.create_gauge(
                BACKEND_UP,
                "1 while the cache backend is in use, 0 while it has fallen back to memory",
                list(labels),
                multiprocess_mode="livemin",
            )
            if not up and count_fallback:
                ms.increment_counter(FALLBACKS, 1, labels)
            ms.set_gauge(BACKEND_UP, 1.0 if up else 0.0, labels)
        except Exception as exc:
            if not self._failed_logged:
                self._failed_logged = True
                logger.warning("cache metrics could not be recorded", error=repr(exc))
