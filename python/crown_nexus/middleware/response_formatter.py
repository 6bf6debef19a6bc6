"""``ResponseFormatterMiddleware``: successful JSON bodies wrapped in the SPEC §3 envelope.

In the guide's order compression sits *inside* formatting, so a compressed body could never be
wrapped. The two cooperate through the ASGI scope instead: the formatter marks the request
(:data:`FORMATTER_SCOPE_KEY`); ``CompressionMiddleware`` then lets the formatter's candidate
responses (:func:`is_format_candidate`) through uncompressed and leaves its settings under
:data:`DEFERRED_COMPRESSION_KEY`; the formatter wraps the body and gzips the result itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.cache.etags import encoded_etag, weak_etag
from crown_nexus.core.exceptions import utc_timestamp
from crown_nexus.core.tracing import end_span, start_span, tracing_enabled
from crown_nexus.logging.context import _request_id
from crown_nexus.middleware._gzip import gzip_body
from crown_nexus.middleware._headers import add_vary, rewrite_etag

__all__ = [
    "CANDIDATE_SCOPE_KEY",
    "DEFERRED_COMPRESSION_KEY",
    "FORMATTER_SCOPE_KEY",
    "ResponseFormatterMiddleware",
    "is_format_candidate",
]

DEFAULT_EXCLUDE_PATHS = ("/metrics", "/openapi.json", "/docs", "/redoc")
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
#: scope key: this request's successful JSON responses will be formatted (value: max body size)
FORMATTER_SCOPE_KEY = "crown_nexus.response_formatter"
#: scope key: compression was deferred to the formatter (value: ``(minimum_size, compresslevel)``)
DEFERRED_COMPRESSION_KEY = "crown_nexus.deferred_compression"
#: scope key: the start message compression found :func:`is_format_candidate` (not judged again)
CANDIDATE_SCOPE_KEY = "crown_nexus.format_candidate"


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def is_format_candidate(message: Message, max_body_size: int = DEFAULT_MAX_BODY_SIZE) -> bool:
    """True when a ``http.response.start`` message may carry a body the formatter wraps.

    2xx (not 204/205), JSON content type, not already encoded, and a Content-Length (when
    given) no larger than ``max_body_size``.
    """
    status = message.get("status", 0)
    if not (200 <= status < 300) or status in (204, 205):
        return False
    content_type = b""
    length: bytes | None = None
    for key, value in message.get("headers", ()):
        lower = key.lower()
        if lower == b"content-type":
            content_type = value
        elif lower == b"content-encoding":
            return False
        elif lower == b"content-length":
            length = value
    if not _is_json(content_type.decode("latin-1")):
        return False
    try:
        return length is None or int(length) <= max_body_size
    except ValueError:
        return False


def _has_length(message: Message) -> bool:
    return any(k.lower() == b"content-length" for k, _ in message.get("headers", ()))


def _already_enveloped(body: object) -> bool:
    return (
        isinstance(body, dict)
        and isinstance(body.get("success"), bool)
        and ("data" in body or "message" in body)
    )


_UNPARSEABLE: Any = object()
#: ``{"success":true,"data":<body>,"meta":<meta>}`` around a body that is valid JSON
_ENVELOPE_HEAD = b'{"success":true,"data":'
_ENVELOPE_META = b',"meta":'


class ResponseFormatterMiddleware:
    """Wrap 2xx JSON bodies as ``{"success": true, "data": <body>, "meta": {request_id, timestamp}}``.

    Leaves alone: non-JSON responses, streamed bodies (no Content-Length and more than one body
    message), bodies over ``max_body_size``, error statuses, ``HEAD`` requests, bodies that
    already carry ``success``, and ``exclude_paths`` (prefixes). Content-Length is recomputed;
    a wrapped body's ETag is made weak (``W/"x"``: its bytes change with every response). When
    ``CompressionMiddleware`` deferred to it, the final body is gzipped here (``Vary:
    Accept-Encoding``, ETag ``W/"x-gzip"``).
    """

    def __init__(
        self,
        app: ASGIApp,
        exclude_paths: Iterable[str] = DEFAULT_EXCLUDE_PATHS,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self.app = app
        self.exclude_paths = tuple(exclude_paths)
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") == "HEAD"
            or (self.exclude_paths and scope.get("path", "").startswith(self.exclude_paths))
        ):
            await self.app(scope, receive, send)
            return
        scope[FORMATTER_SCOPE_KEY] = self.max_body_size
        start: Message | None = None
        passthrough = False
        chunks: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal start, passthrough
            kind = message["type"]
            if passthrough:
                await send(message)
                return
            if kind == "http.response.start":
                # compression right inside already judged this very message a candidate
                # (with this formatter's size limit) when it deferred its gzip to us
                if scope.get(CANDIDATE_SCOPE_KEY) is message or is_format_candidate(
                    message, self.max_body_size
                ):
                    message.setdefault("headers", [])
                    start = message
                else:
                    passthrough = True
                    await send(message)
                return
            if kind != "http.response.body" or start is None:
                passthrough = True
                if start is not None:
                    await send(start)
                await send(message)
                return
            more = message.get("more_body", False)
            if more and not chunks and not _has_length(start):
                # a streamed body (no Content-Length): never buffered, never wrapped
                passthrough = True
                await send(start)
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not more:
                await send_formatted(start, b"".join(chunks))

        async def send_formatted(start_message: Message, body: bytes) -> None:
            try:
                payload = orjson.loads(body) if body else _UNPARSEABLE
            except orjson.JSONDecodeError:
                payload = _UNPARSEABLE
            wrapped = payload is not _UNPARSEABLE and not _already_enveloped(payload)
            if wrapped:
                rid = _request_id.get() or scope.get("state", {}).get("request_id")
                # the body parsed as JSON, so it is spliced in as it is: no second encoding
                body = b"".join(
                    (
                        _ENVELOPE_HEAD,
                        body,
                        _ENVELOPE_META,
                        orjson.dumps({"request_id": rid, "timestamp": utc_timestamp()}),
                        b"}",
                    )
                )
            raw = [h for h in start_message["headers"] if h[0].lower() != b"content-length"]
            if wrapped:
                # the envelope's bytes change per response (timestamp, request id): the same
                # meaning, not the same bytes, so a strong validator would lie (RFC 9110 §8.8.1)
                rewrite_etag(raw, weak_etag)
            deferred = scope.get(DEFERRED_COMPRESSION_KEY)
            if deferred is not None:
                minimum_size, level = deferred
                add_vary(raw)
                if len(body) >= minimum_size:
                    sp = (
                        start_span("compression.gzip", tracer="crown_nexus.middleware")
                        if tracing_enabled()
                        else None
                    )
                    size = len(body)
                    body = gzip_body(body, level)  # one call: ISA-L, else zlib (_gzip.py)
                    if sp is not None:
                        end_span(sp, attributes={"crown_nexus.compression.body_bytes": size,
                                                 "crown_nexus.compression.gzip_bytes": len(body)})
                    raw.append((b"content-encoding", b"gzip"))
                    rewrite_etag(raw, encoded_etag)  # another representation: "x" -> "x-gzip"
            raw.append((b"content-length", str(len(body)).encode("ascii")))
            start_message["headers"] = raw
            await send(start_message)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_wrapper)
