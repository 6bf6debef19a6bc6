"""crown_nexus.core.tracing: off without a provider, spans/propagation/log ids with one."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from crown_nexus.core.tracing import (
    end_span,
    extract_context,
    httpx_event_hooks,
    inject_context,
    inject_httpx_headers,
    resume_span,
    span,
    start_span,
    tracing_enabled,
)
from crown_nexus.logging import bind_log_context, configure_logging, get_logger, reset_log_context
from crown_nexus.settings import Settings
from tests.conftest import implementations_of
from tests.core.tracing.conftest import Spans, span_id_of, trace_id_of, traceparent_of

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CROWN_NEXUS_OTEL"))}
    clean.update(env)
    clean["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60,
    )


def test_without_a_provider_nothing_is_traced() -> None:
    """No provider: tracing is off, helpers hand out one shared no-op, nothing is propagated,
    log lines carry no span ids, and configure_tracing installs nothing."""
    proc = _run(
        """
        import io, orjson
        from crown_nexus.core import tracing
        from crown_nexus.core.tracing.sdk import configure_tracing
        from crown_nexus.logging import configure_logging, get_logger
        from crown_nexus.settings import Settings
        assert not tracing.tracing_enabled()
        assert tracing.span("a") is tracing.span("b")
        assert tracing.resume_span("a", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is tracing.span("c")
        assert tracing.start_span("a") is None
        assert tracing.inject_context() == {}
        assert tracing.extract_context({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is None
        assert configure_tracing(Settings(ENVIRONMENT="test")) is None
        assert not tracing.tracing_enabled()
        sink = io.BytesIO()
        configure_logging(Settings(ENVIRONMENT="test"), stream=sink, log_format="json", stdlib=False)
        with tracing.span("x"):
            get_logger("t").info("hello")
        line = orjson.loads(sink.getvalue().splitlines()[-1])
        assert "trace_id" not in line and "span_id" not in line, line
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CROWN_NEXUS_OTEL_ENABLED": "true", "CROWN_NEXUS_OTEL_SERVICE_NAME": "svc-a"}, "svc-a"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SERVICE_NAME": "svc-b"},
         "svc-b"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces",
          "CROWN_NEXUS_APP_NAME": "svc-c"}, "svc-c"),
        ({"CROWN_NEXUS_OTEL_ENABLED": "true", "OTEL_SDK_DISABLED": "true"}, None),
    ],
)
def test_configure_tracing_from_the_environment(env: dict[str, str], expected: str | None) -> None:
    """CROWN_NEXUS_OTEL_* or the standard OTEL_* variables install an SDK provider with an OTLP
    batch exporter and the service name; OTEL_SDK_DISABLED=true keeps tracing off."""
    proc = _run(
        """
        from opentelemetry.sdk.trace import TracerProvider
        from crown_nexus.core.tracing import tracing_enabled
        from crown_nexus.core.tracing.sdk import configure_tracing
        from crown_nexus.settings import Settings
        provider = configure_tracing(Settings(ENVIRONMENT="test"))
        if provider is None:
            print("off", tracing_enabled())
        else:
            assert isinstance(provider, TracerProvider) and tracing_enabled()
            assert configure_tracing(Settings(ENVIRONMENT="test")) is provider  # kept
            processor = provider._active_span_processor._span_processors[0]
            print(provider.resource.attributes["service.name"], type(processor).__name__)
        """,
        **env,
    )
    assert proc.returncode == 0, proc.stderr
    if expected is None:
        assert proc.stdout.split() == ["off", "False"]
    else:
        assert proc.stdout.split() == [expected, "BatchSpanProcessor"]


@pytest.mark.parametrize(
    ("provider", "enabled"), [("sdk_tracer_provider", True), ("no_such_provider", False)]
)
def test_provider_from_otel_python_tracer_provider(provider: str, enabled: bool) -> None:
    """OTEL_PYTHON_TRACER_PROVIDER is honoured; a name that cannot be loaded leaves tracing off
    instead of breaking every request."""
    proc = _run(
        """
        from crown_nexus.core.tracing import span, tracing_enabled
        with span("x") as current:
            print(tracing_enabled(), current is not None)
        """,
        OTEL_PYTHON_TRACER_PROVIDER=provider,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(enabled), str(enabled)]


def test_missing_sdk_is_a_configuration_error() -> None:
    """Tracing requested without the otel extra is a ConfigurationException naming the extra."""
    proc = _run(
        """
        import sys
        sys.modules["opentelemetry.sdk"] = None  # as if the extra were not installed
        from crown_nexus.core.exceptions import ConfigurationException
        from crown_nexus.core.tracing.sdk import configure_tracing
        from crown_nexus.settings import Settings
        try:
            configure_tracing(Settings(ENVIRONMENT="test", otel_enabled=True))
        except ConfigurationException as exc:
            print("crown-nexus[otel]" in exc.message)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_spans_nest_and_record_errors(spans: Spans) -> None:
    """span() makes a current child span; an exception marks it failed; start_span is a leaf."""
    assert tracing_enabled()
    with span("outer", attributes={"a": 1}) as outer:
        assert outer is not None
        leaf = start_span("leaf", tracer="crown_nexus.cache")
        end_span(leaf, attributes={"b": 2})
        with pytest.raises(ValueError), span("inner"):
            raise ValueError("boom")
    outer_s, leaf_s, inner_s = spans.one("outer"), spans.one("leaf"), spans.one("inner")
    assert leaf_s.parent is not None and leaf_s.parent.span_id == outer_s.context.span_id
    assert inner_s.parent is not None and inner_s.parent.span_id == outer_s.context.span_id
    assert inner_s.status.status_code is StatusCode.ERROR
    assert leaf_s.attributes is not None and leaf_s.attributes["b"] == 2
    assert leaf_s.instrumentation_scope is not None
    assert leaf_s.instrumentation_scope.name == "crown_nexus.cache"
    assert outer_s.instrumentation_scope is not None
    assert outer_s.instrumentation_scope.name == "crown_nexus"


def test_inject_and_resume_across_a_boundary(spans: Spans) -> None:
    """inject_context writes the W3C traceparent of the current span; resume_span continues it
    in a context that knows nothing of it (another process)."""
    with span("producer"):
        carrier = inject_context({"request_id": "r1"})
    producer = spans.one("producer")
    assert carrier["traceparent"] == traceparent_of(producer)
    assert carrier["request_id"] == "r1"
    assert trace.get_current_span().get_span_context().is_valid is False
    with resume_span("consumer", carrier) as current:
        assert current is not None
    consumer = spans.one("consumer")
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id


def test_resume_nests_under_the_current_span_of_the_same_trace(spans: Spans) -> None:
    """Resumed inside a span of the carried trace (a worker's task span), the new span is a
    child of that span, not a sibling."""
    with span("producer"):
        carrier = inject_context()
    with resume_span("task", carrier), resume_span("handler", carrier):
        pass
    task, handler = spans.one("task"), spans.one("handler")
    assert handler.parent is not None and handler.parent.span_id == task.context.span_id


@pytest.mark.parametrize(
    "value",
    ["garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01", "00-abc-def-01", 7, ""],
)
def test_malformed_carried_context_is_ignored(spans: Spans, value: object) -> None:
    """A malformed or zero traceparent resumes nothing: the span starts a new trace."""
    assert extract_context({"traceparent": value}) is None
    with resume_span("consumer", {"traceparent": value}):
        pass
    assert spans.one("consumer").parent is None


async def test_httpx_hooks_carry_the_trace(spans: Spans) -> None:
    """The async httpx event hooks add the current traceparent to outgoing calls (replacing a
    stale one) and nothing when no span is current."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(200)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), event_hooks=httpx_event_hooks()
    ) as client:
        with span("call"):
            await client.get("http://upstream.test/a", headers={"traceparent": "stale"})
        await client.get("http://upstream.test/b")
    assert seen[0] == traceparent_of(spans.one("call"))
    assert seen[1] is None  # no current span: nothing invented


def test_sync_httpx_hook_carries_the_trace(spans: Spans) -> None:
    """inject_httpx_headers as a sync httpx.Client request hook adds the current traceparent."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(200)

    with httpx.Client(
        transport=httpx.MockTransport(handler), event_hooks={"request": [inject_httpx_headers]}
    ) as sync_client, span("sync-call"):
        sync_client.get("http://upstream.test/c")
    assert seen == [traceparent_of(spans.one("sync-call"))]


@pytest.mark.parametrize("render_kind", implementations_of("log_render"))
def test_log_lines_carry_the_current_span_ids(spans: Spans, render_kind: str) -> None:
    """Every log line inside a span carries that span's trace_id/span_id (each renderer, fast
    path and full path); outside any span the bound ids are kept."""
    sink = io.BytesIO()
    configure_logging(
        Settings(ENVIRONMENT="test"), stream=sink, log_format="json", level="debug",
        render_kind=render_kind, stdlib=False,
    )
    try:
        log = get_logger("tracing.test")
        token = bind_log_context(trace_id="t" * 32, span_id="s" * 16, service="api")
        try:
            with span("outer"):
                log.info("in outer")
                with span("inner"):
                    log.info("in inner", extra_field=1)
                    try:
                        raise RuntimeError("x")
                    except RuntimeError:
                        log.exception("failed")
            log.info("outside")
        finally:
            reset_log_context(token)
    finally:
        configure_logging(Settings(ENVIRONMENT="test"))
    lines = [orjson.loads(line) for line in sink.getvalue().splitlines()]
    outer, inner = spans.one("outer"), spans.one("inner")
    assert (lines[0]["trace_id"], lines[0]["span_id"]) == (trace_id_of(outer), span_id_of(outer))
    for line in lines[1:3]:
        assert (line["trace_id"], line["span_id"]) == (trace_id_of(inner), span_id_of(inner))
    assert lines[0]["service"] == "api"
    assert (lines[3]["trace_id"], lines[3]["span_id"]) == ("t" * 32, "s" * 16)


def test_current_span_ids_follow_the_current_span(spans: Spans) -> None:
    """Log-line ids are those of the current span, nested or not, and None outside any span."""
    from opentelemetry import trace

    from crown_nexus.core.tracing import current_span_ids

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        ids = current_span_ids()
        ctx = outer.get_span_context()
        assert ids == (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
        with tracer.start_as_current_span("inner") as inner:
            assert current_span_ids() == (ids[0], format(inner.get_span_context().span_id, "016x"))
        assert current_span_ids() == ids
    assert current_span_ids() is None
