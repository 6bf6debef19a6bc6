"""The gauges the dashboard reads: the event backlog and the cache's Redis fallback state."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from crown_nexus.core.cache import CacheService
from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.core.events import EventBackendType, EventConfig, EventService
from crown_nexus.core.metrics import MetricsService
from crown_nexus.settings import Settings


def _gauge(metrics: MetricsService, name: str, **labels: str) -> float | None:
    text = metrics.render_latest()[0].decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def _eventually(predicate: Any, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


async def test_event_backlog_gauge_follows_pending_handler_runs() -> None:
    """event_handlers_pending shows the runs waiting and drops to 0 once they finish; the
    failure counter exists from the subscription on."""
    metrics = MetricsService()
    with get_registry().override("metrics_service", metrics):
        events = EventService(EventConfig(handler_timeout=5.0, shutdown_timeout=2.0))
        await events.initialize(EventBackendType.MEMORY)
        gate = asyncio.Event()

        async def slow(event: dict[str, Any]) -> None:
            await gate.wait()

        events.subscribe("backlog.test", slow)
        # the failure counter of a new subscription starts at 0 (a series before any failure)
        assert _gauge(metrics, "event_handler_errors_total", event_type="backlog.test") == 0
        try:
            for _ in range(3):
                await events.publish("backlog.test", {})
            events.flush_metrics()
            assert _gauge(metrics, "event_handlers_pending") == 3
            gate.set()
            assert await events.wait_for_pending(2)
            assert await _eventually(lambda: _gauge(metrics, "event_handlers_pending") == 0)
        finally:
            await events.shutdown()
    assert metrics.get_metric("event_handlers_pending")._multiprocess_mode == "livesum"


async def test_cache_backend_up_is_set_from_start_and_on_fallback(redis_server: Any) -> None:
    """cache_backend_up is 1 once the Redis cache starts, 0 while it runs on memory, and
    combines workers by livemin."""
    svc = CacheService(
        Settings(), default_backend="redis", redis_url=redis_server.url,
        op_timeout=0.5, retry_interval=0.1,
    )
    metrics = MetricsService()
    with get_registry().override("metrics_service", metrics):
        await svc.initialize()
        try:
            assert _gauge(metrics, "cache_backend_up", backend="redis") == 1
            assert metrics.get_counter_sum("cache_fallback_total") == 0
            redis_server.stop()
            for i in range(3):
                await svc.set(f"k{i}", i, ttl=30)
            assert svc.active_backend_name == "memory"
            assert _gauge(metrics, "cache_backend_up", backend="redis") == 0
            assert metrics.get_counter_sum("cache_fallback_total") == 1
            redis_server.start()
            assert await _eventually(lambda: svc.active_backend_name == "redis", within=10)
            assert _gauge(metrics, "cache_backend_up", backend="redis") == 1
        finally:
            await svc.shutdown()
    assert metrics.get_metric("cache_backend_up")._multiprocess_mode == "livemin"


async def test_security_counts_reach_the_metrics_without_further_traffic() -> None:
    """Token failures counted between flushes are written by a timer within the flush
    interval, even when no further validation comes to flush them."""
    from crown_nexus.core.security._telemetry import SecurityTelemetry

    metrics = MetricsService()
    with get_registry().override("metrics_service", metrics):
        telemetry = SecurityTelemetry(flush_interval=0.2)
        telemetry.validation(("token_validations_total", ("false", "access")), 0.0)  # flushes
        telemetry.validation(("token_validations_total", ("false", "access")), 0.0)  # pending
        telemetry.validation(("token_validations_total", ("false", "access")), 0.0)
        labels = {"success": "false", "token_type": "access"}
        assert metrics.get_counter_sum("token_validations_total", labels) == 1
        assert await _eventually(
            lambda: metrics.get_counter_sum("token_validations_total", labels) == 3, within=1.0
        )
        await asyncio.sleep(0.5)  # idle: the timer does not re-arm forever
        assert telemetry._timer is None


_FRESH_SCRAPE = """
import asyncio, sys
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

async def main():
    app = create_app(Settings(database_url=sys.argv[1]))
    async with app_client(app) as client:
        text = (await client.get("/metrics")).text
    with open(sys.argv[2], "w") as out:  # stdout carries the logs
        out.write(text)

asyncio.run(main())
"""


def test_fresh_service_exports_the_alerted_series_before_any_traffic(tmp_path: Any) -> None:
    """A reference service that has served nothing yet (a fresh process) already exports the
    series the alert rules watch: refusal and failure counters at 0, the backlog at 0, the
    cache backend up, the outbox backlog at 0."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URI", "PROMETHEUS_MULTIPROC_DIR")}
    scrape = tmp_path / "scrape.txt"
    subprocess.run(
        [sys.executable, "-c", _FRESH_SCRAPE, f"sqlite+aiosqlite:///{tmp_path}/fresh.db", str(scrape)],
        env=env, capture_output=True, timeout=120, check=True,
    )
    out = scrape.read_text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    assert samples[("rate_limit_exceeded_total", (("path", "*"), ("strategy", "ip")))] == 0
    assert samples[("rate_limit_exceeded_total", (("path", "/auth/"), ("strategy", "ip")))] == 0
    assert samples[("event_handlers_pending", ())] == 0
    assert samples[("event_outbox_pending", ())] == 0  # exported from start-up
    assert any(
        name == "cache_backend_up" and dict(labels).get("backend") == "memory" and value == 1
        for (name, labels), value in samples.items()
    )
    assert any(name == "event_handler_errors_total" and value == 0 for (name, _), value in samples.items())
