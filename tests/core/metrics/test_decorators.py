"""timed_function / async_timed_function and track_db_select / track_db_insert."""

from __future__ import annotations

import asyncio

import pytest

from crown_nexus.core.metrics import MetricsService, MetricType, track_db_insert, track_db_select
from crown_nexus.testing import override_service


def test_timed_function_observes_duration() -> None:
    """A sync function's duration lands in the histogram; its result is returned."""
    m = MetricsService()

    @m.timed_function(name="process_user_data_duration", metric_type=MetricType.HISTOGRAM)
    def process_user_data(user_id: int, data: dict) -> int:
        return user_id + len(data)

    assert process_user_data(1, {"a": 1}) == 2
    assert process_user_data(2, {}) == 2
    body = m.render_latest()[0].decode()
    assert "process_user_data_duration_count 2.0" in body


async def test_async_timed_function_with_labels_func() -> None:
    """labels_func(*args, **kwargs) labels each observation."""
    m = MetricsService()

    @m.async_timed_function(
        name="fetch_external_data_duration",
        metric_type=MetricType.HISTOGRAM,
        labels_func=lambda resource_id, **kwargs: {"resource_type": resource_id.split("-")[0]},
    )
    async def fetch_external_data(resource_id: str) -> str:
        return resource_id

    await fetch_external_data("doc-1")
    await fetch_external_data("doc-2")
    await fetch_external_data("img-1")
    body = m.render_latest()[0].decode()
    assert 'fetch_external_data_duration_count{resource_type="doc"} 2.0' in body
    assert 'fetch_external_data_duration_count{resource_type="img"} 1.0' in body


async def test_in_progress_is_tracked_while_running() -> None:
    """track_in_progress_flag counts running calls in in_progress_metric and returns to 0."""
    m = MetricsService()
    seen: list[float] = []
    release = asyncio.Event()

    @m.async_timed_function(
        name="long_running_operation_duration",
        track_in_progress_flag=True,
        in_progress_metric="long_running_operations_in_progress",
    )
    async def long_running_operation() -> str:
        await release.wait()
        return "done"

    tasks = [asyncio.create_task(long_running_operation()) for _ in range(3)]
    await asyncio.sleep(0)
    seen.append(m.get_metric("long_running_operations_in_progress")._value.get())
    release.set()
    assert await asyncio.gather(*tasks) == ["done"] * 3
    seen.append(m.get_metric("long_running_operations_in_progress")._value.get())
    assert seen == [3.0, 0.0]


def test_timed_function_records_failures_and_reraises() -> None:
    """A raising function is still measured and its exception propagates."""
    m = MetricsService()

    @m.timed_function(name="flaky_seconds", metric_type=MetricType.SUMMARY)
    def flaky() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        flaky()
    assert "flaky_seconds_count 1.0" in m.render_latest()[0].decode()


def test_timed_function_counter_and_broken_labels_func() -> None:
    """COUNTER counts calls; a labels_func that raises records without labels, never fails."""
    m = MetricsService()

    @m.timed_function(name="calls_total", metric_type=MetricType.COUNTER, labels_func=lambda: 1 / 0)
    def call() -> int:
        return 1

    assert call() == 1 and call() == 1
    assert m.get_counter_sum("calls_total") == 2


def test_async_timed_function_rejects_sync_functions() -> None:
    """async_timed_function on a plain function is a TypeError."""
    m = MetricsService()
    with pytest.raises(TypeError):

        @m.async_timed_function(name="x_seconds")
        def not_async() -> None:
            return None


async def test_track_db_select_and_insert_record_queries() -> None:
    """track_db_select/insert record a query per call (errors by type) on metrics_service."""
    m = MetricsService()

    @track_db_select(entity="user")
    async def get_users_by_role(db: object, role: str) -> list[str]:
        return [role]

    @track_db_insert(entity="order")
    def create_order(db: object, order_data: dict) -> dict:
        if not order_data:
            raise ValueError("empty order")
        return order_data

    with override_service("metrics_service", m):
        assert await get_users_by_role(None, "admin") == ["admin"]
        assert create_order(None, {"id": 1}) == {"id": 1}
        with pytest.raises(ValueError):
            create_order(None, {})
    assert m.get_counter_sum("db_queries_total", {"operation": "SELECT", "entity": "user"}) == 1
    assert m.get_counter_sum("db_queries_total", {"operation": "INSERT", "entity": "order"}) == 2
    assert m.get_counter_sum("db_errors_total", {"error_type": "ValueError"}) == 1
