"""``TracingMiddleware``: W3C Trace Context (``traceparent``) in and out, ids in the log context.

Pure ASGI, no OpenTelemetry dependency. A valid incoming ``traceparent``
(``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``, ids not all zero, version not ``ff``)
continues that trace; otherwise a new trace starts (flags ``01``). Each request gets a new span
id. ``trace_id``, ``span_id``, ``parent_span_id`` and ``service`` are bound to every log line of
the request and stored in ``request.state``; the response carries ``traceparent`` with this
span (and the incoming ``tracestate`` unchanged).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from crown_nexus.logging.context import bind_log_context, reset_log_context

__all__ = ["TracingMiddleware", "format_traceparent", "parse_traceparent"]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse_traceparent(value: str | bytes | None) -> tuple[str, str, str] | None:
    """Return ``(trace_id, parent_span_id, flags)`` of a valid W3C ``traceparent``, else None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, flags


def format_traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    """Return the version-00 ``traceparent`` header value for these ids."""
    return f"00-{trace_id}-{span_id}-{flags}"


class TracingMiddleware:
    """Propagate W3C trace context (see the module docstring)."""

    def __init__(self, app: Any, service_name: str = "api") -> None:
        self.app = app
        self.service_name = service_name

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the request inside its span; add ``traceparent`` to the response."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = tracestate = None
        for name, value in scope.get("headers") or ():
            if name == b"traceparent":
                incoming = value
            elif name == b"tracestate":
                tracestate = value
        parsed = parse_traceparent(incoming)
        if parsed is None:
            trace_id, parent_id, flags = secrets.token_hex(16), None, "01"
        else:
            trace_id, parent_id, flags = parsed
        span_id = secrets.token_hex(8)
        state = scope.setdefault("state", {})
        if isinstance(state, dict):
            state["trace_id"] = trace_id
            state["span_id"] = span_id
        out_headers = [(b"traceparent", format_traceparent(trace_id, span_id, flags).encode())]
        if tracestate is not None and parsed is not None:
            out_headers.append((b"tracestate", tracestate))

        async def send_with_trace(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in (message.get("headers") or ())
                    if k.lower() not in (b"traceparent", b"tracestate")
                ]
                headers.extend(out_headers)
                message["headers"] = headers
            await send(message)

        token = bind_log_context(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent_id,
            service=self.service_name,
        )
        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            reset_log_context(token)
