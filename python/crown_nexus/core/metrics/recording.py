"""The metric store behind ``MetricsService``: creating metrics, their label sets, recording.

Owns what a metric *is* in this process: each service's ``CollectorRegistry`` (no clash with
prometheus-client's global one), the metrics created explicitly (``create_counter`` ...) or on
first use by ``increment_counter``, ``set_gauge``, ``observe_histogram`` and
``track_in_progress`` (label names taken from the labels given), their label sets (series) and
the short in-process history each series keeps for the readers (:mod:`.readers`).

Label cardinality is capped per metric (``MetricsConfig.max_label_sets``): once a metric has that
many label sets, new ones are recorded under the label value ``"__other__"`` and a warning is
logged once for that metric. Unknown label keys are ignored; missing ones are recorded as ``""``.

Single-process mode: every prometheus value of a service shares one lock (the service's
``_value_lock``), so the hot paths (:mod:`.http`) update several values of one request under a
single acquisition, exactly, while prometheus-client's own ``inc``/``observe`` stay correct.
"""

from __future__ import annotations

import os
import re
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.values import MutexValue

from crown_nexus.core.metrics.base import MetricsConfig, MetricsError, MetricType
from crown_nexus.logging import get_logger

__all__ = ["OVERFLOW_LABEL", "MetricStore"]

#: label value used for label sets beyond the cardinality cap
OVERFLOW_LABEL = "__other__"

_logger = get_logger("crown_nexus.core.metrics")
#: the clock of the in-process windows (``crown_nexus.testing.freeze_time`` replaces it)
_monotonic = time.monotonic
_NAME_OK = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
#: callables handing locally batched counts over (:meth:`MetricStore.add_flush_hook`)
_FLUSH_HOOKS: list[Callable[[], None]] = []


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


class MetricStore:
    """Metrics and their series (module docstring); the base of ``MetricsService``."""

    def __init__(
        self,
        config: MetricsConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        multiprocess_dir: str | None = None,
    ) -> None:
        self.config = config or MetricsConfig()
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        # Not a Settings field: prometheus_client picks its multiprocess value store from this
        # variable in os.environ itself, so the service must see exactly that (a Settings value
        # could differ, e.g. from a ``.env`` file, and split the counts between two stores).
        self.multiprocess_dir = (
            multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        )
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.RLock()
        #: shared by every single-process prometheus value of this service (module docstring)
        self._value_lock = threading.Lock()
        self._exporter: Any = None
        self.initialized = False

    def add_flush_hook(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` before every reader and every exposition of every service (process-wide,
        once per hook object).

        For code that counts on its hot path in a local batch and hands it to the current metrics
        service later (the permission checks): the readers and ``/metrics`` then see every count."""
        if hook not in _FLUSH_HOOKS:
            _FLUSH_HOOKS.append(hook)

    def flush_pending(self) -> None:
        """Run the flush hooks (failures are logged, never raised)."""
        for hook in _FLUSH_HOOKS:
            try:
                hook()
            except Exception as exc:
                _logger.warning("A metrics flush hook failed", error=repr(exc))

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
            _share_lock(child, self._value_lock)
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

    def observe_many(
        self, name: str, values: Iterable[float], labels: Mapping[Any, Any] | None = None
    ) -> None:
        """Record every value of ``values`` in histogram ``name`` (as many ``observe_histogram``
        calls, with one series lookup and, in single-process mode, one lock acquisition)."""
        metric = self._metrics.get(name)
        if metric is None or metric.kind is not MetricType.HISTOGRAM:
            for value in values:
                self.observe_histogram(name, value, labels)
            return
        series = self._series(metric, labels)
        observed = [float(v) for v in values]
        if not observed:
            return
        child = series.child
        hsum = getattr(child, "_sum", None)
        if type(hsum) is not MutexValue or any(v != v for v in observed):  # NaN: prometheus' way
            for value in observed:
                self.observe_histogram(name, value, labels)
            return
        bounds = child._upper_bounds
        buckets = child._buckets
        now = _monotonic()
        samples = series.samples
        with self._value_lock:
            for value in observed:
                hsum._value += value
                buckets[bisect_left(bounds, value)]._value += 1
                samples.append((now, value))
            series.total += sum(observed)
            series.count += len(observed)

    def observe_summary(
        self, name: str, value: float, labels: Mapping[Any, Any] | None = None
    ) -> None:
        """Record ``value`` in summary ``name``; creates the summary on first use."""
        if name not in self._metrics:
            self._create(MetricType.SUMMARY, name, "", list(labels or ()))
        self.observe_histogram(name, value, labels)

    def get_metric(self, name: str) -> Any:
        """Return the prometheus metric object named ``name`` or ``None``."""
        self.flush_pending()
        metric = self._metrics.get(name)
        return metric.prom if metric is not None else None

    def series_count(self, name: str) -> int:
        """Return how many label sets metric ``name`` has (``0`` when unknown)."""
        self.flush_pending()
        metric = self._metrics.get(name)
        return len(metric.series) if metric is not None else 0

    def _default_labels(self) -> dict[str, str]:
        return {str(k): _label_value(v) for k, v in self.config.default_labels.items()}


def _share_lock(child: Any, lock: Any) -> None:
    """Make every single-process value of a prometheus child use ``lock`` (module docstring).

    Multiprocess values (``MmapedValue``) keep prometheus-client's own process-wide lock."""
    values = [getattr(child, attr, None) for attr in ("_value", "_sum", "_count")]
    values.extend(getattr(child, "_buckets", None) or ())
    for value in values:
        if type(value) is MutexValue:
            value._lock = lock
