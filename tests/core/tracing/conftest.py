"""One SDK tracer provider for the session (OpenTelemetry sets the global provider once), its
spans in an ``InMemorySpanExporter`` cleared around every test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from crown_nexus.core.tracing import set_tracing_enabled
from crown_nexus.core.tracing.sdk import configure_tracing
from crown_nexus.settings import Settings


class Spans:
    """The finished spans of a test, with lookups."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, (name, [s.name for s in self.all()])
        return found[0]

    def starting(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name.startswith(prefix)]

    def clear(self) -> None:
        self.exporter.clear()


def trace_id_of(span: Any) -> str:
    return format(span.context.trace_id, "032x")


def span_id_of(span: Any) -> str:
    return format(span.context.span_id, "016x")


def traceparent_of(span: Any) -> str:
    """The W3C traceparent naming ``span`` (its own flags: sampled, and random with the SDK)."""
    ctx = span.context
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


@pytest.fixture(scope="session")
def _exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # another test file of the session set one
        current.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        set_tracing_enabled(None)
        provider = configure_tracing(Settings(ENVIRONMENT="test"), exporter=exporter, force=True)
        assert isinstance(provider, TracerProvider)
    return exporter


@pytest.fixture
def spans(_exporter: InMemorySpanExporter) -> Iterator[Spans]:
    """The spans finished during this test (tracing on, SDK provider, in-memory exporter).

    Afterwards crown-nexus tracing is switched off again, so the tests that follow in the same
    process see the library as without a provider (the global provider cannot be unset)."""
    set_tracing_enabled(None)
    _exporter.clear()
    yield Spans(_exporter)
    _exporter.clear()
    set_tracing_enabled(False)
