"""``CompressionMiddleware``: gzip for bodies of at least ``minimum_size`` bytes (pure ASGI)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CompressionMiddleware"]


class CompressionMiddleware:
    """Gzip responses when the client accepts it and the body is at least ``minimum_size`` bytes.

    Built on Starlette's pure-ASGI ``GZipMiddleware`` (streams compressed chunk by chunk, skips
    already-encoded bodies, partial responses and media that do not compress); adds
    ``exclude_paths`` (prefixes never compressed) and a gentler default level.
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
        self.exclude_paths = tuple(exclude_paths)
        self._gzip = GZipMiddleware(
            app,
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
        await self._gzip(scope, receive, send)
