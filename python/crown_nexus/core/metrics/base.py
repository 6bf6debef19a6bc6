"""Names and configuration of the metrics system: ``MetricType``, ``MetricName``, ``MetricTag``,
``MetricsConfig`` and ``MetricsError``."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["MetricName", "MetricTag", "MetricType", "MetricsConfig", "MetricsError"]


class MetricsError(ValueError):
    """A metric was used against its definition: wrong type for an existing name, an invalid
    name, a negative counter increment or a non-numeric value."""


class MetricType(enum.StrEnum):
    """Kind of a metric (prometheus-client class it maps to)."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"


class MetricName(enum.StrEnum):
    """Metrics the service records itself (``track_*``, middleware, decorators)."""

    HTTP_REQUESTS_TOTAL = "http_requests_total"
    HTTP_REQUEST_DURATION_SECONDS = "http_request_duration_seconds"
    HTTP_IN_PROGRESS = "http_requests_in_progress"
    HTTP_ERRORS_TOTAL = "http_errors_total"
    DB_QUERIES_TOTAL = "db_queries_total"
    DB_QUERY_DURATION_SECONDS = "db_query_duration_seconds"
    DB_ERRORS_TOTAL = "db_errors_total"
    SERVICE_CALLS_TOTAL = "service_calls_total"
    SERVICE_CALL_DURATION_SECONDS = "service_call_duration_seconds"
    SERVICE_ERRORS_TOTAL = "service_errors_total"
    CACHE_OPERATIONS_TOTAL = "cache_operations_total"
    CACHE_HIT_TOTAL = "cache_hit_total"
    CACHE_MISS_TOTAL = "cache_miss_total"
    CACHE_OPERATION_DURATION_SECONDS = "cache_operation_duration_seconds"
    FUNCTION_DURATION_SECONDS = "function_duration_seconds"
    FUNCTION_IN_PROGRESS = "function_calls_in_progress"


class MetricTag(enum.StrEnum):
    """Label names used by the built-in metrics (usable as keys of a ``labels`` dict)."""

    METHOD = "method"
    ENDPOINT = "endpoint"
    STATUS_CODE = "status_code"
    ERROR_CODE = "error_code"
    ERROR_TYPE = "error_type"
    STATUS = "status"
    OPERATION = "operation"
    ENTITY = "entity"
    COMPONENT = "component"
    ACTION = "action"
    BACKEND = "backend"
    FUNCTION = "function"
    MODULE = "module"
    ENVIRONMENT = "environment"
    SERVICE = "service"


@dataclass(slots=True)
class MetricsConfig:
    """How the metrics service names and exports metrics.

    ``namespace``/``subsystem`` prefix every exported name (``crown_nexus_api_<name>``);
    ``default_labels`` are added to every metric; ``enable_prometheus`` with ``endpoint_port``
    starts prometheus-client's HTTP exporter on that port at ``initialize`` (the app's
    ``/metrics`` route works either way). ``max_label_sets`` caps the distinct label sets per
    metric (the rest is counted under ``"__other__"``); ``window_retention_seconds`` and
    ``window_samples`` bound the in-process history the readers use (``get_counter_rate``,
    ``get_histogram_quantile``; their default window is 300 s). That history costs about
    110 bytes per counter label set per second it is incremented and per histogram sample, so
    the bounds are what a worker's memory grows to: 900 s and 256 samples hold at most about
    100 KiB + 28 KiB per label set (3600 s and 1024 held 390 KiB + 68 KiB, reached only after
    an hour: a soak saw it as RSS creeping at ~80 KiB/s).
    """

    namespace: str = ""
    subsystem: str = ""
    default_labels: dict[str, str] = field(default_factory=dict)
    enable_prometheus: bool = True
    endpoint_port: int | None = None
    max_label_sets: int = 1000
    window_retention_seconds: int = 900
    window_samples: int = 256
    histogram_buckets: tuple[float, ...] = (
        0.001,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
    )
