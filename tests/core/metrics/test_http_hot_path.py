"""The fused HTTP request path (request_started / request_finished): same metrics, exact counts."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading

from crown_nexus.core.metrics import MetricsService
from crown_nexus.core.metrics.http import HOT_CACHE_SIZE


def _sample(service: MetricsService, name: str, labels: dict[str, str]) -> float:
    value = service.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_fused_path_records_what_track_request_records() -> None:
    """request_started/finished and track_request leave identical prometheus samples."""
    fused, plain = MetricsService(), MetricsService()
    for status, error in ((200, None), (404, "NOT_FOUND"), (500, None), (200, None)):
        handle = fused.request_started("GET")
        fused.request_finished("GET", "/items/{id}", status, 0.03, error, handle)
        plain.track_in_progress("http_requests_in_progress", {"method": "GET"}, 1)
        plain.track_in_progress("http_requests_in_progress", {"method": "GET"}, -1)
        plain.track_request("GET", "/items/{id}", status, 0.03, error)

    def lines(m: MetricsService) -> list[bytes]:
        return [line for line in m.render_latest()[0].splitlines() if b"_created" not in line]

    assert b"http_requests_in_progress" in b"".join(lines(fused))
    assert lines(fused) == lines(plain)
    assert fused.get_counter_sum("http_requests_total") == 4
    assert fused.get_counter_sum("http_errors_total", {"error_code": "NOT_FOUND"}) == 1
    assert fused.get_histogram_quantile("http_request_duration_seconds", 0.5) == 0.03
    assert fused.get_counter_rate("http_requests_total", window_seconds=60) == 4 / 60


def test_histogram_buckets_match_prometheus_observe() -> None:
    """Every duration lands in the bucket prometheus-client's observe() would choose."""
    fused, plain = MetricsService(), MetricsService()
    durations = [0.0, 0.001, 0.0010001, 0.005, 0.3, 2.5, 9.99, 10.0, 11.0, math.inf]
    for d in durations:
        fused.request_finished("POST", "/x", 201, d)
        plain.observe_histogram(
            "http_request_duration_seconds", d, {"method": "POST", "endpoint": "/x"}
        )
    for le in ("0.001", "0.005", "0.25", "0.5", "2.5", "10.0", "+Inf"):
        labels = {"method": "POST", "endpoint": "/x", "le": le}
        assert _sample(fused, "http_request_duration_seconds_bucket", labels) == _sample(
            plain, "http_request_duration_seconds_bucket", labels
        ), le


def test_nan_and_non_float_durations_take_prometheus_own_path() -> None:
    """A NaN or an int duration is recorded exactly as observe_histogram records it."""
    m = MetricsService()
    m.track_request("GET", "/a", 200, 1)
    m.track_request("GET", "/a", 200, float("nan"))
    labels = {"method": "GET", "endpoint": "/a"}
    assert _sample(m, "http_request_duration_seconds_count", labels) == 1  # NaN: in no bucket
    assert math.isnan(_sample(m, "http_request_duration_seconds_sum", labels))
    assert m.get_counter_sum("http_requests_total") == 2


def test_counts_are_exact_under_threads() -> None:
    """Threads recording requests and incrementing the same series directly lose nothing."""
    m = MetricsService()
    counter = m.create_counter(
        "http_requests_total", "Requests", ["method", "endpoint", "status_code"]
    )
    per_thread = 5000

    def fused() -> None:
        for _ in range(per_thread):
            handle = m.request_started("GET")
            m.request_finished("GET", "/t", 200, 0.001, None, handle)

    def direct() -> None:
        child = counter.labels("GET", "/t", "200")
        for _ in range(per_thread):
            child.inc()

    threads = [threading.Thread(target=f) for f in (fused, fused, direct, fused, direct)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (
        _sample(m, "http_requests_total", {"method": "GET", "endpoint": "/t", "status_code": "200"})
        == 5 * per_thread
    )
    assert (
        _sample(m, "http_request_duration_seconds_count", {"method": "GET", "endpoint": "/t"})
        == 3 * per_thread
    )
    assert _sample(m, "http_requests_in_progress", {"method": "GET"}) == 0


def test_the_cache_stays_bounded_and_cardinality_is_capped() -> None:
    """Past HOT_CACHE_SIZE kinds of request the cache starts over; label sets stay capped."""
    m = MetricsService()
    for i in range(HOT_CACHE_SIZE + 10):
        m.request_finished("GET", f"/r{i}", 200, 0.001)
    assert len(m._hot_requests) <= HOT_CACHE_SIZE
    assert m.series_count("http_requests_total") == m.config.max_label_sets + 1  # + __other__
    assert m.get_counter_sum("http_requests_total") == HOT_CACHE_SIZE + 10


def test_reset_forgets_the_cached_series() -> None:
    """After reset() requests are recorded in the new registry."""
    m = MetricsService()
    m.request_finished("GET", "/a", 200, 0.01)
    m.reset()
    m.request_finished("GET", "/a", 200, 0.01)
    assert m.get_counter_sum("http_requests_total") == 1
    assert (
        b'http_requests_total{endpoint="/a",method="GET",status_code="200"} 1.0'
        in m.render_latest()[0]
    )


def test_multiprocess_values_are_summed_over_workers(tmp_path) -> None:
    """In multiprocess mode the fused path writes through prometheus-client's files."""
    script = textwrap.dedent(
        """
        import sys
        from crown_nexus.core.metrics import MetricsService
        m = MetricsService()
        for _ in range(int(sys.argv[1])):
            h = m.request_started("GET")
            m.request_finished("GET", "/w", 404, 0.02, "NOT_FOUND", h)
        m.create_counter("http_requests_total", "", ["method", "endpoint", "status_code"])
        print(m.get_counter_sum("http_requests_total"))
        print(m.render_latest()[0].decode())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (30, 12):
        subprocess.run([sys.executable, "-c", script, str(n)], env=env, check=True)
    out = subprocess.run(
        [sys.executable, "-c", script, "0"], env=env, check=True, capture_output=True, text=True
    ).stdout
    lines = out.strip().splitlines()
    assert float(lines[0]) == 42
    assert 'http_request_duration_seconds_count{endpoint="/w",method="GET"} 42.0' in lines
    assert (
        'http_errors_total{endpoint="/w",error_code="NOT_FOUND",method="GET",status_code="404"} 42.0'
        in lines
    )
