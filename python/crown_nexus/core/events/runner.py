"""Running handlers: one subscription for one event, with its filter, timeout and failure rules.

Owns what a handler run promises (SPEC §6): the filter decides first; the handler's timeout is
its own or the configured default; a handler that raises or times out is logged, reported
through ``crown_nexus.core.error.report_error``, counted (``event_handler_errors_total``,
:class:`HandlerStats`) and never stops the other handlers; a run is a ``CONSUMER`` span
continuing the publisher's trace when tracing is on. Backends call :class:`HandlerRunner` (the
memory backend in tasks, a Celery worker through :meth:`HandlerRunner.dispatch`).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import StatusCode

from crown_nexus.core.events.config import EventConfig
from crown_nexus.core.events.exceptions import EventHandlerException
from crown_nexus.core.events.subscriptions import Subscription
from crown_nexus.core.events.telemetry import EventMetrics
from crown_nexus.core.tracing import resume_span, tracing_enabled
from crown_nexus.logging import get_logger

__all__ = ["HandlerRunner", "HandlerStats"]

logger = get_logger("crown_nexus.core.events")


@dataclass
class HandlerStats:
    """Counts of handler runs in this process (for tests and health checks)."""

    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    filtered_out: int = 0


class HandlerRunner:
    """Runs subscriptions of an event service (its ``config``, ``metrics`` and ``stats``).

    ``handlers_for(name)`` gives the subscriptions of an event (for :meth:`dispatch`).
    """

    def __init__(
        self,
        config: EventConfig,
        metrics: EventMetrics,
        handlers_for: Callable[[str], list[Subscription]],
    ) -> None:
        self.config = config
        self._metrics = metrics
        self._handlers_for = handlers_for
        self.stats = HandlerStats()

    def timeout_of(self, sub: Subscription) -> float | None:
        """The timeout that applies to ``sub`` (its own, else the configured default)."""
        return sub.timeout if sub.timeout is not None else self.config.handler_timeout

    async def run_handler(
        self, sub: Subscription, event: dict[str, Any], *, enforce_timeout: bool = True
    ) -> bool:
        """Run one subscription for ``event``: filter, timeout, metrics, error reporting.

        Returns True when the handler succeeded or the filter skipped it, False when it failed
        (it is then logged, reported and counted). Never raises (except cancellation). With
        ``enforce_timeout=False`` the caller enforces the timeout (the memory backend's
        watchdog) and reports it through :meth:`handler_timed_out`.

        With tracing on, the run is a ``CONSUMER`` span ``event.handle <name>`` continuing the
        trace of the event's context (``traceparent``); a failed run marks it as an error.
        """
        if tracing_enabled():
            with resume_span(
                f"event.handle {event['name']}",
                event.get("context"),
                tracer="crown_nexus.events",
                attributes={
                    "messaging.system": "crown_nexus",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": str(event["name"]),
                    "messaging.message.id": str(event.get("id")),
                    "crown_nexus.event.handler": sub.id,
                },
            ) as current:
                ok = await self._run_handler(sub, event, enforce_timeout)
                if not ok and current is not None:
                    current.set_status(StatusCode.ERROR, "event handler failed")
                return ok
        return await self._run_handler(sub, event, enforce_timeout)

    async def _run_handler(
        self, sub: Subscription, event: dict[str, Any], enforce_timeout: bool
    ) -> bool:
        name = event["name"]
        if sub.filter_func is not None:
            try:
                wanted = sub.filter_func(event)
            except Exception as exc:
                await self._failed(sub, event, exc, "filter")
                return False
            if not wanted:
                self.stats.filtered_out += 1
                return True
        timeout = self.timeout_of(sub) if enforce_timeout else None
        start = time.perf_counter()
        deadline: asyncio.Timeout | None = None
        try:
            result = sub.handler(event)
            if inspect.isawaitable(result):
                if timeout is None:
                    await result
                else:
                    deadline = asyncio.timeout(timeout)
                    async with deadline:
                        await result
        except TimeoutError as exc:
            if deadline is None or not deadline.expired():
                self._metrics.duration(sub, name, time.perf_counter() - start)
                await self._failed(sub, event, exc, "error")
                return False
            await self.handler_timed_out(sub, event, time.perf_counter() - start)
            return False
        except Exception as exc:
            self._metrics.duration(sub, name, time.perf_counter() - start)
            await self._failed(sub, event, exc, "error")
            return False
        self._metrics.duration(sub, name, time.perf_counter() - start)
        self.stats.succeeded += 1
        return True

    async def handler_timed_out(
        self, sub: Subscription, event: dict[str, Any], elapsed: float
    ) -> None:
        """Record that ``sub`` was stopped after exceeding its timeout (logged, reported, counted)."""
        self._metrics.duration(sub, event["name"], elapsed)
        self.stats.timed_out += 1
        timeout = self.timeout_of(sub)
        err = EventHandlerException(
            f"event handler {sub.id} exceeded its {timeout}s timeout",
            event_name=event["name"],
            handler=sub.id,
        )
        await self._failed(sub, event, err, "timeout")

    async def _failed(
        self, sub: Subscription, event: dict[str, Any], exc: BaseException, stage: str
    ) -> None:
        self.stats.failed += 1
        self._metrics.handler_error(event["name"], sub.id)
        ctx = event.get("context") or {}
        logger.error(
            "Event handler failed",
            event_name=event["name"],
            event_id=event.get("id"),
            handler=sub.id,
            stage=stage,
            error_type=type(exc).__name__,
            error=str(exc)[:500],
        )
        try:
            from crown_nexus.core.error import report_error

            await report_error(
                exc,
                {
                    "function": sub.id,
                    "user_id": ctx.get("user_id") if isinstance(ctx, Mapping) else None,
                    "request_id": ctx.get("request_id") if isinstance(ctx, Mapping) else None,
                    "event_name": event["name"],
                    "event_id": event.get("id"),
                    "handler": sub.id,
                    "stage": stage,
                },
            )
        except Exception as report_exc:  # reporting must never break event processing
            logger.warning("could not report event handler error", error=repr(report_exc))

    async def dispatch(
        self, event: dict[str, Any], handler_ids: list[str] | None = None
    ) -> list[str]:
        """Run the handlers of ``event`` here, concurrently, and wait for them (a worker's job).

        ``handler_ids`` restricts the run to those handlers (a retry of the ones that failed).
        Returns the ids of the handlers that failed.
        """
        subs = self._handlers_for(event["name"])
        if handler_ids is not None:
            wanted = set(handler_ids)
            subs = [s for s in subs if s.id in wanted]
        if not subs:
            return []
        results = await asyncio.gather(*(self.run_handler(s, event) for s in subs))
        return [s.id for s, ok in zip(subs, results, strict=True) if not ok]
