"""``MetricsService``: prometheus-client metrics with in-process readers (guide §6 and §9).

Each service owns a ``CollectorRegistry`` (no clash with prometheus-client's global one). A
metric is created explicitly (``create_counter`` ...) or on first use by ``increment_counter``,
``set_gauge``, ``observe_histogram`` and ``track_in_progress`` (label names taken from the labels
given). Every series also keeps a short in-process history so ``get_counter_rate``,
``get_counter_sum`` and ``get_histogram_quantile`` can answer without a Prometheus server.

Label cardinality is capped per metric (``MetricsConfig.max_label_sets``): once a metric has that
many label sets, new ones are recorded under the label value ``"__other__"`` and a warning is
logged once for that metric. Unknown label keys are ignored; missing ones are recorded as ``""``.

Naming: the config's ``namespace``/``subsystem`` prefix and ``default_labels`` are applied when
metrics are exported (``render_latest``, the HTTP exporter), from the service's current config,
so they cover every metric alike — those created before ``initialize(config)`` too (a label a
metric sets itself wins over a default label of the same name). ``registry`` holds the metrics
under their own names; the readers (``get_counter_sum`` ...) take the plain name and match
default labels as well.

Multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus-client is imported
(several granian workers), values live in that directory and ``render_latest`` aggregates every
worker with ``MultiProcessCollector``; ``get_counter_sum`` does too. Rates and quantiles are
per process. Counters and histograms are summed exactly over every worker, dead ones included
(a total never goes down when a worker is recycled). Gauges combine by their
``multiprocess_mode``: in-progress gauges (``track_in_progress``) and backlogs are ``livesum``
(the sum over live workers), state gauges default to ``mostrecent`` (the last value any worker
set), ``cache_backend_up`` is ``livemin`` (0 while any live worker runs on its fallback).
:meth:`cleanup_dead_workers` (run by the library's ``/metrics`` route before each scrape) drops
the live gauges of workers that have exited.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from crown_nexus.core.metrics.base import (
    MetricName,
    MetricsConfig,
    MetricsError,
    MetricTag,
    MetricType,
)
from crown_nexus.logging import get_logger

__all__ = ["OVERFLOW_LABEL", "MetricsService", "get_metrics_service"]

F = TypeVar("F", bound=Callable[..., Any])

#: label value used for label sets beyond the cardinality cap
OVERFLOW_LABEL = "__other__"

_logger = get_logger("crown_nexus.core.metrics")
_HTTP_REQUESTS_TOTAL = MetricName.HTTP_REQUESTS_TOTAL.value
_HTTP_REQUEST_DURATION = MetricName.HTTP_REQUEST_DURATION_SECONDS.value
_HTTP_ERRORS_TOTAL = MetricName.HTTP_ERRORS_TOTAL.value
_monotonic = time.monotonic
_NAME_OK = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _label_value(value: Any) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    return str(value)


class _Series:
    """One label set of one metric: its prometheus child and its recent history."""

    __slots__ = ("buckets", "child", "count", "labels", "samples", "total")

    def __init__(self, child: Any, labels: dict[str, str], retention: int, samples: int) -> None:
        self.child = child
        self.labels = labels
        self.total = 0.0
        self.count = 0
        #: counters: ``[second, amount]`` per monotonic second
        self.buckets: deque[list[float]] = deque(maxlen=retention)
        #: histograms/summaries: ``(monotonic time, value)``
        self.samples: deque[tuple[float, float]] = deque(maxlen=samples)


class _Metric:
    __slots__ = (
        "description",
        "empty_key",
        "kind",
        "labelnames",
        "lock",
        "max_series",
        "name",
        "overflow_logged",
        "prom",
        "series",
        "unknown_logged",
    )

    def __init__(
        self,
        name: str,
        kind: MetricType,
        prom: Any,
        labelnames: tuple[str, ...],
        description: str,
        max_series: int,
    ) -> None:
        self.name = name
        self.kind = kind
        self.prom = prom
        self.labelnames = labelnames
        self.description = description
        self.empty_key = ("",) * len(labelnames)
        self.series: dict[tuple[str, ...], _Series] = {}
        self.max_series = max_series
        self.overflow_logged = False
        self.unknown_logged = False
        self.lock = threading.Lock()


class MetricsService:
    """Create, record and read metrics (see the module docstring).

    Recording methods accept ``labels`` as a dict whose keys are label names (``str`` or
    :class:`MetricTag`); values are turned into strings (``None`` → ``""``). They raise
    :class:`MetricsError` only for misuse (wrong metric type, invalid name, negative counter
    increment, non-numeric value).
    """

    def __init__(
        self,
        config: MetricsConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        multiprocess_dir: str | None = None,
    ) -> None:
        self.config = config or MetricsConfig()
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = (
            multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        )
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.RLock()
        self._exporter: Any = None
        self.initialized = False

    # ------------------------------------------------------------------ lifecycle
    async def initialize(self, config: MetricsConfig | None = None) -> None:
        """Apply ``config`` and start the HTTP exporter when ``enable_prometheus`` and
        ``endpoint_port`` are set. Calling it again is harmless.

        The namespace, subsystem, default labels and label-set cap apply to every metric,
        including those created before this call; histogram buckets and the reader windows
        apply to metrics (and label sets) created afterwards.
        """
        if config is not None:
            self.config = config
            with self._lock:
                for metric in self._metrics.values():
                    metric.max_series = config.max_label_sets
        if self.config.enable_prometheus and self.config.endpoint_port and self._exporter is None:
            from prometheus_client import start_http_server

            try:
                self._exporter = start_http_server(
                    self.config.endpoint_port, registry=self._exposition_registry()
                )
            except OSError as exc:
                _logger.warning(
                    "Metrics exporter could not start",
                    port=self.config.endpoint_port,
                    error=str(exc),
                )
        self.initialized = True

    async def shutdown(self) -> None:
        """Stop the HTTP exporter if one was started."""
        exporter, self._exporter = self._exporter, None
        if exporter is not None:
            server, thread = exporter
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        self.initialized = False

    def reset(self) -> None:
        """Forget every metric and start a fresh registry (tests; the exporter, if running,
        keeps serving the old registry until restarted)."""
        with self._lock:
            self._metrics = {}
            self.registry = CollectorRegistry(auto_describe=True)

    # ------------------------------------------------------------------ creation
    def _create(
        self,
        kind: MetricType,
        name: str,
        description: str,
        labelnames: Iterable[str] | None,
        buckets: Iterable[float] | None = None,
        multiprocess_mode: str = "livesum",
    ) -> _Metric:
        name = str(name)
        names = tuple(str(n) for n in (labelnames or ()))
        with self._lock:
            existing = self._metrics.get(name)
            if existing is not None:
                if existing.kind is not kind:
                    raise MetricsError(
                        f"metric {name!r} already exists as a {existing.kind.value}, "
                        f"not a {kind.value}"
                    )
                if existing.labelnames != names:
                    _logger.warning(
                        "Metric re-created with other label names; keeping the first",
                        metric=name,
                        labelnames=list(existing.labelnames),
                        requested=list(names),
                    )
                return existing
            if not _NAME_OK.match(name):
                raise MetricsError(f"invalid metric name {name!r}: use [a-zA-Z_:][a-zA-Z0-9_:]*")
            cfg = self.config
            # plain name and own labels: namespace and default labels are added on export
            common: dict[str, Any] = {
                "name": name,
                "documentation": description or name,
                "labelnames": names,
                "registry": self.registry,
            }
            try:
                if kind is MetricType.COUNTER:
                    prom: Any = Counter(**common)
                elif kind is MetricType.GAUGE:
                    prom = Gauge(**common, multiprocess_mode=multiprocess_mode)  # type: ignore[arg-type]
                elif kind is MetricType.HISTOGRAM:
                    prom = Histogram(**common, buckets=tuple(buckets or cfg.histogram_buckets))
                else:
                    prom = Summary(**common)
            except ValueError as exc:
                raise MetricsError(f"cannot create metric {name!r}: {exc}") from exc
            metric = _Metric(name, kind, prom, names, description, cfg.max_label_sets)
            self._metrics[name] = metric
            return metric

    def create_counter(
        self, name: str, description: str = "", labelnames: Iterable[str] | None = None
    ) -> Any:
        """Create (or return the existing) counter ``name``; return the prometheus ``Counter``."""
        return self._create(MetricType.COUNTER, name, description, labelnames).prom

    def create_gauge(
        self,
        name: str,
        description: str = "",
        labelnames: Iterable[str] | None = None,
        multiprocess_mode: str = "mostrecent",
    ) -> Any:
        """Create (or return the existing) gauge ``name``; return the prometheus ``Gauge``.

        ``multiprocess_mode`` says how workers combine in multiprocess mode (prometheus-client's
        modes; ``"mostrecent"`` by default, ``"livesum"`` for in-progress gauges).
        """
        return self._create(
            MetricType.GAUGE, name, description, labelnames, multiprocess_mode=multiprocess_mode
        ).prom

    def create_histogram(
        self,
        name: str,
        description: str = "",
        labelnames: Iterable[str] | None = None,
        buckets: Iterable[float] | None = None,
    ) -> Any:
        """Create (or return the existing) histogram ``name``; return the ``Histogram``.

        ``buckets`` default to ``MetricsConfig.histogram_buckets``.
        """
        return self._create(MetricType.HISTOGRAM, name, description, labelnames, buckets).prom

    def create_summary(
        self, name: str, description: str = "", labelnames: Iterable[str] | None = None
    ) -> Any:
        """Create (or return the existing) summary ``name``; return the prometheus ``Summary``."""
        return self._create(MetricType.SUMMARY, name, description, labelnames).prom

    def _ensure(
        self,
        name: Any,
        kind: MetricType,
        labels: Mapping[Any, Any] | None,
        mode: str = "mostrecent",
    ) -> _Metric:
        metric = self._metrics.get(name)
        if metric is not None:
            if metric.kind is kind or (
                kind is MetricType.HISTOGRAM and metric.kind is MetricType.SUMMARY
            ):
                return metric
            raise MetricsError(f"metric {name!r} is a {metric.kind.value}, not a {kind.value}")
        return self._create(kind, name, "", list(labels or ()), multiprocess_mode=mode)

    # ------------------------------------------------------------------ series
    def _series(self, metric: _Metric, labels: Mapping[Any, Any] | None) -> _Series:
        if labels:
            key = tuple([_label_value(labels.get(n)) for n in metric.labelnames])
        else:
            key = metric.empty_key
        series = metric.series.get(key)
        if series is None:
            series = self._new_series(metric, key, labels)
        return series

    def _new_series(
        self, metric: _Metric, key: tuple[str, ...], labels: Mapping[Any, Any] | None
    ) -> _Series:
        with metric.lock:
            series = metric.series.get(key)
            if series is not None:
                return series
            if labels and not metric.unknown_logged:
                unknown = {str(k) for k in labels} - set(metric.labelnames)
                if unknown:
                    metric.unknown_logged = True
                    _logger.warning(
                        "Unknown metric labels ignored",
                        metric=metric.name,
                        unknown=sorted(unknown),
                        labelnames=list(metric.labelnames),
                    )
            if len(metric.series) >= metric.max_series and key:
                key = (OVERFLOW_LABEL,) * len(key)
                if not metric.overflow_logged:
                    metric.overflow_logged = True
                    _logger.warning(
                        "Metric label cardinality cap reached; new label sets go to __other__",
                        metric=metric.name,
                        max_label_sets=metric.max_series,
                    )
                series = metric.series.get(key)
                if series is not None:
                    return series
            child = metric.prom.labels(*key) if key else metric.prom
            own = dict(zip(metric.labelnames, key, strict=True))
            cfg = self.config
            series = _Series(child, own, cfg.window_retention_seconds, cfg.window_samples)
            metric.series[key] = series
            return series

    # ------------------------------------------------------------------ recording
    def increment_counter(
        self, name: str, amount: float = 1, labels: Mapping[Any, Any] | None = None
    ) -> None:
        """Add ``amount`` (≥ 0) to counter ``name`` for ``labels``; creates the counter on first use."""
        metric = self._metrics.get(name)
        if metric is None or metric.kind is not MetricType.COUNTER:
            metric = self._ensure(name, MetricType.COUNTER, labels)
        series = self._series(metric, labels)
        try:
            series.child.inc(amount)
        except (TypeError, ValueError) as exc:
            raise MetricsError(f"cannot increment {name!r} by {amount!r}: {exc}") from exc
        series.total += amount
        sec = int(_monotonic())
        buckets = series.buckets
        if buckets and buckets[-1][0] == sec:
            buckets[-1][1] += amount
        else:
            buckets.append([sec, amount])

    def set_gauge(self, name: str, value: float, labels: Mapping[Any, Any] | None = None) -> None:
        """Set gauge ``name`` to ``value`` for ``labels``; creates the gauge on first use."""
        metric = self._metrics.get(name)
        if metric is None or metric.kind is not MetricType.GAUGE:
            metric = self._ensure(name, MetricType.GAUGE, labels)
        series = self._series(metric, labels)
        try:
            series.child.set(value)
        except (TypeError, ValueError) as exc:
            raise MetricsError(f"cannot set {name!r} to {value!r}: {exc}") from exc
        series.total = float(value)

    def track_in_progress(
        self, name: str, labels: Mapping[Any, Any] | None = None, delta: float = 1
    ) -> None:
        """Add ``delta`` (+1 on start, -1 on end) to in-progress gauge ``name``.

        The gauge is created on first use; across workers it sums live processes.
        """
        metric = self._metrics.get(name)
        if metric is None or metric.kind is not MetricType.GAUGE:
            metric = self._ensure(name, MetricType.GAUGE, labels, mode="livesum")
        series = self._series(metric, labels)
        try:
            series.child.inc(delta)
        except (TypeError, ValueError) as exc:
            raise MetricsError(f"cannot change {name!r} by {delta!r}: {exc}") from exc
        series.total += delta

    def observe_histogram(
        self, name: str, value: float, labels: Mapping[Any, Any] | None = None
    ) -> None:
        """Record ``value`` in histogram (or summary) ``name``; creates a histogram on first use."""
        metric = self._metrics.get(name)
        if metric is None or (
            metric.kind is not MetricType.HISTOGRAM and metric.kind is not MetricType.SUMMARY
        ):
            metric = self._ensure(name, MetricType.HISTOGRAM, labels)
        series = self._series(metric, labels)
        try:
            value = float(value)
        except (TypeError, ValueError) as exc:
            raise MetricsError(f"cannot observe {value!r} in {name!r}: not a number") from exc
        series.child.observe(value)
        series.total += value
        series.count += 1
        series.samples.append((_monotonic(), value))

    def observe_summary(
        self, name: str, value: float, labels: Mapping[Any, Any] | None = None
    ) -> None:
        """Record ``value`` in summary ``name``; creates the summary on first use."""
        if name not in self._metrics:
            self._create(MetricType.SUMMARY, name, "", list(labels or ()))
        self.observe_histogram(name, value, labels)

    # ------------------------------------------------------------------ trackers
    def track_request(
        self,
        method: str,
        endpoint: str,
        status_code: int,
        duration: float,
        error_code: str | None = None,
    ) -> None:
        """Count an HTTP request (``http_requests_total{method,endpoint,status_code}``), observe
        its duration (``http_request_duration_seconds{method,endpoint}``) and, for status ≥ 400
        or an ``error_code``, count ``http_errors_total{method,endpoint,status_code,error_code}``."""
        # plain-str names and label keys (equal to the MetricName/MetricTag members): hashing
        # an enum member is a Python call, and this runs for every request
        status = str(status_code)
        self.increment_counter(
            _HTTP_REQUESTS_TOTAL,
            1,
            {"method": method, "endpoint": endpoint, "status_code": status},
        )
        self.observe_histogram(
            _HTTP_REQUEST_DURATION, duration, {"method": method, "endpoint": endpoint}
        )
        if error_code or status_code >= 400:
            self.increment_counter(
                _HTTP_ERRORS_TOTAL,
                1,
                {
                    "method": method,
                    "endpoint": endpoint,
                    "status_code": status,
                    "error_code": error_code or "",
                },
            )

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

    # ------------------------------------------------------------------ decorators
    def _labels_from(
        self, labels_func: Callable[..., Any] | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        if labels_func is None:
            return None
        try:
            labels = labels_func(*args, **kwargs)
        except Exception as exc:
            _logger.warning("labels_func failed; recording without labels", error=repr(exc))
            return None
        return dict(labels) if labels else None

    def _record_timing(
        self, name: str, metric_type: MetricType, duration: float, labels: dict[str, Any] | None
    ) -> None:
        try:
            if metric_type is MetricType.COUNTER:
                self.increment_counter(name, 1, labels)
            elif metric_type is MetricType.GAUGE:
                self.set_gauge(name, duration, labels)
            elif metric_type is MetricType.SUMMARY:
                self.observe_summary(name, duration, labels)
            else:
                self.observe_histogram(name, duration, labels)
        except Exception as exc:  # timing must never change the function's outcome
            _logger.warning("Could not record function timing", metric=name, error=repr(exc))

    def timed_function(
        self,
        name: str | None = None,
        metric_type: MetricType | str = MetricType.HISTOGRAM,
        labels_func: Callable[..., Mapping[str, Any]] | None = None,
        track_in_progress_flag: bool = False,
        in_progress_metric: str | None = None,
    ) -> Callable[[F], F]:
        """Decorate a function (sync or async) to record its duration in seconds in metric
        ``name`` (default ``<module>_<function>_duration_seconds``) of ``metric_type``
        (histogram by default; counter counts calls, gauge keeps the last duration).

        ``labels_func(*args, **kwargs)`` gives the labels of each call. With
        ``track_in_progress_flag`` the gauge ``in_progress_metric`` (default
        ``<name>_in_progress``) counts running calls. Exceptions propagate; the call is still
        measured.
        """
        kind = MetricType(metric_type)

        def decorator(func: F) -> F:
            metric_name = name or _default_metric_name(func)
            progress = in_progress_metric or f"{metric_name}_in_progress"

            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    labels = self._labels_from(labels_func, args, kwargs)
                    if track_in_progress_flag:
                        self.track_in_progress(progress, labels, 1)
                    start = time.perf_counter()
                    try:
                        return await func(*args, **kwargs)
                    finally:
                        self._record_timing(metric_name, kind, time.perf_counter() - start, labels)
                        if track_in_progress_flag:
                            self.track_in_progress(progress, labels, -1)

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                labels = self._labels_from(labels_func, args, kwargs)
                if track_in_progress_flag:
                    self.track_in_progress(progress, labels, 1)
                start = time.perf_counter()
                try:
                    return func(*args, **kwargs)
                finally:
                    self._record_timing(metric_name, kind, time.perf_counter() - start, labels)
                    if track_in_progress_flag:
                        self.track_in_progress(progress, labels, -1)

            return wrapper  # type: ignore[return-value]

        return decorator

    def async_timed_function(
        self,
        name: str | None = None,
        metric_type: MetricType | str = MetricType.HISTOGRAM,
        labels_func: Callable[..., Mapping[str, Any]] | None = None,
        track_in_progress_flag: bool = False,
        in_progress_metric: str | None = None,
    ) -> Callable[[F], F]:
        """:meth:`timed_function` for ``async def`` functions (raises ``TypeError`` otherwise)."""
        inner = self.timed_function(
            name, metric_type, labels_func, track_in_progress_flag, in_progress_metric
        )

        def decorator(func: F) -> F:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(
                    f"async_timed_function decorates async functions; {func!r} is not one"
                )
            return inner(func)

        return decorator

    # ------------------------------------------------------------------ readers
    def _matching(self, name: str, labels: Mapping[Any, Any] | None) -> list[_Series]:
        metric = self._metrics.get(name)
        if metric is None:
            return []
        series = list(metric.series.values())
        if not labels:
            return series
        defaults = self._default_labels()
        want = [(str(k), _label_value(v)) for k, v in labels.items()]
        return [
            s
            for s in series
            if all(s.labels.get(k, defaults.get(k)) == v for k, v in want)
        ]

    def _default_labels(self) -> dict[str, str]:
        return {str(k): _label_value(v) for k, v in self.config.default_labels.items()}

    def get_counter_sum(self, name: str, labels: Mapping[Any, Any] | None = None) -> float:
        """Return the total of counter ``name`` over every label set matching ``labels`` (a
        subset of the labels; ``None`` = all). Unknown metric → ``0.0``. In multiprocess mode
        the total covers every worker."""
        if self.multiprocess_dir:
            return self._multiprocess_sum(name, labels)
        return float(sum(s.total for s in self._matching(name, labels)))

    def get_counter_rate(
        self, name: str, labels: Mapping[Any, Any] | None = None, window_seconds: float = 300
    ) -> float:
        """Return the per-second rate of counter ``name`` over the last ``window_seconds``
        (increments in the window divided by the window), summed over matching label sets."""
        if window_seconds <= 0:
            raise MetricsError(f"window_seconds must be positive, not {window_seconds!r}")
        oldest = int(_monotonic()) - window_seconds
        total = 0.0
        for s in self._matching(name, labels):
            for sec, amount in list(s.buckets):
                if sec > oldest:
                    total += amount
        return total / window_seconds

    def get_histogram_quantile(
        self,
        name: str,
        q: float,
        labels: Mapping[Any, Any] | None = None,
        window_seconds: float = 300,
    ) -> float:
        """Return quantile ``q`` (0..1) of the values observed in histogram ``name`` during the
        last ``window_seconds`` over matching label sets (linear interpolation between recent
        samples, at most ``window_samples`` per label set). No samples → ``0.0``."""
        if not 0.0 <= q <= 1.0:
            raise MetricsError(f"quantile must be between 0 and 1, not {q!r}")
        if window_seconds <= 0:
            raise MetricsError(f"window_seconds must be positive, not {window_seconds!r}")
        oldest = _monotonic() - window_seconds
        values = sorted(
            v for s in self._matching(name, labels) for t, v in list(s.samples) if t >= oldest
        )
        if not values:
            return 0.0
        pos = q * (len(values) - 1)
        low = int(pos)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (pos - low)

    def get_metric(self, name: str) -> Any:
        """Return the prometheus metric object named ``name`` or ``None``."""
        metric = self._metrics.get(name)
        return metric.prom if metric is not None else None

    def series_count(self, name: str) -> int:
        """Return how many label sets metric ``name`` has (``0`` when unknown)."""
        metric = self._metrics.get(name)
        return len(metric.series) if metric is not None else 0

    # ------------------------------------------------------------------ exposition
    def _source_registry(self) -> Any:
        """The recorded metrics under their plain names (every worker in multiprocess mode)."""
        if not self.multiprocess_dir:
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return registry

    def _exposition_registry(self) -> Any:
        """A registry exporting every metric named and labelled by the current config."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ConfiguredExport(self))
        return registry

    def _exported(self) -> Iterable[Any]:
        """The metric families of :meth:`_source_registry` with the config's naming applied."""
        cfg = self.config
        prefix = "_".join(p for p in (cfg.namespace, cfg.subsystem) if p)
        prefix = f"{prefix}_" if prefix else ""
        defaults = self._default_labels()
        for family in self._source_registry().collect():
            if not prefix and not defaults:
                yield family
                continue
            out = Metric(prefix + family.name, family.documentation, family.type, family.unit)
            out.samples = [
                sample._replace(
                    name=prefix + sample.name,
                    labels={**defaults, **sample.labels} if defaults else sample.labels,
                )
                for sample in family.samples
            ]
            yield out

    def render_latest(self) -> tuple[bytes, str]:
        """Return ``(body, content_type)`` of the Prometheus text exposition of every metric
        (every worker in multiprocess mode)."""
        return generate_latest(self._exposition_registry()), CONTENT_TYPE_LATEST

    def mark_process_dead(self, pid: int | None = None) -> None:
        """In multiprocess mode, drop a finished worker's live gauges (call from the process
        manager when worker ``pid`` exits; default: this process). No-op otherwise."""
        if not self.multiprocess_dir:
            return
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid() if pid is None else pid, self.multiprocess_dir)

    def cleanup_dead_workers(self) -> list[int]:
        """In multiprocess mode, apply :meth:`mark_process_dead` to every worker whose files are
        in the directory but whose process is gone (a crashed or recycled granian worker);
        return their pids (sorted). No-op (``[]``) otherwise.

        Only the dead worker's *live* gauges (``livesum``, ``livemax`` ...) are removed, as
        prometheus-client does: its counters and histograms stay, so totals never go down.
        """
        directory = self.multiprocess_dir
        if not directory:
            return []
        pids: set[int] = set()
        try:
            names = os.listdir(directory)
        except OSError:
            return []
        for filename in names:
            match = _LIVE_FILE.match(filename)
            if match is not None:
                pids.add(int(match.group(1)))
        dead = sorted(pid for pid in pids if not _process_alive(pid))
        for pid in dead:
            self.mark_process_dead(pid)
        return dead

    def _multiprocess_sum(self, name: str, labels: Mapping[Any, Any] | None) -> float:
        metric = self._metrics.get(name)
        if metric is None:
            return 0.0
        full = metric.prom._name
        defaults = self._default_labels()
        want = [(str(k), _label_value(v)) for k, v in (labels or {}).items()]
        total = 0.0
        for family in self._source_registry().collect():
            if family.name != full:
                continue
            for sample in family.samples:
                if sample.name != f"{full}_total":
                    continue
                if all(sample.labels.get(k, defaults.get(k)) == v for k, v in want):
                    total += sample.value
        return total


class _ConfiguredExport:
    """A collector exporting a service's metrics with its current namespace and default labels."""

    def __init__(self, service: MetricsService) -> None:
        self.service = service

    def collect(self) -> Iterable[Any]:
        """Every metric family, renamed and labelled by the service's config at this moment."""
        return self.service._exported()


#: a multiprocess file of a live gauge: ``gauge_livesum_<pid>.db`` (and livemax, livemin ...)
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _process_alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _default_metric_name(func: Callable[..., Any]) -> str:
    raw = f"{getattr(func, '__module__', '')}_{getattr(func, '__qualname__', 'function')}"
    cleaned = re.sub(r"[^a-zA-Z0-9_]", "_", raw).strip("_") or "function"
    if cleaned[0].isdigit():
        cleaned = f"f_{cleaned}"
    return f"{cleaned}_duration_seconds"


_default_service: MetricsService | None = None
_default_lock = threading.Lock()


def get_metrics_service() -> MetricsService:
    """Return the process's shared :class:`MetricsService` (registered as ``"metrics_service"``)."""
    global _default_service
    if _default_service is None:
        with _default_lock:
            if _default_service is None:
                _default_service = MetricsService()
    return _default_service
