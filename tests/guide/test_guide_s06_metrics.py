"""Guide §6 (Metrics System) and its §14 usage, run as written with the user's objects supplied.

Each block is run from the guide itself (``tests/guide/_blocks.py``) with the user's objects, once per setup.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.core.config import settings
from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.metrics import MetricsService, track_db_select
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client, override_service
from tests.guide._blocks import section
from tests.guide._support import guide_app, sqlite_database

# the §6 blocks, by a line of each
BASIC_USAGE = 'name="user_registrations_total",'
TRACKING = "metrics_service.track_db_query("
FUNCTION_TIMING = "async def long_running_operation():"
DB_OPERATIONS = '@track_db_insert(entity="order")'
MIDDLEWARE = "class MetricsMiddleware(BaseHTTPMiddleware):"
CONFIGURATION = "metrics_config = MetricsConfig("


s06 = section(6)


# --- the user's own objects ------------------------------------------------------------------------


class Base(DeclarativeBase):
    """The user's declarative base."""


class User(Base):
    """The user's User model."""

    __tablename__ = "guide_s06_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(20))


class Order(Base):
    """The user's Order model."""

    __tablename__ = "guide_s06_orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item: Mapped[str] = mapped_column(String(50))


@pytest.fixture
async def db() -> AsyncIterator[AsyncSession]:
    """The user's database session (SQLite in memory) with two users."""
    async with sqlite_database(Base, User(id=1, role="admin"), User(id=2, role="customer")) as sessions:
        async with sessions() as session:
            yield session


@pytest.fixture
def metrics() -> Any:
    """A fresh metrics service registered as "metrics_service" for the test."""
    service = MetricsService()
    with override_service("metrics_service", service):
        yield service


result = {"done": True}


# --- §6 'Basic Usage' -------------------------------------------------------------------------------


def basic_usage() -> tuple[Any, Any, Any]:
    """The guide's block run on the current "metrics_service"; returns the created metric objects."""
    ns = s06(BASIC_USAGE).run()
    return ns["counter"], ns["gauge"], ns["histogram"]


def _sample(service: MetricsService, name: str, labels: dict[str, str]) -> float | None:
    return service.registry.get_sample_value(name, labels)


def test_basic_usage_values_are_readable(metrics: MetricsService) -> None:
    """Counter, gauge and histogram hold the recorded values (prometheus registry and readers)."""
    counter, gauge, histogram = basic_usage()
    basic_usage()  # creating again returns the same metrics; the counter goes to 2
    assert _sample(metrics, "user_registrations_total", {"source": "web", "role": "customer"}) == 2.0
    assert metrics.get_counter_sum("user_registrations_total", {"source": "web"}) == 2.0
    assert _sample(metrics, "active_users", {"tenant": "main"}) == 42.0
    assert _sample(metrics, "order_processing_seconds_count", {"type": "standard"}) == 2.0
    assert _sample(metrics, "order_processing_seconds_bucket", {"type": "standard", "le": "1.0"}) == 0.0
    assert _sample(metrics, "order_processing_seconds_bucket", {"type": "standard", "le": "5.0"}) == 2.0
    assert metrics.get_histogram_quantile("order_processing_seconds", 0.95) == pytest.approx(1.7)
    assert counter is metrics.get_metric("user_registrations_total")
    assert gauge is metrics.get_metric("active_users") and histogram is metrics.get_metric("order_processing_seconds")
    body, _ = metrics.render_latest()
    assert b'user_registrations_total{role="customer",source="web"} 2.0' in body


# --- §6 'Tracking Operations' -----------------------------------------------------------------------


def tracking_operations() -> None:
    """The guide's block, on the current "metrics_service"."""
    s06(TRACKING).run()


def test_tracking_operations(metrics: MetricsService) -> None:
    """Each tracker counts the operation and observes its duration under readable names."""
    tracking_operations()
    assert metrics.get_counter_sum("http_requests_total", {"method": "GET", "endpoint": "/api/users", "status_code": "200"}) == 1
    assert metrics.get_counter_sum("http_errors_total") == 0
    assert metrics.get_histogram_quantile("http_request_duration_seconds", 0.5) == pytest.approx(0.125)
    assert metrics.get_counter_sum("db_queries_total", {"operation": "SELECT", "entity": "user"}) == 1
    assert metrics.get_histogram_quantile("db_query_duration_seconds", 0.5) == pytest.approx(0.087)
    assert metrics.get_counter_sum("service_calls_total", {"component": "external_api", "action": "get_weather"}) == 1
    assert metrics.get_counter_sum("cache_operations_total", {"backend": "redis", "component": "user_profile"}) == 1
    assert metrics.get_counter_sum("cache_hit_total", {"backend": "redis"}) == 1
    assert metrics.get_counter_sum("cache_miss_total") == 0
    assert metrics.get_histogram_quantile("cache_operation_duration_seconds", 0.5, {"component": "user_profile"}) == pytest.approx(0.004)


# --- §6 'Function Timing' ---------------------------------------------------------------------------


def function_timing(user_result: Any, long_running_logic: str | None = None, **names: Any) -> tuple[Any, Any, Any]:
    """The guide's block, each function returning ``user_result``; returns the three decorated functions.

    ``long_running_logic`` is the user's code at the guide's "# Long-running operation logic"
    (``names`` are the user's objects it uses).
    """
    block = s06(FUNCTION_TIMING)
    if long_running_logic is not None:
        placeholder = "# Long-running operation logic"
        block = block.adapted(placeholder, f"{placeholder}\n    {long_running_logic}")
    ns = block.run(result=user_result, **names)
    return ns["process_user_data"], ns["fetch_external_data"], ns["long_running_operation"]


async def test_function_timing(metrics: MetricsService) -> None:
    """Durations land in the named histograms, labels come from labels_func, in-progress is counted."""
    release = asyncio.Event()
    process_user_data, fetch_external_data, long_running_operation = function_timing(
        result, "await release.wait()", release=release
    )
    assert process_user_data("u1", {}) is result
    assert await fetch_external_data("weather-42") is result
    assert await fetch_external_data(resource_id="stock-1") is result
    assert _sample(metrics, "process_user_data_duration_count", {}) == 1
    assert _sample(metrics, "fetch_external_data_duration_count", {"resource_type": "weather"}) == 1
    assert _sample(metrics, "fetch_external_data_duration_count", {"resource_type": "stock"}) == 1
    task = asyncio.create_task(long_running_operation())
    await asyncio.sleep(0.01)
    assert _sample(metrics, "long_running_operations_in_progress", {}) == 1
    release.set()
    assert await task is result
    assert _sample(metrics, "long_running_operations_in_progress", {}) == 0
    assert _sample(metrics, "long_running_operation_duration_count", {}) == 1
    assert metrics.get_histogram_quantile("long_running_operation_duration", 0.5) >= 0.005


# --- §6 'Integration with Database Operations' ---------------------------------------------------


def db_operations(user_model: Any, order_model: Any, user_select: Any = select) -> tuple[Any, Any]:
    """The guide's block over the user's models and ``select``; returns ``get_users_by_role``, ``create_order``."""
    ns = s06(DB_OPERATIONS).run(select=user_select, User=user_model, Order=order_model)
    return ns["get_users_by_role"], ns["create_order"]


async def test_db_operation_decorators(db: AsyncSession, metrics: MetricsService) -> None:
    """The decorated queries run and are counted and timed by operation and entity."""
    get_users_by_role, create_order = db_operations(User, Order)
    admins = await get_users_by_role(db, "admin")
    assert [u.id for u in admins] == [1]
    order = await create_order(db, {"item": "book"})
    assert order.id is not None and order.item == "book"
    with pytest.raises(TypeError):
        await create_order(db, {"nope": 1})
    selects = metrics.get_counter_sum("db_queries_total", {"entity": "user"})
    inserts = metrics.get_counter_sum("db_queries_total", {"entity": "order"})
    assert selects == 1 and inserts == 2
    assert metrics.get_counter_sum("db_errors_total", {"entity": "order"}) == 1
    assert metrics.get_counter_sum("db_queries_total", {"entity": "order", "status": "error"}) == 1
    ops = {s.labels["operation"] for s in metrics._matching("db_queries_total", None)}
    assert {op.upper() for op in ops} == {"SELECT", "INSERT"}


# --- §6 'Middleware Integration' (the user's own BaseHTTPMiddleware) -------------------------------


def metrics_middleware() -> type:
    """The guide's ``MetricsMiddleware`` class (its module imports ``time``, as the user's would)."""
    middleware: type = s06(MIDDLEWARE).run(time=time)["MetricsMiddleware"]
    return middleware


async def test_users_metrics_middleware_in_our_stack(metrics: MetricsService) -> None:
    """The user's BaseHTTPMiddleware, added to a setup_app app, counts requests; in-progress ends at 0."""
    router = APIRouter()

    @router.get("/api/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    app = guide_app(router, ENVIRONMENT="test")
    app.add_middleware(metrics_middleware())
    async with app_client(app) as client:
        for _ in range(3):
            assert (await client.get("/api/ping")).status_code == 200
        assert (await client.get("/api/none")).status_code == 404
    ping_count = metrics.get_counter_sum("http_requests_total", {"endpoint": "/api/ping", "status_code": "200"})
    assert ping_count >= 3  # ours (3) plus our own MetricsMiddleware's when it records path names
    assert metrics.get_counter_sum("http_errors_total", {"endpoint": "/api/none", "status_code": "404"}) >= 1
    assert _sample(metrics, "http_requests_in_progress", {"method": "GET", "endpoint": "/api/ping"}) == 0


# --- §6 'Configuration' ----------------------------------------------------------------------------


def configuration_startup(user_settings: Any, port: int | None = None) -> Any:
    """The guide's ``startup`` reading the user's ``settings``; on ``port`` instead of the guide's 9090 when given."""
    block = s06(CONFIGURATION)
    if port is not None:
        block = block.adapted("endpoint_port=9090", f"endpoint_port={port}")
    return block.run(settings=user_settings)["startup"]


async def test_configuration_startup(metrics: MetricsService) -> None:
    """After startup, new metrics are exported as crown_nexus_api_<name> with the environment label."""
    await configuration_startup(settings)()
    try:
        metrics.increment_counter("logins_total", 1, {"kind": "password"})
        body, content_type = metrics.render_latest()
        assert content_type.startswith("text/plain")
        expected = f'crown_nexus_api_logins_total{{environment="{settings.ENVIRONMENT.value}",kind="password"}} 1.0'
        assert expected.encode() in body
        assert metrics.get_counter_sum("logins_total", {"kind": "password"}) == 1
    finally:
        await metrics.shutdown()


# --- §14 'Metrics in Services', verbatim -----------------------------------------------------------


class Repository:
    """The user's product repository (an empty query fails)."""

    async def search(self, query: str, filters: Any = None) -> list[dict[str, Any]]:
        if query == "boom":
            raise ConnectionError("search backend down")
        return [{"id": "p1"}, {"id": "p2"}] if query else [{"id": "p3"}]


class ProductService:
    def __init__(self, db):
        self.db = db
        self.metrics_service = get_service("metrics_service")
        self.logger = get_logger("app.domains.products.service")

    @track_db_select(entity="product")
    async def search_products(self, query, filters=None):
        self.logger.info("Searching products", query=query, filters=filters)

        # Track search operation
        start_time = time.monotonic()
        result_count = 0
        error = None

        try:
            # Perform search
            products = await self.repository.search(query, filters)
            result_count = len(products)
            return products
        except Exception as e:
            error = type(e).__name__
            raise
        finally:
            duration = time.monotonic() - start_time

            # Track search metrics
            self.metrics_service.track_service_call(
                component="product_service",
                action="search",
                duration=duration,
                error=error
            )

            # Track result count
            if not error:
                self.metrics_service.set_gauge(
                    "product_search_result_count",
                    value=result_count,
                    labels={"query_type": "text" if query else "filter"}
                )


async def test_metrics_in_services(metrics: MetricsService) -> None:
    """§14: searches are counted (success/error), result counts land in the gauge, errors re-raise."""
    service = ProductService(db=None)
    service.repository = Repository()
    assert len(await service.search_products("lamp")) == 2
    assert len(await service.search_products("", {"cat": 1})) == 1
    with pytest.raises(ConnectionError):
        await service.search_products("boom")
    assert _sample(metrics, "product_search_result_count", {"query_type": "text"}) == 2
    assert _sample(metrics, "product_search_result_count", {"query_type": "filter"}) == 1
    assert metrics.get_counter_sum("service_calls_total", {"component": "product_service", "status": "success"}) == 2
    assert metrics.get_counter_sum("service_errors_total", {"error_type": "ConnectionError"}) == 1
    assert metrics.get_counter_sum("db_queries_total", {"entity": "product"}) == 3
    assert metrics.get_counter_sum("db_errors_total", {"entity": "product"}) == 1


async def test_error_responses_carry_x_error_code_for_the_guides_middleware(metrics: MetricsService) -> None:
    """The guide's MetricsMiddleware labels errors from the response's X-Error-Code: our error responses send it."""
    from crown_nexus.core.exceptions import BusinessException

    router = APIRouter()

    @router.get("/api/sell")
    async def sell() -> None:
        raise BusinessException("Out of stock")

    app = guide_app(router, ENVIRONMENT="test")
    app.add_middleware(metrics_middleware())
    async with app_client(app) as client:
        response = await client.get("/api/sell")
        missing = await client.get("/api/none")
    assert response.status_code == 400 and response.headers["X-Error-Code"] == "BUSINESS_LOGIC_ERROR"
    assert missing.headers["X-Error-Code"] == missing.json()["code"]
    labels = {"endpoint": "/api/sell", "status_code": "400", "error_code": "BUSINESS_LOGIC_ERROR"}
    assert metrics.get_counter_sum("http_errors_total", labels) >= 1


# --- the same blocks on a second setup: the shared "metrics_service", reset around each test ------


@pytest.mark.usefixtures("fresh_shared_service")
def test_basic_usage_example() -> None:
    """Create and record a counter, a gauge and a histogram as the guide shows."""
    ns = s06(BASIC_USAGE).run()
    counter, gauge, histogram, metrics_service = (
        ns[name] for name in ("counter", "gauge", "histogram", "metrics_service")
    )

    assert counter.labels(source="web", role="customer")._value.get() == 1
    assert gauge.labels(tenant="main")._value.get() == 42
    assert histogram.labels(type="standard")._sum.get() == pytest.approx(1.7)
    assert metrics_service.get_histogram_quantile("order_processing_seconds", 0.5) == 1.7


@pytest.mark.usefixtures("fresh_shared_service")
def test_tracking_operations_example() -> None:
    """The pre-built trackers record requests, queries, service calls and cache operations."""
    metrics_service = s06(TRACKING).run()["metrics_service"]

    assert metrics_service.get_counter_sum("http_requests_total", {"endpoint": "/api/users"}) == 1
    assert metrics_service.get_counter_sum("db_queries_total", {"entity": "user"}) == 1
    assert metrics_service.get_counter_sum("service_calls_total", {"action": "get_weather"}) == 1
    assert metrics_service.get_counter_sum("cache_hit_total", {"component": "user_profile"}) == 1


@pytest.mark.usefixtures("fresh_shared_service")
async def test_function_timing_example() -> None:
    """timed_function / async_timed_function (labels, in-progress) as the guide shows."""
    process_user_data, fetch_external_data, long_running_operation = function_timing("ok")
    metrics_service = get_service("metrics_service")

    assert process_user_data(1, {}) == "ok"
    assert await fetch_external_data("doc-42") == "ok"
    assert await long_running_operation() == "ok"
    body = metrics_service.render_latest()[0].decode()
    assert "process_user_data_duration_count 1.0" in body
    assert 'fetch_external_data_duration_count{resource_type="doc"} 1.0' in body
    assert "long_running_operation_duration_count 1.0" in body
    assert "long_running_operations_in_progress 0.0" in body


@pytest.mark.usefixtures("fresh_shared_service")
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

    get_users_by_role, create_order = db_operations(User, Order, select)

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


@pytest.mark.usefixtures("fresh_shared_service")
async def test_middleware_integration_example() -> None:
    """The guide's own BaseHTTPMiddleware using MetricName/MetricTag records each request."""
    MetricsMiddleware = metrics_middleware()

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


@pytest.mark.usefixtures("fresh_shared_service")
async def test_configuration_example(unused_tcp_port: int) -> None:
    """initialize(MetricsConfig(...)) applies namespace/labels and serves the metrics."""
    startup = configuration_startup(Settings(ENVIRONMENT="test"), port=unused_tcp_port)

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
