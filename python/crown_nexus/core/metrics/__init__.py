"""Metrics (guide §6): prometheus-client metrics behind ``MetricsService``, registered as
``"metrics_service"``, with in-process readers (rate, sum, quantile over a recent window).

``get_service("metrics_service")`` (or :func:`get_metrics_service`) returns the shared service.
"""

from __future__ import annotations

from crown_nexus.core.metrics.base import (
    MetricName,
    MetricsConfig,
    MetricsError,
    MetricTag,
    MetricType,
)
from crown_nexus.core.metrics.decorators import (
    track_db_delete,
    track_db_insert,
    track_db_operation,
    track_db_select,
    track_db_update,
)
from crown_nexus.core.metrics.service import OVERFLOW_LABEL, MetricsService, get_metrics_service

__all__ = [
    "OVERFLOW_LABEL",
    "MetricName",
    "MetricTag",
    "MetricType",
    "MetricsConfig",
    "MetricsError",
    "MetricsService",
    "get_metrics_service",
    "track_db_delete",
    "track_db_insert",
    "track_db_operation",
    "track_db_select",
    "track_db_update",
]


def _register() -> None:
    from crown_nexus.core.dependency_manager import get_registry, register_service

    if "metrics_service" not in get_registry().names():
        register_service(MetricsService, name="metrics_service")  # one per app container


_register()
