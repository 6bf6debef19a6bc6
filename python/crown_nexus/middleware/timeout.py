"""``TimeoutMiddleware``: a request that has not started its response in time gets a 504."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.exceptions import TimeoutException, render_asgi

__all__ = ["TimeoutMiddleware"]

_get_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task


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
        # one timer handle per request, cancelled when the response starts: what
        # ``asyncio.timeout`` does, without its context-manager object and state machine
        loop = _get_running_loop()
        task = _current_task(loop)
        if task is None:  # not inside a task (cannot be cancelled): no deadline to enforce
            await self.app(scope, receive, send)
            return
        state = [False, False]  # [response started, deadline expired]

        def expire() -> None:
            if not state[0]:
                state[1] = True
                task.cancel()

        handle = loop.call_at(loop.time() + self.timeout_seconds, expire)
        cancelling = task.cancelling()

        async def send_wrapper(message: Message) -> None:
            if not state[0] and message["type"] == "http.response.start":
                state[0] = True
                handle.cancel()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            # our own cancellation (deadline passed before the response started, and nobody
            # else cancelled the task meanwhile) becomes the 504; any other propagates
            if not state[1] or state[0] or task.uncancel() > cancelling:
                raise
        else:
            return
        finally:
            handle.cancel()
        exc = TimeoutException(
            message="Request timed out",
            details={"timeout_seconds": self.timeout_seconds},
        )
        start, body = render_asgi(exc)
        await send(start)
        await send(body)
