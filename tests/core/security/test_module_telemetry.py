"""API key and suspicious-content metrics/events from every entry point, counted once (issue 13)."""

from __future__ import annotations

import asyncio
from typing import Any

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.security import SecurityService, generate_api_key, verify_api_key
from crown_nexus.core.security.validation import detect_suspicious_content
from crown_nexus.settings import Settings
from crown_nexus.testing import override_service


class RecordingEventService:
    """Collects published events (the event system's publish signature)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, event_name: str, payload: dict[str, Any], **_: Any) -> None:
        self.events.append((event_name, payload))


def _verifications(metrics: Any, success: str) -> float:
    value = metrics.registry.get_sample_value(
        "api_key_verification_duration_seconds_count", {"success": success}
    )
    return value or 0.0


def _state(metrics: Any) -> tuple[float, float, float, float, float]:
    return (
        metrics.get_counter_sum("api_keys_created_total"),
        _verifications(metrics, "true"),
        _verifications(metrics, "false"),
        metrics.get_counter_sum("suspicious_content_detections_total", {"category": "xss"}),
        metrics.get_counter_sum("suspicious_content_detections_total"),
    )


async def test_module_functions_record_and_publish() -> None:
    """generate_api_key / verify_api_key / detect_suspicious_content record metrics and events."""
    metrics = get_service("metrics_service")
    recorder = RecordingEventService()
    before = _state(metrics)
    with override_service("event_service", recorder):
        data = generate_api_key("u7", "ci", ["product:read"])
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert verify_api_key(data.api_key, data.hashed_secret) is True
    assert verify_api_key(data.api_key + "x", data.hashed_secret) is False
    assert detect_suspicious_content("<script>alert(1)</script>") is True
    assert detect_suspicious_content("hello") is False
    assert _state(metrics) == (
        before[0] + 1,
        before[1] + 1,
        before[2] + 1,
        before[3] + 1,
        before[4] + 1,
    )
    assert recorder.events == [
        (
            "security.api_key_created",
            {"user_id": "u7", "key_id": data.key_id, "name": "ci", "permissions": ["product:read"]},
        )
    ]


async def test_service_methods_count_once() -> None:
    """The SecurityService methods delegate to the module functions: one call, one record."""
    metrics = get_service("metrics_service")
    recorder = RecordingEventService()
    service = SecurityService(Settings(secret_key="module-telemetry-test-secret-0123456789"))
    try:
        before = _state(metrics)
        with override_service("event_service", recorder):
            data = service.generate_api_key("u8", "svc")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert service.verify_api_key(data.api_key, data.hashed_secret)
        assert not service.verify_api_key("ck_x.short", data.hashed_secret)
        assert service.detect_suspicious_content("<img src=x onerror=alert(1)>")
        after = _state(metrics)
    finally:
        await service.close()
    assert after == (before[0] + 1, before[1] + 1, before[2] + 1, before[3] + 1, before[4] + 1)
    assert [name for name, _ in recorder.events] == ["security.api_key_created"]


def test_without_a_loop_the_event_is_dropped_but_counted() -> None:
    """From plain sync code (no running loop) the key is still created and counted."""
    metrics = get_service("metrics_service")
    before = metrics.get_counter_sum("api_keys_created_total")
    data = generate_api_key("u9", "cli")
    assert data.api_key.startswith(data.key_id + ".")
    assert metrics.get_counter_sum("api_keys_created_total") == before + 1


def test_records_follow_the_registered_metrics_service() -> None:
    """A replaced (or once broken) metrics service does not capture the module functions' records."""
    from crown_nexus.core.metrics import MetricsService

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("metrics down")

    with override_service("metrics_service", Broken()):
        assert detect_suspicious_content("<script>x</script>")  # still answers
    fresh = MetricsService()
    with override_service("metrics_service", fresh):
        generate_api_key("u10", "k")
        assert detect_suspicious_content("<script>x</script>")
    assert fresh.get_counter_sum("api_keys_created_total") == 1
    assert fresh.get_counter_sum("suspicious_content_detections_total", {"category": "xss"}) == 1
