"""TracingTransport: a CLIENT span per outgoing httpx request, its context sent downstream."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.trace import SpanKind, StatusCode

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.tracing import set_tracing_enabled, span
from crown_nexus.core.tracing.http_client import TracingTransport, redacted_url
from tests.core.tracing.conftest import Spans, span_id_of, trace_id_of, traceparent_of
from tests.core.tracing.test_api import _run


def _recorder(status: int = 200) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, extensions={"http_version": b"HTTP/1.1"})

    return seen, httpx.MockTransport(handler)


def _parent_id(s: Any) -> str | None:
    return None if s.parent is None else format(s.parent.span_id, "016x")


async def test_async_client_span_is_a_child_and_its_id_goes_downstream(spans: Spans) -> None:
    """AsyncClient: one CLIENT span named after the method, child of the current span, with the
    semantic-convention attributes; the sent traceparent names the CLIENT span (a stale one
    and a stale tracestate are replaced)."""
    seen, mock = _recorder()
    async with httpx.AsyncClient(transport=TracingTransport(mock)) as client:
        with span("caller"):
            resp = await client.get(
                "http://api.test/items/7",
                headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
                         "tracestate": "stale=1"},
            )
    assert resp.status_code == 200
    caller, sent = spans.one("caller"), spans.one("GET")
    assert sent.kind is SpanKind.CLIENT
    assert sent.instrumentation_scope is not None
    assert sent.instrumentation_scope.name == "crown_nexus.http_client"
    assert trace_id_of(sent) == trace_id_of(caller) and _parent_id(sent) == span_id_of(caller)
    assert dict(sent.attributes or {}) == {
        "http.request.method": "GET",
        "url.full": "http://api.test/items/7",
        "server.address": "api.test",
        "server.port": 80,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert sent.status.status_code is StatusCode.UNSET
    assert seen[0].headers["traceparent"] == traceparent_of(sent)
    assert "tracestate" not in seen[0].headers


def test_sync_client_gets_the_same_span(spans: Spans) -> None:
    """httpx.Client through the same transport class: a CLIENT span, its traceparent sent."""
    seen, mock = _recorder()
    with httpx.Client(transport=TracingTransport(mock)) as client, span("sync-caller"):
        client.post("https://api.test:8443/orders", json={"n": 1})
    sent = spans.one("POST")
    assert sent.kind is SpanKind.CLIENT and _parent_id(sent) == span_id_of(spans.one("sync-caller"))
    attrs = dict(sent.attributes or {})
    assert attrs["server.port"] == 8443 and attrs["url.full"] == "https://api.test:8443/orders"
    assert seen[0].headers["traceparent"] == traceparent_of(sent)


async def test_without_a_current_span_the_client_span_starts_a_trace(spans: Spans) -> None:
    """No current span: the CLIENT span is a root and its context is still sent."""
    seen, mock = _recorder()
    async with httpx.AsyncClient(transport=TracingTransport(mock)) as client:
        await client.get("https://api.test/")
    sent = spans.one("GET")
    assert sent.parent is None and sent.attributes["server.port"] == 443  # type: ignore[index]
    assert seen[0].headers["traceparent"] == traceparent_of(sent)


async def test_url_full_hides_credentials_and_secret_query_values(spans: Spans) -> None:
    """url.full never carries user:password or the values of token/signature parameters; the
    request itself is sent unchanged."""
    seen, mock = _recorder()
    url = "https://bob:hunter2@api.test/x?page=2&access_token=abc&Signature=s1g&q=token"
    async with httpx.AsyncClient(transport=TracingTransport(mock)) as client:
        await client.get(url)
    full = spans.one("GET").attributes["url.full"]  # type: ignore[index]
    assert full == (
        "https://REDACTED:REDACTED@api.test/x?page=2&access_token=REDACTED&Signature=REDACTED&q=token"
    )
    assert "hunter2" not in full and "abc" not in full and "s1g" not in full
    assert seen[0].url.params["access_token"] == "abc"
    custom = TracingTransport(mock, secret_query_params=["Page"])
    async with httpx.AsyncClient(transport=custom) as client:
        spans.clear()
        await client.get("https://api.test/x?page=2&token=t")
    assert spans.one("GET").attributes["url.full"] == "https://api.test/x?page=REDACTED&token=t"  # type: ignore[index]


def test_redacted_url_leaves_plain_urls_alone() -> None:
    """A URL without credentials or secret parameters comes back as it was."""
    plain = "http://h.test:81/a/b?x=1&y=&z"
    assert redacted_url(plain) is plain
    assert redacted_url("http://user@h.test/") == "http://REDACTED@h.test/"
    assert redacted_url("http://h.test/?KEY=v&key") == "http://h.test/?KEY=REDACTED&key"


@pytest.mark.parametrize("status", [500, 503, 404])
async def test_error_statuses_mark_the_client_span_failed(spans: Spans, status: int) -> None:
    """5xx (and, for a CLIENT span, 4xx) responses mark the span failed with error.type = the
    status code."""
    _, mock = _recorder(status)
    async with httpx.AsyncClient(transport=TracingTransport(mock)) as client:
        resp = await client.get("http://api.test/")
    assert resp.status_code == status
    sent = spans.one("GET")
    assert sent.status.status_code is StatusCode.ERROR
    assert sent.attributes["error.type"] == str(status)  # type: ignore[index]
    assert sent.attributes["http.response.status_code"] == status  # type: ignore[index]


async def test_transport_exception_is_recorded_and_reraised(spans: Spans) -> None:
    """A connection failure ends the span as failed (error.type, exception event) and reaches
    the caller unchanged."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=TracingTransport(httpx.MockTransport(refuse))) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://down.test/")
    sent = spans.one("GET")
    assert sent.status.status_code is StatusCode.ERROR
    assert sent.attributes["error.type"] == "ConnectError"  # type: ignore[index]
    assert "http.response.status_code" not in (sent.attributes or {})
    assert [e.name for e in sent.events] == ["exception"]


async def test_non_standard_method_is_named_http(spans: Spans) -> None:
    """A method outside the HTTP standard names the span "HTTP" with http.request.method
    _OTHER and the original kept."""
    _, mock = _recorder()
    async with httpx.AsyncClient(transport=TracingTransport(mock)) as client:
        await client.request("PURGE", "http://cache.test/a")
    sent = spans.one("HTTP")
    assert sent.attributes["http.request.method"] == "_OTHER"  # type: ignore[index]
    assert sent.attributes["http.request.method_original"] == "PURGE"  # type: ignore[index]


async def test_switched_off_tracing_leaves_the_request_untouched(spans: Spans) -> None:
    """set_tracing_enabled(False): no span, and no trace header added or removed."""
    seen, mock = _recorder()
    async with httpx.AsyncClient(transport=TracingTransport(mock)) as client:
        with span("outer"):
            set_tracing_enabled(False)
            await client.get("http://api.test/", headers={"traceparent": "kept"})
    assert spans.named("GET") == []
    assert seen[0].headers["traceparent"] == "kept"


async def test_sync_inner_transport_under_an_async_client_is_a_configuration_error() -> None:
    """A sync-only transport under an AsyncClient is a clear typed error."""
    async with httpx.AsyncClient(transport=TracingTransport(httpx.HTTPTransport())) as client:
        with pytest.raises(ConfigurationException):
            await client.get("http://api.test/")


def test_async_inner_transport_under_a_sync_client_is_a_configuration_error() -> None:
    """An async-only transport under a Client is a clear typed error."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    with httpx.Client(transport=TracingTransport(httpx.ASGITransport(app=app))) as sync_client:
        with pytest.raises(ConfigurationException):
            sync_client.get("http://api.test/")


class _ClosingSync(httpx.BaseTransport):
    def __init__(self, closed: list[str]) -> None:
        self.closed = closed

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    def close(self) -> None:
        self.closed.append("sync")


class _ClosingAsync(httpx.AsyncBaseTransport):
    def __init__(self, closed: list[str]) -> None:
        self.closed = closed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    async def aclose(self) -> None:
        self.closed.append("async")


def test_closing_a_client_closes_the_wrapped_transport() -> None:
    """Client.close reaches the wrapped sync transport."""
    closed: list[str] = []
    with httpx.Client(transport=TracingTransport(_ClosingSync(closed))) as c:
        assert c.get("http://a.test/").status_code == 204
    assert closed == ["sync"]


async def test_closing_an_async_client_closes_the_wrapped_transport() -> None:
    """AsyncClient.aclose reaches the wrapped async transport."""
    closed: list[str] = []
    async with httpx.AsyncClient(transport=TracingTransport(_ClosingAsync(closed))) as ac:
        assert (await ac.get("http://a.test/")).status_code == 204
    assert closed == ["async"]


async def test_one_trace_across_two_asgi_apps(spans: Spans) -> None:
    """A request to app A, whose endpoint calls app B through the traced client, is one trace:
    A's SERVER span → the CLIENT span → B's SERVER span (B continued the CLIENT span)."""
    downstream = FastAPI()

    @downstream.get("/stock/{sku}")
    async def stock(sku: str, request: Request) -> dict[str, Any]:
        return {"sku": sku, "traceparent": request.headers.get("traceparent")}

    upstream = FastAPI()
    outgoing = httpx.AsyncClient(
        transport=TracingTransport(httpx.ASGITransport(app=downstream)),
        base_url="http://inventory.internal",
    )

    @upstream.get("/products/{sku}")
    async def product(sku: str) -> dict[str, Any]:
        reply = await outgoing.get(f"/stock/{sku}")
        return {"sku": sku, "stock": reply.json()}

    async with outgoing, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=upstream), base_url="http://shop.test"
    ) as client:
        resp = await client.get("/products/X1")
    assert resp.status_code == 200
    servers = {s.name: s for s in spans.all() if s.kind is SpanKind.SERVER}
    a_server, b_server = servers["GET /products/{sku}"], servers["GET /stock/{sku}"]
    sent = spans.one("GET")
    assert sent.kind is SpanKind.CLIENT
    trace = trace_id_of(a_server)
    assert {trace_id_of(s) for s in (a_server, sent, b_server)} == {trace}
    # the CLIENT span sits under A's server span (directly or under FastAPI's endpoint span)
    by_id = {span_id_of(s): s for s in spans.all()}
    ancestor, chain = by_id.get(_parent_id(sent) or ""), []
    while ancestor is not None:
        chain.append(span_id_of(ancestor))
        ancestor = by_id.get(_parent_id(ancestor) or "")
    assert span_id_of(a_server) in chain
    assert _parent_id(b_server) == span_id_of(sent)
    assert resp.json()["stock"]["traceparent"] == traceparent_of(sent)
    assert sent.attributes["server.address"] == "inventory.internal"  # type: ignore[index]
    assert sent.attributes["url.full"] == "http://inventory.internal/stock/X1"  # type: ignore[index]


def test_without_a_provider_the_current_context_passes_through() -> None:
    """No tracer provider: no span is made; a valid current context (e.g. an incoming
    traceparent under the API's non-recording span) is sent on, otherwise nothing is added."""
    proc = _run(
        """
        import httpx
        from opentelemetry import context, trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
        from crown_nexus.core.tracing import tracing_enabled
        from crown_nexus.core.tracing.http_client import TracingTransport
        seen = []
        def handler(request):
            seen.append(request.headers.get("traceparent"))
            return httpx.Response(200)
        client = httpx.Client(transport=TracingTransport(httpx.MockTransport(handler)))
        client.get("http://a.test/")
        incoming = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1))
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(incoming)))
        try:
            client.get("http://a.test/", headers={"traceparent": "stale"})
        finally:
            context.detach(token)
        assert not tracing_enabled()
        print(seen)
        """
    )
    assert proc.returncode == 0, proc.stderr
    expected = "00-" + format(0x1234, "032x") + "-" + format(0x5678, "016x") + "-01"
    assert proc.stdout.strip() == str([None, expected])
