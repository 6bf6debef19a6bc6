"""HTTP CLIENT spans for outgoing ``httpx`` requests: :class:`TracingTransport`.

Wrap the transport of an ``httpx.Client`` or ``httpx.AsyncClient`` (the same class serves
both)::

    client = httpx.AsyncClient(transport=TracingTransport())            # default transport
    client = httpx.Client(transport=TracingTransport(httpx.HTTPTransport(retries=2)))

Every request sent through it, redirects included (one span per hop), gets a span of kind
CLIENT under the tracer ``crown_nexus.http_client``, child of the current span, following the
OpenTelemetry HTTP client semantic conventions: name = the method (``HTTP`` for a non-standard
one), attributes ``http.request.method`` (``_OTHER`` plus ``http.request.method_original`` for
a non-standard one), ``url.full`` (credentials and the values of secret query parameters
replaced by ``REDACTED``), ``server.address``, ``server.port``, then
``http.response.status_code`` and, when the server says, ``network.protocol.version``. A status
of 400 or more marks the span failed (``error.type`` = the status code: the client-span rule
of the conventions, which leave only 4xx *server* spans unset); an exception from the
transport is recorded on it, marks it failed (``error.type`` = the exception's class) and is
re-raised. The span ends when the response headers arrive (the body is read afterwards).

The request's ``traceparent``/``tracestate`` headers are replaced by the CLIENT span's context,
so the downstream server's span is a child of the CLIENT span.

Without a tracer provider no span is made: the request gets the *current* context (an
incoming ``traceparent`` passed through by the OpenTelemetry API's non-recording spans) when
there is a valid one, else nothing; the cost is one flag check and a context-variable read.
When crown-nexus tracing is switched off (:func:`~crown_nexus.core.tracing.set_tracing_enabled`
with ``False``) the request is passed on untouched.

The transport is built by the application, which already depends on ``httpx``: this module
imports it, :mod:`crown_nexus.core.tracing` does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import httpx
import opentelemetry.trace as _otel_trace
from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind, StatusCode

from crown_nexus.core import tracing as _tracing
from crown_nexus.core.exceptions import ConfigurationException

__all__ = [
    "HTTP_CLIENT_TRACER",
    "REDACTED_QUERY_PARAMS",
    "TracingTransport",
    "client_span_attributes",
    "redacted_url",
]

#: the tracer name of the CLIENT spans
HTTP_CLIENT_TRACER = "crown_nexus.http_client"
#: query parameters whose values ``url.full`` never shows (compared case-insensitively): the
#: semantic conventions' default list (signed URLs) and the usual names of tokens and keys
REDACTED_QUERY_PARAMS: frozenset[str] = frozenset({
    "awsaccesskeyid", "signature", "sig", "x-goog-signature", "x-amz-signature",
    "x-amz-credential", "x-amz-security-token", "access_token", "refresh_token", "id_token",
    "token", "api_key", "apikey", "key", "client_secret", "secret", "password", "passwd",
    "code",
})
_REDACTED = "REDACTED"
_KNOWN_METHODS = frozenset({
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY",
})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def redacted_url(url: str, secret_params: frozenset[str] = REDACTED_QUERY_PARAMS) -> str:
    """``url`` with its credentials (``user:password@``) and the values of the query parameters
    named in ``secret_params`` (lower-case) replaced by ``REDACTED``; unchanged otherwise."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    changed = False
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = (
            f"{_REDACTED}:{_REDACTED}@{host}" if ":" in userinfo else f"{_REDACTED}@{host}"
        )
        changed = True
    if query and secret_params:
        pieces = query.split("&")
        for i, piece in enumerate(pieces):
            name, sep, _value = piece.partition("=")
            if sep and unquote_plus(name).lower() in secret_params:
                pieces[i] = f"{name}={_REDACTED}"
                changed = True
        query = "&".join(pieces)
    if not changed:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def client_span_attributes(
    request: httpx.Request, secret_params: frozenset[str] = REDACTED_QUERY_PARAMS
) -> tuple[str, dict[str, Any]]:
    """The CLIENT span name and start attributes of ``request`` (HTTP semantic conventions)."""
    method = request.method
    url = request.url
    attributes: dict[str, Any] = {}
    if method in _KNOWN_METHODS:
        name = method
        attributes["http.request.method"] = method
    else:
        name = "HTTP"
        attributes["http.request.method"] = "_OTHER"
        attributes["http.request.method_original"] = method
    attributes["url.full"] = redacted_url(str(url), secret_params)
    if url.host:
        attributes["server.address"] = url.host
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    if port is not None:
        attributes["server.port"] = port
    return name, attributes


def _clear_context_headers(headers: httpx.Headers) -> None:
    for key in _tracing.TRACE_CONTEXT_KEYS:
        if key in headers:
            del headers[key]


def _pass_through(request: httpx.Request) -> None:
    """No provider: carry the current (non-recording) context, if any, to the request."""
    if _tracing._state is False:
        return  # crown-nexus tracing switched off: the request is not touched
    if _otel_trace.get_current_span().get_span_context().is_valid:
        _clear_context_headers(request.headers)
        propagate.inject(request.headers)


class TracingTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An ``httpx`` transport making a CLIENT span around every request it sends (see the
    module docstring), for ``httpx.Client`` and ``httpx.AsyncClient`` alike.

    ``transport`` is the transport that sends (sync for a ``Client``, async for an
    ``AsyncClient``; default: ``httpx.HTTPTransport()`` / ``httpx.AsyncHTTPTransport()``,
    created on first use). ``secret_query_params`` replaces the names of the query parameters
    whose values ``url.full`` hides (default :data:`REDACTED_QUERY_PARAMS`). Closing the
    transport (or the client) closes the wrapped one.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        *,
        secret_query_params: Iterable[str] | None = None,
    ) -> None:
        self._transport = transport
        self._secret_params = (
            REDACTED_QUERY_PARAMS
            if secret_query_params is None
            else frozenset(p.lower() for p in secret_query_params)
        )

    # ------------------------------------------------------------------ the wrapped transport
    def _sync(self) -> httpx.BaseTransport:
        inner = self._transport
        if inner is None:
            inner = self._transport = httpx.HTTPTransport()
        if not isinstance(inner, httpx.BaseTransport):
            raise ConfigurationException(
                message="TracingTransport wraps an async transport: use it with httpx.AsyncClient",
                details={"transport": type(inner).__name__},
            )
        return inner

    def _async(self) -> httpx.AsyncBaseTransport:
        inner = self._transport
        if inner is None:
            inner = self._transport = httpx.AsyncHTTPTransport()
        if not isinstance(inner, httpx.AsyncBaseTransport):
            raise ConfigurationException(
                message="TracingTransport wraps a sync transport: use it with httpx.Client",
                details={"transport": type(inner).__name__},
            )
        return inner

    # ------------------------------------------------------------------ the span
    def _start(self, request: httpx.Request) -> Span | None:
        """The CLIENT span of ``request`` with its context injected, or ``None`` when tracing
        is off (then the current context is passed through)."""
        state = _tracing._state
        if state is False or (state is None and not _tracing.tracing_enabled()):
            _pass_through(request)
            return None
        name, attributes = client_span_attributes(request, self._secret_params)
        current = _tracing.get_tracer(HTTP_CLIENT_TRACER).start_span(
            name, kind=SpanKind.CLIENT, attributes=attributes
        )
        _clear_context_headers(request.headers)
        propagate.inject(request.headers, context=_otel_trace.set_span_in_context(current))
        return current

    @staticmethod
    def _finish(current: Span, response: httpx.Response) -> None:
        status = response.status_code
        if current.is_recording():
            current.set_attribute("http.response.status_code", status)
            version = response.extensions.get("http_version")
            if isinstance(version, bytes) and version.startswith(b"HTTP/"):
                current.set_attribute("network.protocol.version", version[5:].decode("ascii"))
            if status >= 400:
                current.set_attribute("error.type", str(status))
                current.set_status(StatusCode.ERROR)
        current.end()

    @staticmethod
    def _failed(current: Span, exc: BaseException) -> None:
        if isinstance(exc, Exception):
            current.record_exception(exc)
            current.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300])
        current.set_attribute("error.type", type(exc).__qualname__)
        current.end()

    # ------------------------------------------------------------------ httpx.Client
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the wrapped sync transport inside a CLIENT span."""
        inner = self._sync()
        current = self._start(request)
        if current is None:
            return inner.handle_request(request)
        try:
            response = inner.handle_request(request)
        except BaseException as exc:
            self._failed(current, exc)
            raise
        self._finish(current, response)
        return response

    def close(self) -> None:
        """Close the wrapped sync transport (when there is one)."""
        inner = self._transport
        if isinstance(inner, httpx.BaseTransport):
            inner.close()

    # ------------------------------------------------------------------ httpx.AsyncClient
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the wrapped async transport inside a CLIENT span."""
        inner = self._async()
        current = self._start(request)
        if current is None:
            return await inner.handle_async_request(request)
        try:
            response = await inner.handle_async_request(request)
        except BaseException as exc:
            self._failed(current, exc)
            raise
        self._finish(current, response)
        return response

    async def aclose(self) -> None:
        """Close the wrapped async transport (when there is one)."""
        inner = self._transport
        if isinstance(inner, httpx.AsyncBaseTransport):
            await inner.aclose()
