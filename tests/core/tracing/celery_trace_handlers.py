"""Handlers a traced test Celery worker imports (CROWN_NEXUS_EVENT_HANDLER_MODULES).

The worker's spans cannot reach the test's in-memory exporter, so this module gives the worker
an SDK provider whose exporter appends every finished span to ``spans.jsonl``, and the handler
writes the trace it resumed to ``handled.jsonl`` (both in ``CROWN_NEXUS_TEST_EVENT_DIR``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from crown_nexus.core.events import get_event_service
from crown_nexus.core.tracing import current_span_ids


def _append(name: str, record: dict[str, Any]) -> None:
    path = Path(os.environ["CROWN_NEXUS_TEST_EVENT_DIR"]) / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, orjson.dumps(record) + b"\n")
    finally:
        os.close(fd)


class JsonLinesExporter(SpanExporter):
    """Appends each finished span (name, ids, kind, scope) as one JSON line."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            _append("spans.jsonl", {
                "name": span.name,
                "trace_id": format(span.context.trace_id, "032x"),
                "span_id": format(span.context.span_id, "016x"),
                "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                "kind": span.kind.name,
                "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
                "pid": os.getpid(),
            })
        return SpanExportResult.SUCCESS


_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter()))
trace.set_tracer_provider(_provider)

event_service = get_event_service()


@event_service.event_handler("order.created")
async def order_created(event: dict[str, Any]) -> None:
    """Record the trace this handler runs in."""
    ids = current_span_ids()
    _append("handled.jsonl", {
        "event_id": event["id"],
        "name": event["name"],
        "trace_id": ids[0] if ids else None,
        "span_id": ids[1] if ids else None,
        "pid": os.getpid(),
    })
