"""The event system's metrics: what is counted, batched and sampled, and that it never fails.

Owns the series ``events_published_total{event_type, backend}``,
``event_handler_errors_total{event_type, handler}``, ``event_handler_duration_seconds{event_type,
handler}``, the backlog gauge ``event_handlers_pending`` (``livesum`` over workers) and the
outbox backlog gauge ``event_outbox_pending`` (``livemax`` over workers), their creation in
the registered ``"metrics_service"`` (looked up lazily, retried after a failure), the batching
of published counts, the sampling of handler durations, and the rule that recording a metric
never raises into event processing. Tracing spans are not here: they wrap
publishing (:mod:`~crown_nexus.core.events.service`) and handler runs
(:mod:`~crown_nexus.core.events.runner`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crown_nexus.logging import get_logger

if TYPE_CHECKING:
    from crown_nexus.core.events.subscriptions import Subscription

__all__ = ["EventMetrics"]

logger = get_logger("crown_nexus.core.events")


class EventMetrics:
    """The event metrics, looked up lazily; recording never raises.

    Published counts are added up locally and handed to the metrics service at most every
    :attr:`FLUSH_INTERVAL` seconds (and on :meth:`flush`); handler durations are observed for
    the first run of each subscription and then one run in ``sample_every``; errors are
    counted at once. The backlog gauge ``event_handlers_pending`` (handler runs scheduled or
    running in this process; ``livesum`` over workers) is set on every flush, and a flush is
    scheduled after each handler run, so it follows the backlog within :attr:`FLUSH_INTERVAL`.

    ``event_outbox_pending`` counts the transactional outbox's events committed but not yet
    delivered (waiting, claimed or waiting for a retry; not the dead letters), as the
    :class:`~crown_nexus.core.events.outbox.OutboxRelay` saw it at the end of its last pass
    (:meth:`outbox_backlog`). Every worker's relay reads the same table, so workers combine
    by ``livemax`` (never a sum: the backlog would be counted once per worker).
    """

    FLUSH_INTERVAL = 0.05

    #: ``(name, kind, help, labels, multiprocess mode of a gauge)``
    _DEFS: tuple[tuple[str, str, str, list[str], str], ...] = (
        ("events_published_total", "counter", "Events published", ["event_type", "backend"], ""),
        ("event_handler_errors_total", "counter", "Event handler failures",
         ["event_type", "handler"], ""),
        ("event_handler_duration_seconds", "histogram", "Event handler run time",
         ["event_type", "handler"], ""),
        ("event_handlers_pending", "gauge", "Event handler runs scheduled or running", [],
         "livesum"),
        ("event_outbox_pending", "gauge", "Outbox events committed but not yet delivered", [],
         "livemax"),
    )

    def __init__(
        self, sample_every: int = 1, pending: Callable[[], int] | None = None
    ) -> None:
        self._pending_source = pending
        self._service: Any = None
        self._retry_at = 0.0
        self.sample_every = max(1, int(sample_every))
        self._published: dict[tuple[str, str], int] = {}
        self._flush_at = 0.0
        self._flush_handle: asyncio.TimerHandle | None = None

    def _get(self) -> Any:
        service = self._service
        if service is not None:
            return service
        now = time.monotonic()
        if now < self._retry_at:
            return None
        try:
            from crown_nexus.core.dependency_manager import get_service

            service = get_service("metrics_service")
            for name, kind, doc, labels, mode in self._DEFS:
                if kind == "counter":
                    service.create_counter(name, doc, labels)
                elif kind == "gauge":
                    service.create_gauge(name, doc, labels, multiprocess_mode=mode)
                else:
                    service.create_histogram(
                        name, doc, labels,
                        buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
                    )
        except Exception as exc:
            logger.debug("event metrics unavailable", error=repr(exc))
            self._retry_at = now + 30.0
            return None
        self._service = service
        return service

    def reset(self) -> None:
        self._service = None
        self._retry_at = 0.0

    def published(self, name: str, backend: str) -> None:
        key = (name, backend)
        pending = self._published
        pending[key] = pending.get(key, 0) + 1
        now = time.monotonic()
        if now >= self._flush_at:
            self.flush()
            self._flush_at = now + self.FLUSH_INTERVAL
        elif self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._flush_handle = loop.call_later(self.FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        """Hand the locally added-up published counts to the metrics service."""
        handle, self._flush_handle = self._flush_handle, None
        if handle is not None:
            handle.cancel()
        self._set_backlog()
        if not self._published:
            return
        pending, self._published = self._published, {}
        service = self._get()
        if service is None:
            return
        for (name, backend), amount in pending.items():
            try:
                service.increment_counter(
                    "events_published_total", amount, {"event_type": name, "backend": backend}
                )
            except Exception as exc:
                logger.debug("event metric failed", error=repr(exc))

    def _set_backlog(self) -> None:
        source = self._pending_source
        if source is None:
            return
        service = self._get()
        if service is None:
            return
        try:
            service.set_gauge("event_handlers_pending", source())
        except Exception as exc:
            logger.debug("event metric failed", error=repr(exc))

    def backlog_now(self) -> None:
        """Set ``event_handlers_pending`` now (start-up: the gauge exists before any event)."""
        self._set_backlog()

    def outbox_backlog(self, count: int) -> None:
        """Set ``event_outbox_pending`` to ``count`` (an outbox relay, once per pass)."""
        service = self._get()
        if service is None:
            return
        try:
            service.set_gauge("event_outbox_pending", count)
        except Exception as exc:
            logger.debug("event metric failed", error=repr(exc))

    def _flush_soon(self) -> None:
        if self._flush_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._flush_handle = loop.call_later(self.FLUSH_INTERVAL, self.flush)

    def subscribed(self, name: str, handler: str) -> None:
        """Start ``event_handler_errors_total`` of a new subscription at 0, so failure rates
        and alerts have a series before the first failure (not for wildcard names)."""
        if "*" in name or "?" in name or "[" in name:
            return
        retry_at = self._retry_at
        service = self._get()
        if service is None:
            self._retry_at = retry_at  # a failed lookup here does not delay the publishers'
        else:
            try:
                service.increment_counter(
                    "event_handler_errors_total", 0, {"event_type": name, "handler": handler}
                )
            except Exception as exc:
                logger.debug("event metric failed", error=repr(exc))

    def handler_error(self, name: str, handler: str) -> None:
        service = self._get()
        if service is not None:
            try:
                service.increment_counter(
                    "event_handler_errors_total", labels={"event_type": name, "handler": handler}
                )
            except Exception as exc:
                logger.debug("event metric failed", error=repr(exc))

    def duration(self, sub: Subscription, name: str, seconds: float) -> None:
        n = sub.runs
        sub.runs = n + 1
        if self._flush_handle is None:
            self._flush_soon()  # the backlog gauge follows the finished run
        if n % self.sample_every:
            return
        service = self._get()
        if service is not None:
            try:
                service.observe_histogram(
                    "event_handler_duration_seconds",
                    seconds,
                    {"event_type": name, "handler": sub.id},
                )
            except Exception as exc:
                logger.debug("event metric failed", error=repr(exc))
