"""The in-process backend: every handler run is its own asyncio task.

Publishing schedules one task per matching handler and returns; handler runs start in publish
order (and, for one event, in subscription order). At most ``max_pending`` runs may be scheduled
or running at once: past that, ``publish`` waits for room (backpressure), and raises
:class:`EventPublishException` after ``backpressure_timeout`` seconds when one is set. Events
published from inside a handler never wait (a chain of handlers cannot deadlock on a full
queue), so the bound may be overshot by such chained events.

Handler timeouts are enforced by one watchdog timer per loop (every :data:`WATCHDOG_TICK`
seconds while runs are pending), so a run costs no timer of its own.

State is kept per event loop: a backend used from a new loop (e.g. another test) starts afresh.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import TYPE_CHECKING, Any

from crown_nexus.core.events.backends.base import EventBackend
from crown_nexus.core.events.exceptions import EventPublishException

if TYPE_CHECKING:
    from crown_nexus.core.events.service import EventService
    from crown_nexus.core.events.subscriptions import Subscription

__all__ = ["WATCHDOG_TICK", "MemoryEventBackend", "in_handler"]

#: how often (seconds) the watchdog looks for handler runs past their timeout; a timeout is
#: enforced within this much of its deadline
WATCHDOG_TICK = 0.02

_IN_HANDLER: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "crown_nexus_event_in_handler", default=False
)


def in_handler() -> bool:
    """True while running inside an event handler started by the memory backend."""
    return _IN_HANDLER.get()


class _LoopState:
    __slots__ = ("deadlines", "expired", "loop", "pending", "space", "tasks", "watchdog")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending = 0
        self.space = asyncio.Event()
        self.space.set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.deadlines: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.watchdog: asyncio.TimerHandle | None = None


class MemoryEventBackend(EventBackend):
    """Runs the service's handlers as tasks in this process, with a bound on pending runs."""

    name = "memory"

    def __init__(
        self,
        service: EventService,
        *,
        max_pending: int = 10_000,
        backpressure_timeout: float | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._service = service
        self.max_pending = int(max_pending)
        self.backpressure_timeout = backpressure_timeout
        self._state: _LoopState | None = None
        self._closed = False

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or state.loop is not loop:
            state = self._state = _LoopState(loop)
        return state

    async def _wait_for_room(self, state: _LoopState, event_name: str) -> None:
        while state.pending >= self.max_pending:
            state.space.clear()
            if self.backpressure_timeout is None:
                await state.space.wait()
                continue
            try:
                async with asyncio.timeout(self.backpressure_timeout):
                    await state.space.wait()
            except TimeoutError:
                raise EventPublishException(
                    f"event queue full: {state.pending} handler runs pending",
                    event_name=event_name,
                    details={"pending": state.pending, "max_pending": self.max_pending},
                ) from None

    async def publish(self, event: dict[str, Any], encoded: bytes) -> None:
        """Schedule one task per handler of ``event``; wait for room first when the bound is hit."""
        if self._closed:
            raise EventPublishException("event backend is closed", event_name=event["name"])
        subs = self._service.handlers_for(event["name"])
        if not subs:
            return
        state = self._loop_state()
        nested = _IN_HANDLER.get()
        for sub in subs:
            if state.pending >= self.max_pending and not nested:
                await self._wait_for_room(state, event["name"])
            state.pending += 1
            task = state.loop.create_task(self._run(sub, event, state))
            state.tasks.add(task)

    async def _run(self, sub: Subscription, event: dict[str, Any], state: _LoopState) -> None:
        _IN_HANDLER.set(True)
        task: asyncio.Task[Any] = asyncio.current_task()  # type: ignore[assignment]
        runner = self._service.runner
        timeout = runner.timeout_of(sub)
        start = time.perf_counter()
        if timeout is not None:
            state.deadlines[task] = state.loop.time() + timeout
            if state.watchdog is None:
                state.watchdog = state.loop.call_later(WATCHDOG_TICK, self._watch, state)
        try:
            await runner.run_handler(sub, event, enforce_timeout=False)
        except asyncio.CancelledError:
            if task not in state.expired:
                raise
            state.expired.discard(task)
            task.uncancel()
            await runner.handler_timed_out(sub, event, time.perf_counter() - start)
        finally:
            state.deadlines.pop(task, None)
            state.pending -= 1
            state.tasks.discard(task)
            if state.pending < self.max_pending:
                state.space.set()

    def _watch(self, state: _LoopState) -> None:
        """Cancel handler runs past their deadline (one timer for all runs, not one per run)."""
        state.watchdog = None
        now = state.loop.time()
        overdue = [t for t, deadline in state.deadlines.items() if deadline <= now]
        for task in overdue:
            del state.deadlines[task]
            state.expired.add(task)
            task.cancel()
        if state.deadlines:
            state.watchdog = state.loop.call_later(WATCHDOG_TICK, self._watch, state)

    def pending_count(self) -> int:
        """Handler runs scheduled or running on the current loop's state."""
        state = self._state
        return 0 if state is None else state.pending

    async def wait_for_pending(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until every handler run (including runs started meanwhile) has finished.

        Returns True when none is left, False when ``timeout`` seconds passed first.
        """
        state = self._state
        if state is None or state.loop is not asyncio.get_running_loop():
            return True
        loop = state.loop
        deadline = None if timeout is None else loop.time() + timeout
        while state.tasks:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await asyncio.wait(set(state.tasks), timeout=remaining)
        return True

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Refuse new events, let pending runs finish (up to ``timeout``), cancel the rest."""
        self._closed = True
        state = self._state
        if state is None or state.loop is not asyncio.get_running_loop():
            return
        if not await self.wait_for_pending(timeout):
            for task in list(state.tasks):
                task.cancel()
            await asyncio.gather(*state.tasks, return_exceptions=True)
