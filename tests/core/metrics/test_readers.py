"""Readers over a recent window: get_counter_rate, get_counter_sum, get_histogram_quantile."""

from __future__ import annotations

import pytest

from crown_nexus.core.metrics import MetricsError, MetricsService
from crown_nexus.testing import freeze_time


def test_counter_rate_over_the_window() -> None:
    """Rate = increments inside the window / window seconds; old increments fall out."""
    m = MetricsService()
    with freeze_time() as clock:
        m.increment_counter("cache_operations_total", 30)
        clock.advance(200)
        m.increment_counter("cache_operations_total", 30)
        assert m.get_counter_rate("cache_operations_total") == pytest.approx(60 / 300)
        assert m.get_counter_rate("cache_operations_total", window_seconds=60) == pytest.approx(0.5)
        clock.advance(200)
        assert m.get_counter_rate("cache_operations_total") == pytest.approx(30 / 300)
        clock.advance(301)
        assert m.get_counter_rate("cache_operations_total") == 0.0
    assert m.get_counter_sum("cache_operations_total") == 60


def test_guide_hit_rate_ratio() -> None:
    """The guide's hit rate: rate(cache_hit_total) / rate(cache_operations_total)."""
    m = MetricsService()
    for hit in (True, True, True, False):
        m.track_cache_operation(operation="get", backend="memory", hit=hit, duration=0.001)
    hit_rate = m.get_counter_rate("cache_hit_total") / m.get_counter_rate("cache_operations_total")
    assert hit_rate == pytest.approx(0.75)


def test_counter_sum_filters_by_label_subset() -> None:
    """get_counter_sum sums every label set that contains the given labels."""
    m = MetricsService()
    m.increment_counter("cache_miss_total", 2, {"backend": "redis", "component": "a"})
    m.increment_counter("cache_miss_total", 3, {"backend": "redis", "component": "b"})
    m.increment_counter("cache_miss_total", 5, {"backend": "memory", "component": "a"})
    assert m.get_counter_sum("cache_miss_total", {"backend": "redis"}) == 5
    assert m.get_counter_sum("cache_miss_total", {"component": "a"}) == 7
    assert m.get_counter_sum("cache_miss_total") == 10
    assert m.get_counter_sum("cache_miss_total", {"backend": "disk"}) == 0
    assert m.get_counter_sum("never_recorded_total") == 0


def test_histogram_quantile_interpolates_recent_samples() -> None:
    """p50/p95 over recent samples of matching label sets; stale samples drop out."""
    m = MetricsService()
    with freeze_time() as clock:
        for v in range(1, 101):
            m.observe_histogram(
                "cache_operation_duration_seconds", v / 1000, {"component": "product_service"}
            )
        m.observe_histogram("cache_operation_duration_seconds", 9.0, {"component": "other"})
        p95 = m.get_histogram_quantile(
            "cache_operation_duration_seconds", 0.95, {"component": "product_service"}
        )
        assert p95 == pytest.approx(0.09505)
        assert m.get_histogram_quantile("cache_operation_duration_seconds", 1.0) == 9.0
        assert m.get_histogram_quantile("cache_operation_duration_seconds", 0.0) == pytest.approx(
            0.001
        )
        clock.advance(301)
        assert m.get_histogram_quantile("cache_operation_duration_seconds", 0.5) == 0.0


def test_reader_arguments_are_validated() -> None:
    """A quantile outside [0, 1] or a non-positive window is MetricsError."""
    m = MetricsService()
    with pytest.raises(MetricsError):
        m.get_histogram_quantile("x_seconds", 1.5)
    with pytest.raises(MetricsError):
        m.get_counter_rate("x_total", window_seconds=0)
