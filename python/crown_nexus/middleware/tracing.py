"""``TracingMiddleware``: W3C Trace Context (``traceparent``) in and out, ids in the log context.

Pure ASGI, no OpenTelemetry dependency. A valid incoming ``traceparent``
(``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``, ids not all zero, version not ``ff``)
continues that trace; otherwise a new trace starts (flags ``01``). Each request gets a new span
id. ``trace_id``, ``span_id``, ``parent_span_id`` and ``service`` are bound to every log line of
the request and stored in ``request.state``; the response carries ``traceparent`` with this
span (and the incoming ``tracestate`` unchanged).

With an OpenTelemetry tracer provider configured (:mod:`crown_nexus.core.tracing`) the ids are
those of the real server span: FastAPI's own HTTP server span when it made one (FastAPI emits
it, continuing ``traceparent``, around the whole middleware stack; this middleware never
duplicates it), otherwise a ``SERVER`` span started here with the stable HTTP semantic
conventions (``http.request.method``, ``url.path``, ``url.scheme``, ``server.address``,
``http.route``, ``http.response.status_code``), continuing the incoming ``traceparent``.
Without a provider nothing of OpenTelemetry runs (one flag check).
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate
from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import Message

from crown_nexus.core.tracing import current_span_ids, get_tracer, tracing_enabled
from crown_nexus.logging.context import bind_log_context, reset_log_context
from crown_nexus.middleware._send import RawHeaders, StartHook, add_start_hook

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


#: random ids handed out per request: 48 hex digits (a trace id and a span id) each, drawn
#: from ``os.urandom`` in blocks (one system call per :data:`_POOL_SIZE` requests); emptied in a
#: forked child so workers never share ids
_POOL_SIZE = 256
_id_pool: list[str] = []
_DROP = frozenset((b"traceparent", b"tracestate"))
#: ``00-<trace id>-<parent id>-<flags>``: the common incoming form, matched in one step
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _random_ids() -> str:
    """48 random hex digits: ``[:32]`` a trace id, ``[32:]`` a span id."""
    try:
        return _id_pool.pop()
    except IndexError:
        raw = os.urandom(24 * _POOL_SIZE).hex()
        _id_pool.extend([raw[i : i + 48] for i in range(0, len(raw), 48)])
        return _id_pool.pop()


os.register_at_fork(after_in_child=_id_pool.clear)


def _parse_incoming(value: bytes) -> tuple[str, str, str] | None:
    """:func:`parse_traceparent` of a request header, the version-00 form matched in one step."""
    match = _TRACEPARENT_00.fullmatch(value.decode("latin-1"))
    if match is None:
        return parse_traceparent(value)
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, flags


def _trace_hook(out_headers: list[tuple[bytes, bytes]], on_start: Any = None) -> StartHook:
    """The response-start hook: any ``traceparent``/``tracestate`` already there replaced by
    ``out_headers``; then ``on_start(message)`` (the server span's status) when given."""

    def hook(message: Message, headers: RawHeaders, names: set[bytes]) -> None:
        if b"traceparent" in names or b"tracestate" in names:
            headers[:] = [(k, v) for k, v in headers if k.lower() not in _DROP]
            names.difference_update(_DROP)
        headers.extend(out_headers)
        for name, _ in out_headers:
            names.add(name)
        if on_start is not None:
            on_start(message)

    return hook


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
        parsed = _parse_incoming(incoming) if incoming is not None else None
        if tracing_enabled():
            await self._traced(scope, receive, send, parsed, incoming, tracestate)
            return
        # no provider: the request runs here (one coroutine less than through ``_run``)
        ids = _random_ids()
        span_id = ids[32:]
        if parsed is None:
            trace_id, parent_id, flags = ids[:32], None, "01"
        else:
            trace_id, parent_id, flags = parsed
        state = scope.setdefault("state", {})
        if isinstance(state, dict):
            state["trace_id"] = trace_id
            state["span_id"] = span_id
        out_headers = [(b"traceparent", f"00-{trace_id}-{span_id}-{flags}".encode())]
        if tracestate is not None and parsed is not None:
            out_headers.append((b"tracestate", tracestate))
        token = bind_log_context(
            trace_id=trace_id, span_id=span_id, parent_span_id=parent_id, service=self.service_name
        )
        try:
            await self.app(scope, receive, add_start_hook(send, _trace_hook(out_headers)))
        finally:
            reset_log_context(token)

    async def _run(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        flags: str,
        parsed: tuple[str, str, str] | None,
        tracestate: bytes | None,
        on_start: Any = None,
    ) -> None:
        """The request with its ids in ``request.state``, bound to the log context and sent in
        ``traceparent`` (and the incoming ``tracestate`` when the trace was continued)."""
        state = scope.setdefault("state", {})
        if isinstance(state, dict):
            state["trace_id"] = trace_id
            state["span_id"] = span_id
        out_headers = [(b"traceparent", f"00-{trace_id}-{span_id}-{flags}".encode())]
        if tracestate is not None and parsed is not None:
            out_headers.append((b"tracestate", tracestate))

        token = bind_log_context(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent_id,
            service=self.service_name,
        )
        try:
            await self.app(scope, receive, add_start_hook(send, _trace_hook(out_headers, on_start)))
        finally:
            reset_log_context(token)

    async def _traced(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        parsed: tuple[str, str, str] | None,
        incoming: bytes | None,
        tracestate: bytes | None,
    ) -> None:
        """The request with a tracer provider: ids of the current server span (FastAPI's), or
        of a ``SERVER`` span started here when there is none."""
        parent_id = parsed[1] if parsed is not None else None
        current = otel_trace.get_current_span()
        ctx = current.get_span_context()
        if ctx.is_valid:  # FastAPI's server span: use its ids, never a second span
            # formatted through current_span_ids: the request's log lines then reuse them
            trace_id, span_id = current_span_ids() or (
                format(ctx.trace_id, "032x"),
                format(ctx.span_id, "016x"),
            )
            await self._run(
                scope,
                receive,
                send,
                trace_id,
                span_id,
                parent_id,
                format(ctx.trace_flags, "02x"),
                parsed,
                tracestate,
            )
            return
        parent = None
        if incoming is not None:
            carrier = {"traceparent": incoming.decode("latin-1")}
            if tracestate is not None:
                carrier["tracestate"] = tracestate.decode("latin-1")
            parent = propagate.extract(carrier)
        server_span = _start_server_span(scope, parent)
        ctx = server_span.get_span_context()

        def on_start(message: dict[str, Any]) -> None:
            status = int(message["status"])
            server_span.set_attribute("http.response.status_code", status)
            if status >= 500:
                server_span.set_status(StatusCode.ERROR)
                server_span.set_attribute("error.type", str(status))

        try:
            with otel_trace.use_span(server_span, end_on_exit=False):
                await self._run(
                    scope,
                    receive,
                    send,
                    format(ctx.trace_id, "032x"),
                    format(ctx.span_id, "016x"),
                    parent_id,
                    format(ctx.trace_flags, "02x"),
                    parsed,
                    tracestate,
                    on_start,
                )
        finally:
            route = getattr(scope.get("route"), "path", None)
            if isinstance(route, str):
                server_span.set_attribute("http.route", route)
                server_span.update_name(f"{scope.get('method', 'HTTP')} {route}")
            server_span.end()


def _start_server_span(scope: dict[str, Any], parent: Any) -> Any:
    """A ``SERVER`` span for ``scope`` (stable HTTP semantic conventions), child of ``parent``."""
    method = str(scope.get("method") or "HTTP") if scope["type"] == "http" else "WS"
    attributes: dict[str, Any] = {
        "url.scheme": scope.get("scheme", "http"),
        "url.path": scope.get("path", ""),
    }
    if scope["type"] == "http":
        attributes["http.request.method"] = method
    if scope.get("http_version"):
        attributes["network.protocol.version"] = scope["http_version"]
    server = scope.get("server")
    if server:
        attributes["server.address"] = server[0]
        if server[1] is not None:
            attributes["server.port"] = server[1]
    for name, value in scope.get("headers") or ():
        if name == b"host":
            host, port = _host_port(value)
            if host:
                attributes["server.address"] = host
                if port is not None:
                    attributes["server.port"] = port
            break
    return get_tracer("crown_nexus.http").start_span(
        method, context=parent, kind=SpanKind.SERVER, attributes=attributes
    )


#: ``Host`` header → ``(host, port)``, bounded (the header is the client's: cleared when full)
_HOSTS: dict[bytes, tuple[str | None, int | None]] = {}
_HOSTS_MAX = 256


def _host_port(value: bytes) -> tuple[str | None, int | None]:
    """The host and port of a ``Host`` header as ``urlsplit`` reads them (``(None, None)`` when
    malformed: a bad Host never breaks the request)."""
    found = _HOSTS.get(value)
    if found is None:
        try:
            authority = urlsplit("//" + value.decode("latin-1"))
            found = (authority.hostname, authority.port)
        except ValueError:
            found = (None, None)
        if len(_HOSTS) >= _HOSTS_MAX:
            _HOSTS.clear()
        _HOSTS[value] = found
    return found
