"""HTTP request metrics, on every request's path: ``track_request`` and its fused hot path.

Each request counts in ``http_requests_total{method,endpoint,status_code}``, observes its
duration in ``http_request_duration_seconds{method,endpoint}`` (every request, not sampled) and,
for a status ≥ 400 or an ``error_code``, counts in
``http_errors_total{method,endpoint,status_code,error_code}``. While it runs it is counted in
``http_requests_in_progress{method}`` (a ``livesum`` gauge).

The middleware (:class:`crown_nexus.middleware.metrics.MetricsMiddleware`) makes two calls per
request: :meth:`HttpMetrics.request_started` (in-progress +1) and
:meth:`HttpMetrics.request_finished` (in-progress -1, the counter, the histogram and the error
counter in one call). The series of each ``(method, endpoint, status, error code)`` are looked
up once and kept in a bounded cache (cleared when it reaches :data:`HOT_CACHE_SIZE` entries:
label values stay bounded by the metrics' cardinality cap, the cache by its size). In
single-process mode every value of a service shares one lock (:mod:`.recording`), so one
acquisition covers a whole request and counts stay exact under threads; in multiprocess mode
each value is written through prometheus-client's own (process-wide locked) value.
Nothing is sampled or batched: a request is in every metric when ``request_finished`` returns.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client.values import MutexValue

from crown_nexus.core.metrics import recording
from crown_nexus.core.metrics.base import MetricName, MetricsError, MetricType
from crown_nexus.core.metrics.recording import MetricStore, _Series

__all__ = ["HOT_CACHE_SIZE", "HttpMetrics"]

#: most ``(method, endpoint, status, error code)`` entries the hot-path cache holds
HOT_CACHE_SIZE = 4096

_HTTP_REQUESTS_TOTAL = MetricName.HTTP_REQUESTS_TOTAL.value
_HTTP_REQUEST_DURATION = MetricName.HTTP_REQUEST_DURATION_SECONDS.value
_HTTP_ERRORS_TOTAL = MetricName.HTTP_ERRORS_TOTAL.value
_HTTP_IN_PROGRESS = MetricName.HTTP_IN_PROGRESS.value


class _Progress:
    """The in-progress gauge series of one method, resolved."""

    __slots__ = ("direct", "series", "value")

    def __init__(self, series: _Series) -> None:
        self.series = series
        child = series.child
        self.value = getattr(child, "_value", None)
        # a "mostrecent" gauge refuses inc(): keep prometheus-client's own call (and error)
        self.direct = type(self.value) is MutexValue and not getattr(
            child, "_is_most_recent", False
        )


class _Request:
    """The series of one ``(method, endpoint, status, error code)``, resolved."""

    __slots__ = (
        "bounds",
        "direct",
        "dur_buckets",
        "dur_sum",
        "duration",
        "err_value",
        "errors",
        "req_value",
        "requests",
    )

    def __init__(self, requests: _Series, duration: _Series, errors: _Series | None) -> None:
        self.requests = requests
        self.duration = duration
        self.errors = errors
        self.req_value = getattr(requests.child, "_value", None)
        hist = duration.child
        self.dur_sum = getattr(hist, "_sum", None)
        self.dur_buckets = getattr(hist, "_buckets", None)
        self.bounds = getattr(hist, "_upper_bounds", None)
        self.err_value = getattr(errors.child, "_value", None) if errors is not None else None
        self.direct = (
            type(self.req_value) is MutexValue
            and type(self.dur_sum) is MutexValue
            and self.dur_buckets is not None
            and self.bounds is not None
            and (errors is None or type(self.err_value) is MutexValue)
        )


def _count(series: _Series, sec: int) -> None:
    """The in-process history of one counter increment (caller holds the value lock)."""
    series.total += 1
    buckets = series.buckets
    if buckets and buckets[-1][0] == sec:
        buckets[-1][1] += 1
    else:
        buckets.append([sec, 1])


class HttpMetrics(MetricStore):
    """HTTP request metrics (module docstring)."""

    _hot_requests: dict[tuple[str, str, int, str | None], _Request]
    _hot_progress: dict[str, _Progress]

    def _clear_hot(self) -> None:
        """Forget the resolved series (after ``reset``)."""
        self._hot_requests = {}
        self._hot_progress = {}

    def request_started(self, method: str) -> Any:
        """Count a request of ``method`` as in progress; return the handle to give back to
        :meth:`request_finished`. ``method`` must be a bounded value (the middleware maps
        unknown methods to ``"_OTHER"``)."""
        progress = self._hot_progress.get(method)
        if progress is None:
            labels = {"method": method}
            metric = self._metrics.get(_HTTP_IN_PROGRESS)
            if metric is None or metric.kind is not MetricType.GAUGE:
                metric = self._ensure(_HTTP_IN_PROGRESS, MetricType.GAUGE, labels, mode="livesum")
            progress = _Progress(self._series(metric, labels))
            if len(self._hot_progress) >= HOT_CACHE_SIZE:
                self._hot_progress.clear()
            self._hot_progress[method] = progress
        if progress.direct:
            with self._value_lock:
                progress.value._value += 1  # type: ignore[union-attr]
                progress.series.total += 1
        else:
            progress.series.child.inc(1)
            progress.series.total += 1
        return progress

    def request_finished(
        self,
        method: str,
        endpoint: str,
        status_code: int,
        duration: float,
        error_code: str | None = None,
        progress: Any = None,
    ) -> None:
        """Record one finished request (module docstring); ``progress`` is the handle of
        :meth:`request_started` (``None``: the request was not counted as in progress)."""
        hot = self._hot_requests.get((method, endpoint, status_code, error_code))
        if hot is None:
            hot = self._resolve(method, endpoint, status_code, error_code)
        if type(duration) is not float:
            try:
                duration = float(duration)
            except (TypeError, ValueError) as exc:
                raise MetricsError(
                    f"cannot observe {duration!r} in {_HTTP_REQUEST_DURATION!r}: not a number"
                ) from exc
        now = recording._monotonic()
        sec = int(now)
        if hot.direct and duration == duration and (progress is None or progress.direct):
            with self._value_lock:
                if progress is not None:
                    progress.value._value -= 1
                    progress.series.total -= 1
                hot.req_value._value += 1  # type: ignore[union-attr]
                series = hot.requests
                series.total += 1
                buckets = series.buckets
                if buckets and buckets[-1][0] == sec:
                    buckets[-1][1] += 1
                else:
                    buckets.append([sec, 1])
                hot.dur_sum._value += duration  # type: ignore[union-attr]
                hot.dur_buckets[bisect_left(hot.bounds, duration)]._value += 1  # type: ignore[index,arg-type]
                series = hot.duration
                series.total += duration
                series.count += 1
                series.samples.append((now, duration))
                if hot.errors is not None:
                    hot.err_value._value += 1  # type: ignore[union-attr]
                    _count(hot.errors, sec)
            return
        # multiprocess values (or a NaN duration): through prometheus-client's own calls
        if progress is not None:
            progress.series.child.inc(-1)
            progress.series.total -= 1
        hot.requests.child.inc(1)
        hot.duration.child.observe(duration)
        if hot.errors is not None:
            hot.errors.child.inc(1)
        with self._value_lock:
            _count(hot.requests, sec)
            series = hot.duration
            series.total += duration
            series.count += 1
            series.samples.append((now, duration))
            if hot.errors is not None:
                _count(hot.errors, sec)

    def _resolve(
        self, method: str, endpoint: str, status_code: int, error_code: str | None
    ) -> _Request:
        """Look up (creating on first use) the series of one kind of request and cache them."""
        status = str(status_code)
        requests = self._hot_series(
            _HTTP_REQUESTS_TOTAL,
            MetricType.COUNTER,
            {"method": method, "endpoint": endpoint, "status_code": status},
        )
        duration = self._hot_series(
            _HTTP_REQUEST_DURATION,
            MetricType.HISTOGRAM,
            {"method": method, "endpoint": endpoint},
        )
        errors = None
        if error_code or status_code >= 400:
            errors = self._hot_series(
                _HTTP_ERRORS_TOTAL,
                MetricType.COUNTER,
                {
                    "method": method,
                    "endpoint": endpoint,
                    "status_code": status,
                    "error_code": error_code or "",
                },
            )
        hot = _Request(requests, duration, errors)
        cache = self._hot_requests
        if len(cache) >= HOT_CACHE_SIZE:
            cache.clear()
        cache[(method, endpoint, status_code, error_code)] = hot
        return hot

    def _hot_series(self, name: str, kind: MetricType, labels: dict[str, str]) -> _Series:
        metric = self._metrics.get(name)
        if metric is None or not (
            metric.kind is kind
            or (kind is MetricType.HISTOGRAM and metric.kind is MetricType.SUMMARY)
        ):
            metric = self._ensure(name, kind, labels)
        return self._series(metric, labels)

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
        self.request_finished(method, endpoint, status_code, duration, error_code)
