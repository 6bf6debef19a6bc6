"""HTTP-level tests of the reference service's GET /metrics and request instrumentation."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client


def _value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def test_metrics_endpoint_serves_prometheus_text(tmp_path) -> None:
    """/metrics answers 200 in Prometheus text format, counting requests by route template."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/m.db"))
    async with app_client(app) as client:
        before = _value(
            (await client.get("/metrics")).text,
            "http_requests_total",
            endpoint="/demo/errors/{kind}",
        )
        for kind in ("not_found", "validation", "not_found"):
            await client.get(f"/demo/errors/{kind}", headers={"X-Request-ID": f"m-{kind}"})
        await client.get("/no/such/route/123")
        resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert "x-request-id" in resp.headers
    text = resp.text
    assert not text.lstrip().startswith("{")  # never wrapped in the JSON envelope
    after = _value(text, "http_requests_total", endpoint="/demo/errors/{kind}")
    assert after - before == 3
    assert _value(text, "http_requests_total", endpoint="/no/such/route/123") == 0
    assert _value(text, "http_requests_total", endpoint="<unmatched>") >= 1
    assert _value(text, "http_requests_total", endpoint="/metrics") == 0  # ignored path
    assert "# TYPE http_request_duration_seconds histogram" in text


async def test_metrics_endpoint_shows_application_metrics(tmp_path) -> None:
    """A metric recorded through get_service('metrics_service') in the app appears on its /metrics."""
    from crown_nexus.core.dependency_manager import get_service

    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/m2.db"))
    async with app_client(app) as client:  # the app's container is current in here
        get_service("metrics_service").increment_counter("demo_widgets_total", 2, {"colour": "red"})
        resp = await client.get("/metrics")
    assert _value(resp.text, "demo_widgets_total", colour="red") >= 2
