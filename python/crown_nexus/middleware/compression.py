"""``CompressionMiddleware``: gzip for bodies of at least ``minimum_size`` bytes (pure ASGI).

Representations (RFC 9110 §8.8.3.3, §12.5.5): a body this middleware gzips is a different
representation from the identity body, so its ETag gets the coding appended inside the quotes
(``"abc"`` -> ``"abc-gzip"``, as Apache's ``DeflateAlterETag AddSuffix``;
:func:`crown_nexus.core.cache.etags.encoded_etag`), and every response that passes through
(compressed or not, gzip client or not) carries ``Vary: Accept-Encoding``, so shared caches keep
the two apart. ``If-None-Match`` evaluation strips the suffix again
(:func:`crown_nexus.core.cache.etags.if_none_match`), so gzip clients get their 304s.
A body the application encoded itself is left as it is, ETag included.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.middleware.gzip import (
    DEFAULT_EXCLUDED_CONTENT_TYPES,
    GZipMiddleware,
    GZipResponder,
    IdentityResponder,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.cache.etags import encoded_etag
from crown_nexus.core.tracing import end_span, start_span, tracing_enabled
from crown_nexus.middleware._headers import add_vary, has_header, rewrite_etag
from crown_nexus.middleware.response_formatter import (
    CANDIDATE_SCOPE_KEY,
    DEFERRED_COMPRESSION_KEY,
    FORMATTER_SCOPE_KEY,
    is_format_candidate,
)

__all__ = ["DEFAULT_COMPRESSLEVEL", "CompressionMiddleware"]

#: zlib level 3 (deflate_fast): on a 3 KB JSON page about 30% less CPU than level 6 for about 6%
#: more bytes (515 -> 546); pass ``compresslevel`` for a different trade
DEFAULT_COMPRESSLEVEL = 3

_APP_ENCODED_KEY = "crown_nexus.compression_app_encoded"


def _vary_send(send: Send) -> Send:
    """``send`` that adds ``Vary: Accept-Encoding`` to the response start."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            raw = list(message.get("headers", ()))
            add_vary(raw)
            message["headers"] = raw
        await send(message)

    return wrapped


def _representation_send(scope: Scope, send: Send) -> Send:
    """``send`` that adds Vary and gives a body gzipped *here* its own ETag (``-gzip``)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            raw = list(message.get("headers", ()))
            add_vary(raw)
            if not scope.get(_APP_ENCODED_KEY) and has_header(message, b"content-encoding"):
                rewrite_etag(raw, encoded_etag)
            message["headers"] = raw
        await send(message)

    return wrapped


async def _traced_body(gzip_send: Send, message: Message) -> None:
    """Hand a body chunk to the gzip layer inside a ``compression.gzip`` span (the chunk is
    compressed, or buffered until ``minimum_size`` is known, during this call)."""
    sp = start_span(
        "compression.gzip",
        tracer="crown_nexus.middleware",
        attributes={"crown_nexus.compression.body_bytes": len(message.get("body", b""))},
    )
    try:
        await gzip_send(message)
    except BaseException as exc:
        end_span(sp, exc)
        raise
    end_span(sp)


def _accepts_gzip(scope: Scope) -> bool:
    for key, value in scope.get("headers", ()):
        if key == b"accept-encoding":
            return b"gzip" in value.lower()
    return False


class CompressionMiddleware:
    """Gzip responses when the client accepts it and the body is at least ``minimum_size`` bytes.

    Built on Starlette's pure-ASGI ``GZipMiddleware`` (streams compressed chunk by chunk, skips
    already-encoded bodies, partial responses and media that do not compress); adds
    ``exclude_paths`` (prefixes never compressed) and a faster default level
    (:data:`DEFAULT_COMPRESSLEVEL`). Under
    ``ResponseFormatterMiddleware`` (the guide's order), responses the formatter will wrap are
    passed up uncompressed and the formatter compresses them after wrapping.
    """

    def __init__(
        self,
        app: ASGIApp,
        minimum_size: int = 1000,
        compresslevel: int = DEFAULT_COMPRESSLEVEL,
        exclude_paths: Iterable[str] = (),
        exclude_content_types: tuple[str, ...] = DEFAULT_EXCLUDED_CONTENT_TYPES,
    ) -> None:
        if minimum_size < 0:
            raise ValueError("minimum_size must be >= 0")
        if not 0 <= compresslevel <= 9:
            raise ValueError("compresslevel must be between 0 and 9")
        self.app = app
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel
        self.exclude_paths = tuple(exclude_paths)
        self._gzip = GZipMiddleware(
            self._marked,
            minimum_size=minimum_size,
            compresslevel=compresslevel,
            exclude_content_types=exclude_content_types,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            self.exclude_paths and scope.get("path", "").startswith(self.exclude_paths)
        ):
            await self.app(scope, receive, send)
            return
        if not _accepts_gzip(scope):
            # nothing to compress for this client, but the representation still depends on it
            await self.app(scope, receive, _vary_send(send))
            return
        if FORMATTER_SCOPE_KEY not in scope:
            await self._gzip(scope, receive, _representation_send(scope, send))
            return
        await self._routed_direct(scope, receive, send)

    def _responder(self, scope: Scope) -> IdentityResponder:
        """The responder ``GZipMiddleware`` would pick for this request, not yet attached."""
        gz = self._gzip  # the same settings (sizes, level, excluded types)
        accept = b""
        for key, value in scope.get("headers", ()):
            if key == b"accept-encoding":
                accept = value
                break
        if b"gzip" in accept:  # GZipMiddleware's own (case-sensitive) test
            return GZipResponder(
                self.app,
                gz.minimum_size,
                compresslevel=gz.compresslevel,
                thread_minimum_size=gz.thread_minimum_size,
                exclude_content_types=gz.exclude_content_types,
            )
        return IdentityResponder(
            self.app, gz.minimum_size, exclude_content_types=gz.exclude_content_types
        )

    async def _routed_direct(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Under the formatter: its candidates go straight up (compression deferred to it, which
        adds Vary and the ETag suffix itself); any other response goes through the gzip
        responder Starlette's ``GZipMiddleware`` would have used, built only for those."""
        max_size: int = scope[FORMATTER_SCOPE_KEY]
        target: Send | None = None
        gzip_send: Send | None = None

        async def route(message: Message) -> None:
            nonlocal target, gzip_send
            kind = message["type"]
            if kind == "http.response.start":
                if is_format_candidate(message, max_size):
                    target = send
                    scope[DEFERRED_COMPRESSION_KEY] = (self.minimum_size, self.compresslevel)
                    scope[CANDIDATE_SCOPE_KEY] = message
                else:
                    if has_header(message, b"content-encoding"):
                        scope[_APP_ENCODED_KEY] = True
                    responder = self._responder(scope)
                    responder.send = _representation_send(scope, send)
                    target = gzip_send = responder.send_with_compression
            elif target is None:  # nothing before the start message: let the responder judge
                responder = self._responder(scope)
                responder.send = _representation_send(scope, send)
                target = gzip_send = responder.send_with_compression
            elif target is gzip_send and kind == "http.response.body" and tracing_enabled():
                await _traced_body(gzip_send, message)
                return
            await target(message)

        await self.app(scope, receive, route)

    async def _marked(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, noting in the scope when it encoded its body itself."""

        async def mark(message: Message) -> None:
            if message["type"] == "http.response.start" and has_header(
                message, b"content-encoding"
            ):
                scope[_APP_ENCODED_KEY] = True
            if message["type"] == "http.response.body" and tracing_enabled():
                await _traced_body(send, message)
                return
            await send(message)

        await self.app(scope, receive, mark)
