"""MetricsMiddleware: route-template labels, status codes, ignored paths, errors, in-progress."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from crown_nexus.core.metrics import MetricsService
from crown_nexus.middleware import MetricsMiddleware
from crown_nexus.middleware.metrics import KNOWN_METHODS, OTHER_METHOD, UNMATCHED_ROUTE


def _app(service: MetricsService) -> FastAPI:
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> dict:
        in_progress = service.get_metric("http_requests_in_progress")
        return {"id": user_id, "in_progress": in_progress.labels("GET")._value.get()}

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/fail")
    async def fail() -> dict:
        raise RuntimeError("boom")

    app.add_middleware(
        MetricsMiddleware, ignore_paths=["/metrics", "/health"], metrics_service=service
    )
    return app


@pytest.fixture
def service() -> MetricsService:
    """A fresh metrics service per test."""
    return MetricsService()


@pytest.fixture
async def client(service: MetricsService):
    """An httpx client on the instrumented app."""
    transport = httpx.ASGITransport(app=_app(service), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_labels_use_the_route_template(client, service) -> None:
    """/users/1 and /users/2 are counted under /users/{user_id}, never the raw path."""
    for i in (1, 2, 3):
        assert (await client.get(f"/users/{i}")).status_code == 200
    labels = {"method": "GET", "endpoint": "/users/{user_id}", "status_code": "200"}
    assert service.get_counter_sum("http_requests_total", labels) == 3
    assert service.get_counter_sum("http_requests_total", {"endpoint": "/users/1"}) == 0
    assert service.get_histogram_quantile("http_request_duration_seconds", 0.5) > 0


async def test_unknown_routes_share_one_label(client, service) -> None:
    """404s of random paths are counted under one fixed endpoint label."""
    for path in ("/a", "/b/c", "/random/123"):
        assert (await client.get(path)).status_code == 404
    assert (
        service.get_counter_sum(
            "http_requests_total", {"endpoint": UNMATCHED_ROUTE, "status_code": "404"}
        )
        == 3
    )
    assert service.series_count("http_requests_total") == 1
    assert service.get_counter_sum("http_errors_total", {"status_code": "404"}) == 3


async def test_validation_errors_count_with_their_status(client, service) -> None:
    """A 422 is counted with status 422 under the route template."""
    assert (await client.get("/users/not-a-number")).status_code == 422
    assert (
        service.get_counter_sum(
            "http_requests_total", {"endpoint": "/users/{user_id}", "status_code": "422"}
        )
        == 1
    )


async def test_ignored_paths_are_not_measured(client, service) -> None:
    """/health (in ignore_paths) produces no request metrics."""
    assert (await client.get("/health")).status_code == 200
    assert service.get_counter_sum("http_requests_total") == 0


async def test_exceptions_count_as_500_with_their_type(client, service) -> None:
    """An exception escaping the app is counted as 500 with error_code = exception type."""
    assert (await client.get("/fail")).status_code == 500
    assert (
        service.get_counter_sum(
            "http_errors_total", {"status_code": "500", "error_code": "RuntimeError"}
        )
        == 1
    )


async def test_in_progress_goes_up_during_and_down_after(client, service) -> None:
    """http_requests_in_progress is 1 inside the handler and 0 afterwards."""
    resp = await client.get("/users/7")
    assert resp.json()["in_progress"] == 1
    assert service.get_metric("http_requests_in_progress").labels("GET")._value.get() == 0


async def test_error_code_header_is_recorded(service) -> None:
    """An X-Error-Code response header becomes the error_code label."""

    async def app(scope, receive, send):
        await send(
            {
                "type": "http.response.start",
                "status": 409,
                "headers": [(b"x-error-code", b"INVALID_STATE")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    transport = httpx.ASGITransport(app=MetricsMiddleware(app, metrics_service=service))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        assert (await c.get("/x")).status_code == 409
    assert service.get_counter_sum("http_errors_total", {"error_code": "INVALID_STATE"}) == 1


async def test_invented_methods_share_one_other_label(client, service) -> None:
    """300 requests with invented methods make one ``_OTHER`` series per metric, not 300."""
    for i in range(300):
        resp = await client.request(f"X{i}", "/users/1")
        assert resp.status_code == 405
    assert service.get_counter_sum("http_requests_total", {"method": OTHER_METHOD}) == 300
    assert service.series_count("http_requests_total") == 1
    assert service.series_count("http_errors_total") == 1
    assert service.series_count("http_request_duration_seconds") == 1
    assert service.get_counter_sum("http_requests_total", {"method": "X1"}) == 0
    assert service.get_metric("http_requests_in_progress").labels(OTHER_METHOD)._value.get() == 0


async def test_every_http_method_keeps_its_own_label(client, service) -> None:
    """The methods of HTTP are labelled as themselves."""
    for method in sorted(KNOWN_METHODS - {"CONNECT"}):
        await client.request(method, "/users/1")
    for method in KNOWN_METHODS - {"CONNECT"}:
        assert service.get_counter_sum("http_requests_total", {"method": method}) == 1
    assert service.get_counter_sum("http_requests_total", {"method": OTHER_METHOD}) == 0


def test_no_base_http_middleware_in_our_middleware() -> None:
    """Our middleware classes are pure ASGI (no BaseHTTPMiddleware)."""
    from starlette.middleware.base import BaseHTTPMiddleware

    from crown_nexus.middleware import RequestContextMiddleware, TracingMiddleware

    for cls in (MetricsMiddleware, RequestContextMiddleware, TracingMiddleware):
        assert not issubclass(cls, BaseHTTPMiddleware)
