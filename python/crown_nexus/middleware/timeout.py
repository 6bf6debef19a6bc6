"""``TimeoutMiddleware``: a request that has not started its response in time gets a 504."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.exceptions import TimeoutException, render_asgi

__all__ = ["TimeoutMiddleware"]


class TimeoutMiddleware:
    """Cancel a request whose response has not started within ``timeout_seconds``.

    The client gets 504 with the SPEC §3 body (code ``TIMEOUT``). Once the response has started
    (headers sent), the deadline is lifted so a streamed body is never cut short.
    ``exclude_paths`` (prefixes) are never timed out.
    """

    def __init__(
        self, app: ASGIApp, timeout_seconds: float = 30.0, exclude_paths: Iterable[str] = ()
    ) -> None:
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        self.app = app
        self.timeout_seconds = float(timeout_seconds)
        self.exclude_paths = tuple(exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            self.exclude_paths and scope.get("path", "").startswith(self.exclude_paths)
        ):
            await self.app(scope, receive, send)
            return
        started = False
        deadline = asyncio.timeout(self.timeout_seconds)

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, send_wrapper)
        except TimeoutError:
            if not deadline.expired() or started:
                raise
            exc = TimeoutException(
                message="Request timed out",
                details={"timeout_seconds": self.timeout_seconds},
            )
            start, body = render_asgi(exc)
            await send(start)
            await send(body)
