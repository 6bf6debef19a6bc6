"""MetricsMiddleware with a metrics service of another kind, or a failing one (issue 11)."""

from __future__ import annotations

from typing import Any

import pytest

from crown_nexus.middleware.metrics import MetricsMiddleware


class RecordingService:
    """A metrics service with only the generic calls (no request_started/finished)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def track_in_progress(self, name: str, labels: dict[str, str], delta: int) -> None:
        self.calls.append(("progress", name, dict(labels), delta))

    def track_request(self, **kwargs: Any) -> None:
        self.calls.append(("request", kwargs["method"], kwargs["endpoint"], kwargs["status_code"]))


class BrokenService:
    """A metrics service whose every call fails."""

    def request_started(self, method: str) -> Any:
        raise RuntimeError("metrics down")

    def request_finished(self, *args: Any) -> None:
        raise RuntimeError("metrics down")


def _app(calls: list[str], fail: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        if fail:
            raise ValueError("boom")
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


async def _call(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "PUT", "path": "/x", "headers": []}, receive, send)
    return sent


async def test_a_service_without_the_fused_calls_gets_the_generic_ones() -> None:
    """track_in_progress(+1), then track_in_progress(-1) and track_request, as before."""
    service, calls = RecordingService(), []
    await _call(MetricsMiddleware(_app(calls), metrics_service=service))
    assert calls == ["/x"]
    assert service.calls == [
        ("progress", "http_requests_in_progress", {"method": "PUT"}, 1),
        ("progress", "http_requests_in_progress", {"method": "PUT"}, -1),
        ("request", "PUT", "<unmatched>", 201),
    ]


async def test_an_app_exception_runs_the_app_once_and_propagates() -> None:
    """The app raising is counted as 500 with its type and never run a second time."""
    service, calls = RecordingService(), []
    with pytest.raises(ValueError):
        await _call(MetricsMiddleware(_app(calls, fail=True), metrics_service=service))
    assert calls == ["/x"]
    assert service.calls[-1] == ("request", "PUT", "<unmatched>", 500)


async def test_a_failing_metrics_service_never_affects_the_response() -> None:
    """Metrics that fail to start or finish leave the response as the app sent it."""
    calls: list[str] = []
    sent = await _call(MetricsMiddleware(_app(calls), metrics_service=BrokenService()))
    assert calls == ["/x"] and sent[0]["status"] == 201
