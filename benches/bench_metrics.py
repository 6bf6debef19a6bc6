"""Cost of recording a metric: crown-nexus's MetricsService vs prometheus-client directly.

Groups ``metrics-increment_counter`` and ``metrics-observe_histogram``: the same labelled
series recorded through ``MetricsService`` (which also keeps the in-process window the
readers use and enforces the cardinality cap) and through prometheus-client's own API
(``metric.labels(**labels).inc()`` / ``.observe()``). Group ``metrics-http-request``: what
``MetricsMiddleware`` records for one request (in-progress gauge up and down, request counter,
duration histogram) through the fused ``request_started``/``request_finished``, through the
generic ``track_in_progress``/``track_request``, and through prometheus-client directly. Each benchmark checks its figure. Run:
``pytest benches/bench_metrics.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from crown_nexus import accel
from crown_nexus.core.metrics import MetricsService

LABELS = {"method": "GET", "endpoint": "/users/{user_id}", "status_code": "200"}
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _info(benchmark: Any, who: str) -> None:
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["recorder"] = who


def test_increment_counter_crown_nexus(benchmark: Any) -> None:
    """MetricsService.increment_counter with a dict of labels."""
    _info(benchmark, "crown-nexus")
    benchmark.group = "metrics-increment_counter"
    m = MetricsService()
    m.create_counter("requests_total", "Requests", list(LABELS))
    benchmark(m.increment_counter, "requests_total", 1, LABELS)
    total = m.get_counter_sum("requests_total", LABELS)
    assert total > 0
    assert m.get_metric("requests_total").labels(*LABELS.values())._value.get() == total


def test_increment_counter_prometheus_client(benchmark: Any) -> None:
    """prometheus-client: counter.labels(**labels).inc()."""
    _info(benchmark, "prometheus-client")
    benchmark.group = "metrics-increment_counter"
    counter = Counter("requests_total", "Requests", list(LABELS), registry=CollectorRegistry())

    def inc() -> None:
        counter.labels(**LABELS).inc()

    benchmark(inc)
    assert counter.labels(**LABELS)._value.get() > 0


def test_observe_histogram_crown_nexus(benchmark: Any) -> None:
    """MetricsService.observe_histogram with a dict of labels."""
    _info(benchmark, "crown-nexus")
    benchmark.group = "metrics-observe_histogram"
    m = MetricsService()
    m.create_histogram("latency_seconds", "Latency", list(LABELS), buckets=BUCKETS)
    benchmark(m.observe_histogram, "latency_seconds", 0.042, LABELS)
    assert m.get_histogram_quantile("latency_seconds", 0.5, LABELS) == 0.042


def test_observe_histogram_prometheus_client(benchmark: Any) -> None:
    """prometheus-client: histogram.labels(**labels).observe(v)."""
    _info(benchmark, "prometheus-client")
    benchmark.group = "metrics-observe_histogram"
    hist = Histogram(
        "latency_seconds", "Latency", list(LABELS), buckets=BUCKETS, registry=CollectorRegistry()
    )

    def observe() -> None:
        hist.labels(**LABELS).observe(0.042)

    benchmark(observe)
    assert hist.labels(**LABELS)._sum.get() > 0


# --- one HTTP request's metrics: what MetricsMiddleware records per request ------------------

ROUTE = {"method": "GET", "endpoint": "/users/{user_id}"}


def test_http_request_crown_nexus_fused(benchmark: Any) -> None:
    """MetricsService.request_started + request_finished (in progress, count, duration)."""
    _info(benchmark, "crown-nexus fused")
    benchmark.group = "metrics-http-request"
    m = MetricsService()

    def one() -> None:
        handle = m.request_started("GET")
        m.request_finished("GET", "/users/{user_id}", 200, 0.0042, None, handle)

    benchmark(one)
    total = m.get_counter_sum("http_requests_total", {**ROUTE, "status_code": "200"})
    duration = m.get_metric("http_request_duration_seconds").labels(**ROUTE)
    assert total > 0 and duration._sum.get() == pytest.approx(total * 0.0042)
    assert m.get_metric("http_requests_in_progress").labels("GET")._value.get() == 0


def test_http_request_crown_nexus_generic(benchmark: Any) -> None:
    """The same through the generic calls: track_in_progress ±1 and track_request."""
    _info(benchmark, "crown-nexus generic")
    benchmark.group = "metrics-http-request"
    m = MetricsService()
    progress = {"method": "GET"}

    def one() -> None:
        m.track_in_progress("http_requests_in_progress", progress, 1)
        m.track_in_progress("http_requests_in_progress", progress, -1)
        m.track_request("GET", "/users/{user_id}", 200, 0.0042)

    benchmark(one)
    assert m.get_counter_sum("http_requests_total") > 0


def test_http_request_prometheus_client(benchmark: Any) -> None:
    """prometheus-client: gauge inc/dec, counter inc, histogram observe (labels(**) each)."""
    _info(benchmark, "prometheus-client")
    benchmark.group = "metrics-http-request"
    registry = CollectorRegistry()
    gauge = Gauge("http_requests_in_progress", "In progress", ["method"], registry=registry)
    counter = Counter("http_requests_total", "Requests", list(LABELS), registry=registry)
    hist = Histogram(
        "http_request_duration_seconds", "Duration", list(ROUTE), buckets=BUCKETS, registry=registry
    )

    def one() -> None:
        gauge.labels(method="GET").inc()
        gauge.labels(method="GET").dec()
        counter.labels(method="GET", endpoint="/users/{user_id}", status_code="200").inc()
        hist.labels(**ROUTE).observe(0.0042)

    benchmark(one)
    assert counter.labels(**LABELS)._value.get() > 0
