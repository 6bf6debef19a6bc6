"""Cost of recording a metric: crown-nexus's MetricsService vs prometheus-client directly.

Groups ``metrics-increment_counter`` and ``metrics-observe_histogram``: the same labelled
series recorded through ``MetricsService`` (which also keeps the in-process window the
readers use and enforces the cardinality cap) and through prometheus-client's own API
(``metric.labels(**labels).inc()`` / ``.observe()``). Each benchmark checks its figure. Run:
``pytest benches/bench_metrics.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

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
