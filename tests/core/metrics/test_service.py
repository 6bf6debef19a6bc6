"""MetricsService: creation, recording, trackers, exposition (guide §6)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.metrics import (
    MetricName,
    MetricsConfig,
    MetricsError,
    MetricsService,
    MetricTag,
    MetricType,
    get_metrics_service,
)


def _samples(service: MetricsService) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the exposition into {(sample name, sorted labels): value}."""
    body, _ = service.render_latest()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_registered_as_metrics_service() -> None:
    """get_service('metrics_service') returns the shared MetricsService."""
    service = get_service("metrics_service")
    assert isinstance(service, MetricsService)
    assert service is get_metrics_service()


def test_guide_basic_usage_figures() -> None:
    """The guide's counter, gauge and histogram calls give the exposed figures."""
    m = MetricsService()
    m.create_counter(
        name="user_registrations_total",
        description="Total number of user registrations",
        labelnames=["source", "role"],
    )
    m.increment_counter(
        "user_registrations_total", amount=1, labels={"source": "web", "role": "customer"}
    )
    m.increment_counter(
        "user_registrations_total", amount=2, labels={"source": "web", "role": "customer"}
    )
    m.create_gauge(name="active_users", description="Active", labelnames=["tenant"])
    m.set_gauge("active_users", value=42, labels={"tenant": "main"})
    m.create_histogram(
        name="order_processing_seconds",
        description="Time",
        labelnames=["type"],
        buckets=[0.1, 0.5, 1.0, 5.0, 10.0],
    )
    m.observe_histogram("order_processing_seconds", value=1.7, labels={"type": "standard"})
    s = _samples(m)
    assert s[("user_registrations_total", (("role", "customer"), ("source", "web")))] == 3
    assert s[("active_users", (("tenant", "main"),))] == 42
    assert s[("order_processing_seconds_bucket", (("le", "1.0"), ("type", "standard")))] == 0
    assert s[("order_processing_seconds_bucket", (("le", "5.0"), ("type", "standard")))] == 1
    assert s[("order_processing_seconds_sum", (("type", "standard"),))] == pytest.approx(1.7)


def test_own_registry_never_touches_the_global_one() -> None:
    """Two services can define the same metric name; prometheus' global REGISTRY is untouched."""
    a, b = MetricsService(), MetricsService()
    a.increment_counter("dup_total")
    b.increment_counter("dup_total", 5)
    assert a.get_counter_sum("dup_total") == 1 and b.get_counter_sum("dup_total") == 5
    assert REGISTRY.get_sample_value("dup_total") is None


def test_create_is_idempotent_and_type_checked() -> None:
    """Creating the same metric twice returns it; another type under that name is MetricsError."""
    m = MetricsService()
    first = m.create_counter("jobs_total", "Jobs", ["kind"])
    assert m.create_counter("jobs_total", "Jobs", ["kind"]) is first
    with pytest.raises(MetricsError, match="already exists as a counter"):
        m.create_gauge("jobs_total", "x")
    with pytest.raises(MetricsError, match="is a counter"):
        m.observe_histogram("jobs_total", 1.0)


def test_metrics_are_created_on_first_use_with_given_labels() -> None:
    """increment_counter / set_gauge / observe_histogram on unknown names create the metric."""
    m = MetricsService()
    m.increment_counter("requests_total", 1, {"path": "/a"})
    m.observe_histogram("custom_pagination_duration_seconds", 0.2, {"type": "custom", "error": ""})
    m.set_gauge("product_search_result_count", value=7, labels={"query_type": "text"})
    s = _samples(m)
    assert s[("requests_total", (("path", "/a"),))] == 1
    assert s[("custom_pagination_duration_seconds_count", (("error", ""), ("type", "custom")))] == 1
    assert s[("product_search_result_count", (("query_type", "text"),))] == 7


def test_label_values_are_stringified_and_missing_labels_blank() -> None:
    """Non-str label values become str; missing labels are ''; unknown labels are ignored."""
    m = MetricsService()
    m.create_counter("shares_total", "x", ["success", "document_type"])
    m.increment_counter("shares_total", labels={"success": True, "extra": "ignored"})
    s = _samples(m)
    assert s[("shares_total", (("document_type", ""), ("success", "True")))] == 1


def test_bad_input_raises_metrics_error() -> None:
    """Invalid names, negative increments and non-numeric values are MetricsError."""
    m = MetricsService()
    with pytest.raises(MetricsError, match="invalid metric name"):
        m.increment_counter("bad-name")
    with pytest.raises(MetricsError):
        m.increment_counter("ok_total", -1)
    with pytest.raises(MetricsError, match="not a number"):
        m.observe_histogram("lat_seconds", "slow")
    assert issubclass(MetricsError, ValueError)


def test_track_request_counts_durations_and_errors() -> None:
    """track_request feeds requests, durations and (for >= 400) errors."""
    m = MetricsService()
    m.track_request(method="GET", endpoint="/api/users", status_code=200, duration=0.125)
    m.track_request(
        method="GET",
        endpoint="/api/users",
        status_code=503,
        duration=0.5,
        error_code="NETWORK_ERROR",
    )
    s = _samples(m)
    ok = (("endpoint", "/api/users"), ("method", "GET"), ("status_code", "200"))
    assert s[("http_requests_total", ok)] == 1
    assert (
        s[("http_request_duration_seconds_count", (("endpoint", "/api/users"), ("method", "GET")))]
        == 2
    )
    err = (
        ("endpoint", "/api/users"),
        ("error_code", "NETWORK_ERROR"),
        ("method", "GET"),
        ("status_code", "503"),
    )
    assert s[("http_errors_total", err)] == 1


def test_track_db_service_and_cache_operations() -> None:
    """The guide's trackers write their counters and histograms with their labels."""
    m = MetricsService()
    m.track_db_query(operation="SELECT", entity="user", duration=0.087)
    m.track_db_query(operation="SELECT", entity="user", duration=0.1, error="OperationalError")
    m.track_service_call(component="external_api", action="get_weather", duration=0.342)
    m.track_cache_operation(
        operation="get", backend="redis", hit=True, duration=0.004, component="user_profile"
    )
    m.track_cache_operation(operation="get", backend="redis", hit=False, component="user_profile")
    assert m.get_counter_sum("db_queries_total", {"entity": "user"}) == 2
    assert m.get_counter_sum("db_queries_total", {"status": "error"}) == 1
    assert m.get_counter_sum("db_errors_total", {"error_type": "OperationalError"}) == 1
    assert (
        m.get_counter_sum("service_calls_total", {"component": "external_api", "status": "success"})
        == 1
    )
    assert m.get_counter_sum("cache_operations_total", {"backend": "redis"}) == 2
    assert m.get_counter_sum("cache_hit_total") == 1
    assert m.get_counter_sum("cache_miss_total", {"backend": "redis"}) == 1
    assert m.get_histogram_quantile("cache_operation_duration_seconds", 0.5) == pytest.approx(0.004)


def test_track_in_progress_with_metric_name_and_tags() -> None:
    """track_in_progress(MetricName.HTTP_IN_PROGRESS, {MetricTag...}, ±1) moves the gauge."""
    m = MetricsService()
    labels = {MetricTag.METHOD: "GET", MetricTag.ENDPOINT: "/x"}
    m.track_in_progress(MetricName.HTTP_IN_PROGRESS, labels, 1)
    m.track_in_progress(MetricName.HTTP_IN_PROGRESS, labels, 1)
    m.track_in_progress(MetricName.HTTP_IN_PROGRESS, labels, -1)
    s = _samples(m)
    assert s[("http_requests_in_progress", (("endpoint", "/x"), ("method", "GET")))] == 1


async def test_initialize_applies_namespace_and_default_labels() -> None:
    """initialize(MetricsConfig(...)) prefixes names and adds default labels to new metrics."""
    m = MetricsService()
    await m.initialize(
        MetricsConfig(
            namespace="crown_nexus",
            subsystem="api",
            default_labels={"environment": "test"},
            enable_prometheus=True,
            endpoint_port=None,
        )
    )
    m.increment_counter("logins_total", labels={"source": "web"})
    s = _samples(m)
    assert s[("crown_nexus_api_logins_total", (("environment", "test"), ("source", "web")))] == 1
    assert m.get_counter_sum("logins_total", {"environment": "test"}) == 1
    await m.shutdown()


async def test_config_applies_to_metrics_created_before_initialize() -> None:
    """Namespace, subsystem and default labels cover early and late metrics alike (issue 13)."""
    m = MetricsService()
    m.increment_counter("early_total", labels={"source": "web"})
    m.observe_histogram("early_seconds", 0.2)
    await m.initialize(
        MetricsConfig(namespace="crown_nexus", subsystem="api", default_labels={"environment": "t"})
    )
    m.increment_counter("late_total")
    m.increment_counter("early_total", labels={"source": "web"})
    m.increment_counter("own_env_total", labels={"environment": "mine"})
    s = _samples(m)
    names = {name for name, _ in s}
    assert not {n for n in names if not n.startswith("crown_nexus_api_")}, names
    assert s[("crown_nexus_api_early_total", (("environment", "t"), ("source", "web")))] == 2
    assert s[("crown_nexus_api_late_total", (("environment", "t"),))] == 1
    assert s[("crown_nexus_api_early_seconds_count", (("environment", "t"),))] == 1
    assert s[("crown_nexus_api_own_env_total", (("environment", "mine"),))] == 1  # its own wins
    assert m.get_counter_sum("early_total", {"environment": "t"}) == 2
    assert m.get_counter_sum("own_env_total", {"environment": "t"}) == 0
    await m.initialize(MetricsConfig())  # a new config renames everything again
    assert ("early_total", (("source", "web"),)) in _samples(m)
    await m.shutdown()


async def test_initialize_starts_and_stops_the_http_exporter(unused_tcp_port: int) -> None:
    """With enable_prometheus and endpoint_port, the metrics are served on that port."""
    import httpx

    m = MetricsService()
    await m.initialize(MetricsConfig(enable_prometheus=True, endpoint_port=unused_tcp_port))
    m.increment_counter("exported_total")
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://127.0.0.1:{unused_tcp_port}/metrics")
    assert "exported_total 1.0" in resp.text
    await m.shutdown()


def test_render_latest_content_type() -> None:
    """render_latest returns the text exposition and Prometheus' content type."""
    m = MetricsService()
    m.increment_counter("x_total")
    body, content_type = m.render_latest()
    assert content_type.startswith("text/plain")
    assert b"x_total 1.0" in body


def test_metric_type_values() -> None:
    """MetricType values name the four kinds."""
    assert [t.value for t in MetricType] == ["counter", "gauge", "histogram", "summary"]


def test_reset_forgets_every_metric() -> None:
    """reset() drops metrics and their figures; names can be reused with another type."""
    m = MetricsService()
    m.increment_counter("things_total", 3)
    m.reset()
    assert m.get_counter_sum("things_total") == 0
    assert b"things_total" not in m.render_latest()[0]
    m.set_gauge("things_total", 1)
    assert m.get_metric("things_total") is not None
