"""OpenTelemetry tracing for crown-nexus: spans where the library does I/O or costly work.

Built on the OpenTelemetry **API** only (``opentelemetry-api``, a core dependency, a no-op
without an SDK). Spans are exported once a tracer provider is configured: by
:func:`crown_nexus.core.tracing.sdk.configure_tracing` (``setup_app`` calls it; the ``otel``
extra installs the SDK and the OTLP exporter), or by the application itself
(``trace.set_tracer_provider``). FastAPI (>= 0.13x "native telemetry") then emits the HTTP
server span and its endpoint spans; crown-nexus adds child spans under tracer names
``crown_nexus.*`` (cache, rate limiting, pagination, events, security, middleware).

Without a configured provider every helper here costs one global read and a comparison
(:func:`tracing_enabled`): nothing is created, nothing is propagated.

Trace context travels in W3C ``traceparent``/``tracestate`` form: :func:`inject_context`
writes the current one into a carrier (an event's ``context``, outgoing HTTP headers),
:func:`resume_span` starts a span continuing a carrier's context (event handlers, the Celery
worker, the outbox relay). Outgoing ``httpx`` calls get a CLIENT span from
:class:`crown_nexus.core.tracing.http_client.TracingTransport` (its own module: it imports
``httpx``, which only the applications that use it need, and this module; the event hooks
:func:`httpx_event_hooks` only carry the context, they make no span).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import opentelemetry.trace as _otel_trace
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    StatusCode,
    Tracer,
)

__all__ = [
    "TRACER_NAME",
    "TRACE_CONTEXT_KEYS",
    "Span",
    "SpanKind",
    "current_span_ids",
    "end_span",
    "extract_context",
    "get_tracer",
    "httpx_event_hooks",
    "inject_context",
    "inject_httpx_headers",
    "provider_configured",
    "record_error",
    "resume_span",
    "set_tracing_enabled",
    "span",
    "start_span",
    "tracing_enabled",
]

#: the root tracer name; areas use ``crown_nexus.<area>``
TRACER_NAME = "crown_nexus"
#: the keys :func:`inject_context` writes (W3C Trace Context)
TRACE_CONTEXT_KEYS = ("traceparent", "tracestate")

_DISABLED_PROVIDERS = (ProxyTracerProvider, NoOpTracerProvider)
_ENV_PROVIDER = "OTEL_PYTHON_TRACER_PROVIDER"
#: whether that variable was set (read at import and by :func:`set_tracing_enabled`: an
#: ``os.environ`` lookup costs more than the rest of the check). Not a Settings field: it is the
#: OpenTelemetry API's own variable, which the API reads from ``os.environ`` itself; this only
#: mirrors what the API will see (a Settings value could differ, e.g. from a ``.env`` file).
_env_provider = _ENV_PROVIDER in os.environ
#: ``None`` until a provider is set; then fixed (OpenTelemetry sets the global provider once)
_state: bool | None = None
_tracers: dict[str, Tracer] = {}
_NOOP: AbstractContextManager[None] = nullcontext()


def _attrs(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Span attributes as the SDK takes them: a plain dict is passed as is (the SDK copies
    it), any other mapping is copied into one; empty → ``None``."""
    if not attributes:
        return None
    return attributes if type(attributes) is dict else dict(attributes)


def provider_configured() -> bool:
    """Whether a real global tracer provider is set (not the API's proxy or no-op one)."""
    if getattr(_otel_trace, "_TRACER_PROVIDER", None) is None and not _env_provider:
        return False
    try:
        provider = _otel_trace.get_tracer_provider()
    except Exception:  # a bad OTEL_PYTHON_TRACER_PROVIDER: the API raises on every call
        return False
    return not isinstance(provider, _DISABLED_PROVIDERS)


def _decide() -> bool:
    global _state
    if getattr(_otel_trace, "_TRACER_PROVIDER", None) is None and not _env_provider:
        return False  # not configured yet (may be later): decide again next time
    enabled = provider_configured()
    _state = enabled
    if enabled:
        from crown_nexus.logging import context as log_context

        log_context.set_span_ids_source(current_span_ids)
    return enabled


def tracing_enabled() -> bool:
    """True when a real tracer provider is configured (spans are recorded and propagated).

    Near-free: once the global provider is set the answer is fixed; before that it is one
    attribute read (``OTEL_PYTHON_TRACER_PROVIDER`` is honoured when set before import).
    """
    state = _state
    if state is not None:
        return state
    return _decide()


def set_tracing_enabled(enabled: bool | None) -> None:
    """``False``: crown-nexus makes no span, propagates nothing and stops adding span ids to
    log lines, whatever provider is configured (tests use it to leave tracing off for the
    tests that follow theirs). ``None`` or ``True``: follow the global provider again (tracing
    is on when a real one is configured)."""
    global _env_provider, _state
    _env_provider = _ENV_PROVIDER in os.environ
    if enabled is False:
        _state = False
        from crown_nexus.logging import context as log_context

        log_context.set_span_ids_source(None)
    else:
        _state = None  # decided again on the next use


def get_tracer(name: str = TRACER_NAME) -> Tracer:
    """The tracer ``name`` (``crown_nexus`` or ``crown_nexus.<area>``) of the global provider."""
    tracer = _tracers.get(name)
    if tracer is None:
        from crown_nexus import __version__

        tracer = _tracers[name] = _otel_trace.get_tracer(name, __version__)
    return tracer


def span(
    name: str,
    *,
    tracer: str = TRACER_NAME,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> AbstractContextManager[Span | None]:
    """A context manager running its block inside a new span ``name`` (child of the current one).

    Yields the span, or ``None`` when tracing is off (then it is a shared ``nullcontext``: no
    allocation). An exception leaving the block is recorded on the span, which is marked as
    failed, and re-raised.
    """
    if _state is False or (_state is None and not _decide()):
        return _NOOP
    return get_tracer(tracer).start_as_current_span(
        name, kind=kind, attributes=_attrs(attributes)
    )


def start_span(
    name: str,
    *,
    tracer: str = TRACER_NAME,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Span | None:
    """A started span ``name``, child of the current one but NOT made current (for leaf work
    such as one cache or Redis call: nothing runs under it); ``None`` when tracing is off.
    End it with :func:`end_span`."""
    if _state is False or (_state is None and not _decide()):
        return None
    return get_tracer(tracer).start_span(
        name, kind=kind, attributes=_attrs(attributes)
    )


def end_span(
    current: Span | None,
    exc: BaseException | None = None,
    *,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """End a span from :func:`start_span` (``None``: nothing) after adding ``attributes``;
    ``exc`` is recorded on it and marks it as failed."""
    if current is None:
        return
    if attributes:
        current.set_attributes(_attrs(attributes) or {})
    if exc is not None:
        current.record_exception(exc)
        record_error(current, exc)
    current.end()


#: the last span context :func:`current_span_ids` formatted, and its ids (one tuple: swapped
#: atomically): a request's log lines share their span, so its ids are formatted once
_last_ids: tuple[Any, tuple[str, str]] = (None, ("", ""))


def current_span_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` (lower-case hex) of the current recording span, else ``None``."""
    global _last_ids
    ctx = _otel_trace.get_current_span().get_span_context()
    last = _last_ids
    if ctx is last[0]:
        return last[1]
    if not ctx.is_valid:
        return None
    ids = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
    _last_ids = (ctx, ids)
    return ids


def inject_context(carrier: MutableMapping[str, Any] | None = None) -> MutableMapping[str, Any]:
    """Write the current trace context (``traceparent``, ``tracestate``) into ``carrier`` and
    return it (a new dict when ``None``). Does nothing when tracing is off or no span is current.
    """
    if carrier is None:
        carrier = {}
    if tracing_enabled() and _otel_trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, Any] | None) -> otel_context.Context | None:
    """The OpenTelemetry context carried by ``carrier`` (its ``traceparent``), or ``None`` when
    it carries none (or tracing is off). A malformed ``traceparent`` is ignored."""
    if not carrier or not tracing_enabled():
        return None
    value = carrier.get("traceparent")
    if not isinstance(value, str):
        return None
    headers = {"traceparent": value}
    state = carrier.get("tracestate")
    if isinstance(state, str):
        headers["tracestate"] = state
    ctx = propagate.extract(headers)
    if not _otel_trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


@contextmanager
def _resumed(
    name: str,
    parent: otel_context.Context | None,
    tracer: str,
    kind: SpanKind,
    attributes: Mapping[str, Any] | None,
) -> Iterator[Span]:
    with get_tracer(tracer).start_as_current_span(
        name, context=parent, kind=kind, attributes=_attrs(attributes)
    ) as current:
        yield current


def resume_span(
    name: str,
    carrier: Mapping[str, Any] | None,
    *,
    tracer: str = TRACER_NAME,
    kind: SpanKind = SpanKind.CONSUMER,
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Span | None]:
    """Like :func:`span`, continuing the trace ``carrier`` carries (an event's ``context``).

    When the current span already belongs to that trace (a handler run in the publishing
    process, or under the worker's task span) the new span is its child; otherwise it is a
    child of the carried span. Without a carried context it is a child of the current span.
    """
    if _state is False or (_state is None and not _decide()):
        return _NOOP
    parent = extract_context(carrier)
    if parent is not None:
        carried = _otel_trace.get_current_span(parent).get_span_context().trace_id
        if _otel_trace.get_current_span().get_span_context().trace_id == carried:
            parent = None  # already inside this trace: nest under the current span
    return _resumed(name, parent, tracer, kind, attributes)


def record_error(current: Span | None, exc: BaseException) -> None:
    """Mark ``current`` (a span from :func:`span`, or ``None``) as failed with ``exc``."""
    if current is not None:
        current.set_status(StatusCode.ERROR, type(exc).__name__)
        current.set_attribute("error.type", type(exc).__qualname__)


def inject_httpx_headers(request: Any) -> None:
    """Add the current trace context to an outgoing ``httpx.Request`` (a sync event hook).

    ``httpx.Client(event_hooks={"request": [inject_httpx_headers]})``; for ``AsyncClient`` use
    :func:`httpx_event_hooks`. Existing ``traceparent``/``tracestate`` headers are replaced.
    This only carries the context (the downstream span is a child of the current one); for a
    CLIENT span per request use :class:`crown_nexus.core.tracing.http_client.TracingTransport`.
    """
    if not tracing_enabled():
        return
    carrier = inject_context({})
    for key, value in carrier.items():
        request.headers[key] = value


async def _inject_httpx_headers_async(request: Any) -> None:
    inject_httpx_headers(request)


def httpx_event_hooks(*, asynchronous: bool = True) -> dict[str, list[Any]]:
    """``event_hooks`` for ``httpx.AsyncClient`` (or ``httpx.Client`` with
    ``asynchronous=False``) that carry the current trace to every request."""
    hook = _inject_httpx_headers_async if asynchronous else inject_httpx_headers
    return {"request": [hook]}
