"""``TimeoutMiddleware``: a request that has not started its response in time gets a 504; a request
body that takes too long to arrive gets a 408."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.exceptions import AppException, TimeoutException, render_asgi
from crown_nexus.middleware._send import add_start_hook, bodiless

__all__ = ["BodyReadTimeoutException", "TimeoutMiddleware"]


class BodyReadTimeoutException(AppException):
    """The request body did not arrive within the body read timeout: 408 ``REQUEST_TIMEOUT``."""

    status_code = 408
    default_code = "REQUEST_TIMEOUT"
    default_message = "Request body not received in time"

_get_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task


class _Deadlines:
    """The request deadlines of one ``TimeoutMiddleware`` on one event loop, and one timer.

    Every request of a middleware has the same timeout, so deadlines arrive in order: they are
    queued as ``[started, expired, finished, deadline, task]`` entries and a single timer waits
    for the oldest. When it fires, entries whose response started (or whose request finished)
    are dropped, and each one past its deadline is marked expired and its task cancelled --
    what a timer per request would do, without scheduling and cancelling one per request.
    Finished entries at the head are dropped as requests arrive, and the queue is compacted
    when a slow request at its head keeps many finished ones behind it.
    """

    __slots__ = ("entries", "handle", "loop")

    #: compact the queue (drop every finished entry) when it grows past this many entries
    COMPACT_AT = 4096

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.entries: deque[list[Any]] = deque()
        self.handle: asyncio.TimerHandle | None = None

    def add(self, entry: list[Any]) -> None:
        """Queue a request's entry (its deadline no earlier than any queued one)."""
        entries = self.entries
        while entries and (entries[0][0] or entries[0][2]):
            entries.popleft()
        if len(entries) >= self.COMPACT_AT:
            self.entries = entries = deque(e for e in entries if not (e[0] or e[2]))
        entries.append(entry)
        if self.handle is None:
            self.handle = self.loop.call_at(entry[3], self._fire)

    def _fire(self) -> None:
        self.handle = None
        now = self.loop.time()
        entries = self.entries
        while entries:
            entry = entries[0]
            if not (entry[0] or entry[2]):
                if entry[3] > now:
                    break
                entry[1] = True  # the deadline passed before the response started
                entry[4].cancel()
            entries.popleft()
        if entries:
            self.handle = self.loop.call_at(entries[0][3], self._fire)


class TimeoutMiddleware:
    """Cancel a request whose response has not started within ``timeout_seconds``.

    The client gets 504 with the SPEC §3 body (code ``TIMEOUT``). Once the response has started
    (headers sent), the deadline is lifted so a streamed body is never cut short.
    ``exclude_paths`` (prefixes) are never timed out.

    ``body_timeout_seconds`` (``None``: off) bounds the time from the application's first read of
    the request body to its last byte, whether or not the response has started: a body that
    arrives more slowly answers 408 ``REQUEST_TIMEOUT`` with the SPEC §3 body (the application's
    own answer to the failed read is replaced), so a slow sender cannot hold a worker.
    """

    def __init__(
        self,
        app: ASGIApp,
        timeout_seconds: float = 30.0,
        exclude_paths: Iterable[str] = (),
        *,
        body_timeout_seconds: float | None = None,
    ) -> None:
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        if body_timeout_seconds is not None and not body_timeout_seconds > 0:
            raise ValueError("body_timeout_seconds must be positive or None")
        self.app = app
        self.timeout_seconds = float(timeout_seconds)
        self.exclude_paths = tuple(exclude_paths)
        self.body_timeout_seconds = (
            None if body_timeout_seconds is None else float(body_timeout_seconds)
        )
        self._deadlines: _Deadlines | None = None

    def _body_reader(
        self, receive: Receive, refused: list[bool], loop: Any, task: asyncio.Task[Any]
    ) -> Receive:
        """``receive`` that raises :class:`BodyReadTimeoutException` once the body is late.

        One timer per request, started by the first read and cancelled by the last byte; it
        cancels the task only while the app is waiting in ``receive`` (the cancellation is
        turned back into the exception there), and a read after the deadline raises at once.
        """
        limit = self.body_timeout_seconds
        assert limit is not None
        handle: asyncio.TimerHandle | None = None
        state = [False, False, False]  # [body complete, waiting in receive, deadline passed]

        def expire() -> None:
            state[2] = True
            if state[1] and not state[0]:
                task.cancel()

        def refuse() -> BodyReadTimeoutException:
            refused[0] = True
            return BodyReadTimeoutException(details={"body_timeout_seconds": limit})

        async def receive_body() -> Message:
            nonlocal handle
            if state[0]:
                return await receive()
            if state[2]:
                raise refuse()
            if handle is None:
                handle = loop.call_at(loop.time() + limit, expire)
            cancelling = task.cancelling()
            state[1] = True
            try:
                message = await receive()
            except asyncio.CancelledError:
                if state[2] and task.uncancel() <= cancelling:
                    raise refuse() from None
                raise
            finally:
                state[1] = False
            if message["type"] != "http.request" or not message.get("more_body", False):
                state[0] = True
                handle.cancel()
            return message

        return receive_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            self.exclude_paths and scope.get("path", "").startswith(self.exclude_paths)
        ):
            await self.app(scope, receive, send)
            return
        loop = _get_running_loop()
        task = _current_task(loop)
        if task is None:  # not inside a task (cannot be cancelled): no deadline to enforce
            await self.app(scope, receive, send)
            return
        body_late = [False]  # set when a read was refused for the body read timeout
        timed_body = self.body_timeout_seconds is not None and not bodiless(scope)
        if timed_body:
            receive = self._body_reader(receive, body_late, loop, task)
        # [response started, deadline expired, finished, deadline, task]: one entry in this
        # middleware's deadline queue (one timer for all requests, not one per request)
        state: list[Any] = [False, False, False, loop.time() + self.timeout_seconds, task]
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = _Deadlines(loop)
        deadlines.add(state)
        cancelling = task.cancelling()

        def started(message: Message, headers: list[Any], names: set[bytes]) -> None:
            state[0] = True

        async def send_wrapper(message: Message) -> None:
            if body_late[0]:
                # the app's answer to the failed read (FastAPI: 400) becomes the 408 it is owed
                if not state[0] and message["type"] == "http.response.start":
                    state[0] = True
                    await self._send_late_body(send)
                return
            if not state[0] and message["type"] == "http.response.start":
                state[0] = True
            await send(message)

        try:
            # without a body to time, only the start matters: a hook in the shared send
            await self.app(
                scope, receive, send_wrapper if timed_body else add_start_hook(send, started)
            )
        except BodyReadTimeoutException:
            if state[0]:
                raise
            state[2] = True
            await self._send_late_body(send)
            return
        except asyncio.CancelledError:
            # our own cancellation (deadline passed before the response started, and nobody
            # else cancelled the task meanwhile) becomes the 504; any other propagates
            if not state[1] or state[0] or task.uncancel() > cancelling:
                raise
        else:
            return
        finally:
            state[2] = True
        exc = TimeoutException(
            message="Request timed out",
            details={"timeout_seconds": self.timeout_seconds},
        )
        start, body = render_asgi(exc)
        await send(start)
        await send(body)

    async def _send_late_body(self, send: Send) -> None:
        start, body = render_asgi(
            BodyReadTimeoutException(details={"body_timeout_seconds": self.body_timeout_seconds})
        )
        start["headers"].append((b"connection", b"close"))
        await send(start)
        await send(body)
