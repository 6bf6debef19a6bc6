"""The guide's ready-made trackers: database queries, service calls and cache operations.

Each ``track_*`` call records a fixed family of metrics under the guide's names
(:class:`~crown_nexus.core.metrics.base.MetricName`) and labels
(:class:`~crown_nexus.core.metrics.base.MetricTag`). HTTP requests have their own module
(:mod:`.http`): they are on every request's path.
"""

from __future__ import annotations

from typing import Any

from crown_nexus.core.metrics.base import MetricName, MetricTag
from crown_nexus.core.metrics.recording import MetricStore

__all__ = ["MetricTrackers"]


class MetricTrackers(MetricStore):
    """``track_db_query``, ``track_service_call``, ``track_cache_operation``."""

    def track_db_query(
        self, operation: str, entity: str, duration: float, error: str | None = None
    ) -> None:
        """Count a query (``db_queries_total{operation,entity,status}``), observe its duration
        (``db_query_duration_seconds{operation,entity}``) and count errors by type."""
        self._track_call(
            MetricName.DB_QUERIES_TOTAL,
            MetricName.DB_QUERY_DURATION_SECONDS,
            MetricName.DB_ERRORS_TOTAL,
            {MetricTag.OPERATION: operation, MetricTag.ENTITY: entity},
            duration,
            error,
        )

    def track_service_call(
        self, component: str, action: str, duration: float, error: str | None = None
    ) -> None:
        """Count a call (``service_calls_total{component,action,status}``), observe its duration
        (``service_call_duration_seconds{component,action}``) and count errors by type."""
        self._track_call(
            MetricName.SERVICE_CALLS_TOTAL,
            MetricName.SERVICE_CALL_DURATION_SECONDS,
            MetricName.SERVICE_ERRORS_TOTAL,
            {MetricTag.COMPONENT: component, MetricTag.ACTION: action},
            duration,
            error,
        )

    def _track_call(
        self,
        total: str,
        histogram: str,
        errors: str,
        labels: dict[Any, Any],
        duration: float,
        error: str | None,
    ) -> None:
        self.increment_counter(
            total, 1, {**labels, MetricTag.STATUS: "error" if error else "success"}
        )
        self.observe_histogram(histogram, duration, labels)
        if error:
            self.increment_counter(errors, 1, {**labels, MetricTag.ERROR_TYPE: error})

    def track_cache_operation(
        self,
        operation: str,
        backend: str,
        hit: bool | None = None,
        duration: float | None = None,
        component: str = "default",
    ) -> None:
        """Count a cache operation (``cache_operations_total``), a hit (``cache_hit_total``) or
        miss (``cache_miss_total``) when ``hit`` is given, and observe ``duration``
        (``cache_operation_duration_seconds``), all labelled ``operation, backend, component``."""
        labels = {
            MetricTag.OPERATION: operation,
            MetricTag.BACKEND: backend,
            MetricTag.COMPONENT: component,
        }
        self.increment_counter(MetricName.CACHE_OPERATIONS_TOTAL, 1, labels)
        if hit is not None:
            self.increment_counter(
                MetricName.CACHE_HIT_TOTAL if hit else MetricName.CACHE_MISS_TOTAL, 1, labels
            )
        if duration is not None:
            self.observe_histogram(MetricName.CACHE_OPERATION_DURATION_SECONDS, duration, labels)
