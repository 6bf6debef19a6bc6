"""Permission checks are counted in a local batch: exact totals, visible to every reader."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from crown_nexus.core.metrics import MetricsService
from crown_nexus.core.permissions import PermissionChecker, _telemetry
from crown_nexus.testing import override_service

USER = {"id": "u1", "role": "client"}


@pytest.fixture
def metrics() -> Any:
    """A fresh metrics service standing in for the shared one."""
    _telemetry.flush()
    service = MetricsService()
    with override_service("metrics_service", service):
        yield service
    _telemetry.flush()


def test_counts_are_read_back_without_waiting(metrics: MetricsService) -> None:
    """A reader right after the checks sees every count and every duration."""
    for _ in range(7):
        PermissionChecker.has_permission(USER, "order:read")
    PermissionChecker.has_permission(USER, "order:admin")
    assert (
        metrics.get_counter_sum(
            "permission_checks_total", {"permission": "order:read", "granted": "True"}
        )
        == 7
    )
    assert metrics.get_counter_sum("permission_checks_total", {"granted": "False"}) == 1
    count = metrics.registry.get_sample_value(
        "permission_check_duration_seconds_count", {"permission": "order:read"}
    )
    assert count == 7
    assert (
        b'permission_checks_total{granted="False",permission="order:admin"} 1.0'
        in (metrics.render_latest()[0])
    )


def test_counts_are_exact_under_threads(metrics: MetricsService) -> None:
    """Threads checking at once (and flushing at FLUSH_EVERY) lose no check."""
    per_thread = _telemetry.FLUSH_EVERY + 300

    def work() -> None:
        for _ in range(per_thread):
            PermissionChecker.has_permission(USER, "order:read")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert metrics.get_counter_sum("permission_checks_total") == 4 * per_thread
    assert (
        metrics.registry.get_sample_value(
            "permission_check_duration_seconds_count", {"permission": "order:read"}
        )
        == 4 * per_thread
    )


def test_each_check_goes_to_the_service_current_when_it_ran() -> None:
    """A check made under one metrics service is never counted in the next one."""
    first, second = MetricsService(), MetricsService()
    with override_service("metrics_service", first):
        PermissionChecker.has_permission(USER, "order:read")
    with override_service("metrics_service", second):
        PermissionChecker.has_permission(USER, "order:read")
        PermissionChecker.has_permission(USER, "order:read")
        assert second.get_counter_sum("permission_checks_total") == 2
    assert first.get_counter_sum("permission_checks_total") == 1


async def test_a_timer_hands_the_batch_over_within_a_second(metrics: MetricsService) -> None:
    """Inside a running loop the batch reaches the service by itself (no reader needed)."""
    import asyncio

    PermissionChecker.has_permission(USER, "order:read")
    metric = metrics._metrics.get("permission_checks_total")
    assert metric is None or not metric.series  # still local
    await asyncio.sleep(_telemetry.FLUSH_AFTER_SECONDS + 0.2)
    assert sum(s.total for s in metrics._metrics["permission_checks_total"].series.values()) == 1
