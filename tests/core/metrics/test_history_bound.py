"""The in-process metric history (what get_counter_rate / get_histogram_quantile read) is small
and bounded: a busy worker's memory stops growing at the bound (a soak saw it as RSS creep)."""

from __future__ import annotations

import tracemalloc
from unittest import mock

from crown_nexus.core.metrics import MetricsService, recording


def test_a_label_set_history_is_bounded_and_small() -> None:
    """An hour of per-second increments and 5,000 observations in one label set each keep at
    most the configured history (900 s, 256 samples), about 128 KiB in all."""
    service = MetricsService()
    config = service.config
    assert config.window_retention_seconds <= 900 and config.window_samples <= 256
    clock = [10_000.0]
    with mock.patch.object(recording, "_monotonic", lambda: clock[0]):
        service.increment_counter("soak_requests_total", 1, {"route": "/x"})
        service.observe_histogram("soak_seconds", 0.1, {"route": "/x"})
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(3600):
                clock[0] += 1.0
                service.increment_counter("soak_requests_total", 1, {"route": "/x"})
            for n in range(5000):
                service.observe_histogram("soak_seconds", n / 1000, {"route": "/x"})
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert service.get_counter_rate("soak_requests_total", window_seconds=300) == 1.0
        assert 4.5 < service.get_histogram_quantile("soak_seconds", 0.5) < 5.0  # recent samples
    [counter] = service._metrics["soak_requests_total"].series.values()
    [histogram] = service._metrics["soak_seconds"].series.values()
    assert len(counter.buckets) == config.window_retention_seconds
    assert len(histogram.samples) == config.window_samples
    assert grown < 160 * 1024, f"history of two label sets holds {grown // 1024} KiB"
