"""Guide §6 (Metrics System): every example run as written (``app.`` -> ``crown_nexus.``)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.settings import Settings


@pytest.fixture(autouse=True)
def fresh_shared_service():
    """The guide uses the shared metrics_service: start each example from an empty one."""
    get_service("metrics_service").reset()
    yield
    get_service("metrics_service").reset()


def test_basic_usage_example() -> None:
    """Create and record a counter, a gauge and a histogram as the guide shows."""
    # --- guide §6, as written ---
    from crown_nexus.core.dependency_manager import get_service

    # Get the metrics service
    metrics_service = get_service("metrics_service")

    # Create and use counter metrics
    counter = metrics_service.create_counter(
        name="user_registrations_total",
        description="Total number of user registrations",
        labelnames=["source", "role"],
    )

    # Increment counter
    metrics_service.increment_counter(
        "user_registrations_total", amount=1, labels={"source": "web", "role": "customer"}
    )

    # Create and use gauge metrics
    gauge = metrics_service.create_gauge(
        name="active_users", description="Number of currently active users", labelnames=["tenant"]
    )

    # Set gauge value
    metrics_service.set_gauge("active_users", value=42, labels={"tenant": "main"})

    # Create and use histogram metrics
    histogram = metrics_service.create_histogram(
        name="order_processing_seconds",
        description="Time spent processing orders",
        labelnames=["type"],
        buckets=[0.1, 0.5, 1.0, 5.0, 10.0],
    )

    # Observe histogram value
    metrics_service.observe_histogram(
        "order_processing_seconds", value=1.7, labels={"type": "standard"}
    )
    # --- end ---

    assert counter.labels(source="web", role="customer")._value.get() == 1
    assert gauge.labels(tenant="main")._value.get() == 42
    assert histogram.labels(type="standard")._sum.get() == pytest.approx(1.7)
    assert metrics_service.get_histogram_quantile("order_processing_seconds", 0.5) == 1.7


def test_tracking_operations_example() -> None:
    """The pre-built trackers record requests, queries, service calls and cache operations."""
    # --- guide §6, as written ---
    from crown_nexus.core.dependency_manager import get_service

    metrics_service = get_service("metrics_service")

    # Track HTTP request
    metrics_service.track_request(
        method="GET", endpoint="/api/users", status_code=200, duration=0.125
    )

    # Track database query
    metrics_service.track_db_query(operation="SELECT", entity="user", duration=0.087)

    # Track service call
    metrics_service.track_service_call(
        component="external_api", action="get_weather", duration=0.342
    )

    # Track cache operation
    metrics_service.track_cache_operation(
        operation="get", backend="redis", hit=True, duration=0.004, component="user_profile"
    )
    # --- end ---

    assert metrics_service.get_counter_sum("http_requests_total", {"endpoint": "/api/users"}) == 1
    assert metrics_service.get_counter_sum("db_queries_total", {"entity": "user"}) == 1
    assert metrics_service.get_counter_sum("service_calls_total", {"action": "get_weather"}) == 1
    assert metrics_service.get_counter_sum("cache_hit_total", {"component": "user_profile"}) == 1


async def test_function_timing_example() -> None:
    """timed_function / async_timed_function (labels, in-progress) as the guide shows."""
    result = "ok"

    # --- guide §6, as written ---
    from crown_nexus.core.dependency_manager import get_service
    from crown_nexus.core.metrics import MetricType

    metrics_service = get_service("metrics_service")

    # Timing synchronous functions
    @metrics_service.timed_function(
        name="process_user_data_duration", metric_type=MetricType.HISTOGRAM
    )
    def process_user_data(user_id, data):
        # Processing logic
        return result

    # Timing asynchronous functions with labels
    @metrics_service.async_timed_function(
        name="fetch_external_data_duration",
        metric_type=MetricType.HISTOGRAM,
        labels_func=lambda resource_id, **kwargs: {"resource_type": resource_id.split("-")[0]},
    )
    async def fetch_external_data(resource_id):
        # Async processing logic
        return result

    # Tracking in-progress operations
    @metrics_service.async_timed_function(
        name="long_running_operation_duration",
        track_in_progress_flag=True,
        in_progress_metric="long_running_operations_in_progress",
    )
    async def long_running_operation():
        # Long-running operation logic
        return result

    # --- end ---

    assert process_user_data(1, {}) == "ok"
    assert await fetch_external_data("doc-42") == "ok"
    assert await long_running_operation() == "ok"
    body = metrics_service.render_latest()[0].decode()
    assert "process_user_data_duration_count 1.0" in body
    assert 'fetch_external_data_duration_count{resource_type="doc"} 1.0' in body
    assert "long_running_operation_duration_count 1.0" in body
    assert "long_running_operations_in_progress 0.0" in body


async def test_database_operations_example() -> None:
    """track_db_select / track_db_insert decorate the user's repository functions."""

    class _Result:
        def scalars(self):
            return SimpleNamespace(all=lambda: ["u1", "u2"])

    class FakeDB:
        """Stands in for the user's AsyncSession."""

        async def execute(self, query):
            return _Result()

        def add(self, obj):
            self.added = obj

        async def commit(self):
            return None

        async def refresh(self, obj):
            return None

    class User:
        role = "role-column"

    class Order:
        def __init__(self, **data):
            self.__dict__.update(data)

    def select(model):
        return SimpleNamespace(where=lambda clause: ("select", model, clause))

    # --- guide §6, as written ---
    from crown_nexus.core.metrics import track_db_insert, track_db_select

    # Track SELECT operations
    @track_db_select(entity="user")
    async def get_users_by_role(db, role):
        query = select(User).where(User.role == role)
        result = await db.execute(query)
        return list(result.scalars().all())

    # Track INSERT operations
    @track_db_insert(entity="order")
    async def create_order(db, order_data):
        order = Order(**order_data)
        db.add(order)
        await db.commit()
        await db.refresh(order)
        return order

    # --- end ---

    db = FakeDB()
    assert await get_users_by_role(db, "admin") == ["u1", "u2"]
    assert (await create_order(db, {"id": 7})).id == 7
    service = get_service("metrics_service")
    assert (
        service.get_counter_sum("db_queries_total", {"operation": "SELECT", "entity": "user"}) == 1
    )
    assert (
        service.get_counter_sum("db_queries_total", {"operation": "INSERT", "entity": "order"}) == 1
    )


async def test_middleware_integration_example() -> None:
    """The guide's own BaseHTTPMiddleware using MetricName/MetricTag records each request."""
    # --- guide §6, as written ---
    from starlette.middleware.base import BaseHTTPMiddleware

    from crown_nexus.core.dependency_manager import get_service
    from crown_nexus.core.metrics import MetricName, MetricTag

    class MetricsMiddleware(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            metrics_service = get_service("metrics_service")
            start_time = time.monotonic()

            # Track in-progress requests
            labels = {MetricTag.METHOD: request.method, MetricTag.ENDPOINT: request.url.path}
            metrics_service.track_in_progress(MetricName.HTTP_IN_PROGRESS, labels, 1)

            try:
                response = await call_next(request)
                duration = time.monotonic() - start_time

                # Track completed request
                metrics_service.track_request(
                    method=request.method,
                    endpoint=request.url.path,
                    status_code=response.status_code,
                    duration=duration,
                    error_code=response.headers.get("X-Error-Code"),
                )

                return response
            except Exception as e:
                duration = time.monotonic() - start_time

                # Track failed request
                metrics_service.track_request(
                    method=request.method,
                    endpoint=request.url.path,
                    status_code=500,
                    duration=duration,
                    error_code=type(e).__name__,
                )

                raise
            finally:
                # Ensure we decrement the in-progress counter
                metrics_service.track_in_progress(MetricName.HTTP_IN_PROGRESS, labels, -1)

    # --- end ---

    app = FastAPI()

    @app.get("/api/users")
    async def users() -> list[str]:
        return ["ann"]

    app.add_middleware(MetricsMiddleware)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/api/users")).status_code == 200
    service = get_service("metrics_service")
    assert (
        service.get_counter_sum(
            "http_requests_total", {"endpoint": "/api/users", "status_code": "200"}
        )
        == 1
    )
    in_progress = service.get_metric("http_requests_in_progress")
    assert in_progress.labels("GET", "/api/users")._value.get() == 0


async def test_configuration_example(unused_tcp_port: int) -> None:
    """initialize(MetricsConfig(...)) applies namespace/labels and serves the metrics."""
    settings = Settings(ENVIRONMENT="test")

    # --- guide §6, as written (port from the fixture instead of 9090) ---
    from crown_nexus.core.dependency_manager import get_service
    from crown_nexus.core.metrics import MetricsConfig

    # In app startup
    async def startup():
        metrics_config = MetricsConfig(
            namespace="crown_nexus",
            subsystem="api",
            default_labels={"environment": settings.ENVIRONMENT.value},
            enable_prometheus=True,
            endpoint_port=unused_tcp_port,
        )

        metrics_service = get_service("metrics_service")
        await metrics_service.initialize(metrics_config)

    # --- end ---

    service = get_service("metrics_service")
    previous = service.config
    await startup()
    try:
        service.increment_counter("configured_total")
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{unused_tcp_port}/metrics")).text
        assert 'crown_nexus_api_configured_total{environment="test"} 1.0' in text
    finally:
        await service.shutdown()
        service.config = previous


def test_guide_s09_metrics_integration_readers() -> None:
    """Guide §9 'Metrics Integration': the readers over cache metrics, as written."""
    service = get_service("metrics_service")
    for hit, backend, component in [
        (True, "redis", "product_service"),
        (True, "redis", "product_service"),
        (True, "memory", "user_profile"),
        (False, "redis", "product_service"),
    ]:
        service.track_cache_operation(
            operation="get", backend=backend, hit=hit, duration=0.002, component=component
        )

    # --- guide §9, as written ---
    # These metrics are available automatically
    metrics_service = get_service("metrics_service")

    # Get hit rate over the last 5 minutes
    hit_rate = metrics_service.get_counter_rate(
        "cache_hit_total"
    ) / metrics_service.get_counter_rate("cache_operations_total")

    # Get p95 latency for cache operations
    latency = metrics_service.get_histogram_quantile(
        "cache_operation_duration_seconds", 0.95, {"component": "product_service"}
    )

    # Get miss count by backend
    miss_count = metrics_service.get_counter_sum("cache_miss_total", {"backend": "redis"})
    # --- end ---

    assert hit_rate == pytest.approx(0.75)
    assert latency == pytest.approx(0.002)
    assert miss_count == 1
