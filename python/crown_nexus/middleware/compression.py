"""``CompressionMiddleware``: gzip for bodies of at least ``minimum_size`` bytes (pure ASGI)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.middleware.response_formatter import (
    DEFERRED_COMPRESSION_KEY,
    FORMATTER_SCOPE_KEY,
    is_format_candidate,
)

__all__ = ["CompressionMiddleware"]

_OUTER_SEND_KEY = "crown_nexus.compression_outer_send"


def _accepts_gzip(scope: Scope) -> bool:
    for key, value in scope.get("headers", ()):
        if key == b"accept-encoding":
            return b"gzip" in value.lower()
    return False


class CompressionMiddleware:
    """Gzip responses when the client accepts it and the body is at least ``minimum_size`` bytes.

    Built on Starlette's pure-ASGI ``GZipMiddleware`` (streams compressed chunk by chunk, skips
    already-encoded bodies, partial responses and media that do not compress); adds
    ``exclude_paths`` (prefixes never compressed) and a gentler default level. Under
    ``ResponseFormatterMiddleware`` (the guide's order), responses the formatter will wrap are
    passed up uncompressed and the formatter compresses them after wrapping.
    """

    def __init__(
        self,
        app: ASGIApp,
        minimum_size: int = 1000,
        compresslevel: int = 6,
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
            app,
            minimum_size=minimum_size,
            compresslevel=compresslevel,
            exclude_content_types=exclude_content_types,
        )
        self._gzip_routed = GZipMiddleware(
            self._routed,
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
            # nothing to compress for this client; uncompressed bodies need no Vary header
            await self.app(scope, receive, send)
            return
        if FORMATTER_SCOPE_KEY not in scope:
            await self._gzip(scope, receive, send)
            return
        scope[_OUTER_SEND_KEY] = send
        await self._gzip_routed(scope, receive, send)

    async def _routed(self, scope: Scope, receive: Receive, gzip_send: Send) -> None:
        """Send the formatter's candidates straight up (compression deferred), the rest via gzip."""
        outer: Send = scope.pop(_OUTER_SEND_KEY)
        max_size: int = scope[FORMATTER_SCOPE_KEY]
        target: Send = gzip_send

        async def route(message: Message) -> None:
            nonlocal target
            if message["type"] == "http.response.start":
                if is_format_candidate(message, max_size):
                    target = outer
                    scope[DEFERRED_COMPRESSION_KEY] = (self.minimum_size, self.compresslevel)
                else:
                    target = gzip_send
            await target(message)

        await self.app(scope, receive, route)
