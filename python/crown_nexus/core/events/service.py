"""``EventService``: the event system's facade: publish events, register handlers, pick a backend
(guide §10, SPEC §6).

Handlers receive ``{"id": str, "name": str, "data": payload, "context": dict, "timestamp": ISO}``.
The payload and context are validated when published: they must be JSON-serializable (orjson;
dataclasses and pydantic models are turned into dicts) and the encoded event at most
``EventConfig.max_event_bytes`` long, otherwise :class:`EventPublishException` is raised. Handlers
get the decoded JSON, so they see the same data on every backend and never share mutable
objects with the publisher.

A handler that raises (or exceeds its timeout) is logged, reported through
``crown_nexus.core.error.report_error``, counted in ``event_handler_errors_total`` and does not
stop the other handlers. Metrics (``crown_nexus.core.metrics``): ``events_published_total``
``{event_type, backend}``, ``event_handler_errors_total{event_type, handler}``,
``event_handler_duration_seconds{event_type, handler}``, and the backlog gauge
``event_handlers_pending`` (in-process handler runs scheduled or running).

Handlers may be registered before :meth:`EventService.initialize` (the guide registers them at
import time); publishing before ``initialize`` uses the memory backend (after ``shutdown``: the
backend last initialized). :func:`configure_events` makes the service follow an app's
``Settings(event_backend=...)`` instead of the loaded settings.

This module owns the service's lifecycle (which backend is active, start, switch, drain, stop),
publishing (directly or through the outbox) and its outbox relays. The parts it puts together
live beside it, one reason to change each: :mod:`~crown_nexus.core.events.config` (backend types
and limits, from ``Settings``), :mod:`~crown_nexus.core.events.subscriptions` (who listens),
:mod:`~crown_nexus.core.events.envelope` (the event dict and its JSON),
:mod:`~crown_nexus.core.events.runner` (running a handler), :mod:`~crown_nexus.core.events.telemetry`
(metrics) and :mod:`~crown_nexus.core.events.backends` (delivery).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from crown_nexus.container import current_container, default_container
from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.core.events import envelope
from crown_nexus.core.events.backends.base import EventBackend
from crown_nexus.core.events.backends.factory import build_backend
from crown_nexus.core.events.config import EventBackendType, EventConfig, backend_type_of
from crown_nexus.core.events.exceptions import EventException, EventPublishException
from crown_nexus.core.events.outbox import OutboxRelay, write_to_outbox
from crown_nexus.core.events.runner import HandlerRunner, HandlerStats
from crown_nexus.core.events.subscriptions import (
    EventHandler,
    Subscription,
    SubscriptionTable,
    handler_id,
)
from crown_nexus.core.events.telemetry import EventMetrics
from crown_nexus.core.tracing import SpanKind, span, tracing_enabled
from crown_nexus.logging import get_logger

__all__ = [
    "EventBackendType",
    "EventConfig",
    "EventHandler",
    "EventService",
    "HandlerStats",
    "Subscription",
    "build_event_service",
    "configure_events",
    "get_event_service",
    "handler_id",
]

logger = get_logger("crown_nexus.core.events")

F = TypeVar("F", bound=Callable[..., Any])


class EventService:
    """Publishes events to a backend and runs the handlers registered here.

    Registered as ``"event_service"``; :func:`get_event_service` returns the same instance.
    ``config`` defaults to :meth:`EventConfig.from_settings` (the current settings).
    """

    def __init__(self, config: EventConfig | None = None) -> None:
        self.config = config or EventConfig.from_settings()
        self._table = SubscriptionTable()
        self._default_context: dict[str, Any] = {}
        self._backend: EventBackend | None = None
        self._backend_type: EventBackendType | None = None
        self._last: tuple[EventBackendType, dict[str, Any]] = (EventBackendType.MEMORY, {})
        #: the backend an app's settings chose (:meth:`configure`); ``None``: the loaded settings
        self._configured: EventBackendType | None = None
        self._metrics = EventMetrics(self.config.duration_sample_every, self.pending_count)
        #: runs handlers for the backends (filter, timeout, failures, metrics, spans)
        self.runner = HandlerRunner(self.config, self._metrics, self._table.handlers_for)
        self.stats: HandlerStats = self.runner.stats
        self._relays: list[Any] = []

    @property
    def _subs(self) -> dict[str, list[Subscription]]:
        """The subscriptions by event name (the table's own mapping)."""
        return self._table.by_name

    @_subs.setter
    def _subs(self, by_name: dict[str, list[Subscription]]) -> None:
        self._table.by_name = by_name

    # ------------------------------------------------------------------ lifecycle
    @property
    def backend(self) -> EventBackend | None:
        """The active backend (``None`` before the first ``initialize`` or publish)."""
        return self._backend

    @property
    def backend_type(self) -> EventBackendType | None:
        """The active backend's type."""
        return self._backend_type

    @property
    def initialized(self) -> bool:
        """True once a backend is active."""
        return self._backend is not None

    async def initialize(
        self, backend_type: EventBackendType | str | None = None, **options: Any
    ) -> None:
        """Start delivering events through ``backend_type`` (default: the ``event_backend`` of
        the settings given to :meth:`configure`, else of ``crown_nexus.core.config.settings``).

        Without ``backend_type`` an initialized service keeps its backend (the app's start-up
        calls ``initialize()`` on every service) unless :meth:`configure` chose another one: then
        it switches to that one. Calling it again with the same type and no
        options keeps the backend; another type (or new options) drains and closes the old one. Options go to the backend (memory:
        ``max_pending``, ``backpressure_timeout``; Celery: ``app``, ``task_options``).
        Raises :class:`EventConfigurationException` for an unknown type or a missing extra.
        """
        if backend_type is None:
            configured = self._configured
            if (
                self._backend is not None
                and not options
                and (configured is None or configured is self._backend_type)
            ):
                return
            if configured is not None:
                backend_type = configured
            else:
                from crown_nexus.core.config import settings

                backend_type = getattr(settings, "event_backend", "memory")
        kind = backend_type_of(backend_type)
        if self._backend is not None and self._backend_type is kind and not options:
            if getattr(self._backend, "_closed", False):
                self._backend._closed = False  # type: ignore[attr-defined]
            return
        old = self._backend
        self._last = (kind, dict(options))
        self._backend = build_backend(self, kind, options)
        self._backend_type = kind
        if old is not None:
            await old.close(self.config.shutdown_timeout)
        self._metrics.backlog_now()  # the backlog gauge exists (at 0) from start-up
        logger.info("event system initialized", backend=kind.value)

    def configure(self, settings: Any) -> bool:
        """Follow ``settings.event_backend`` (an app's ``Settings``) from now on; returns whether
        the backend to use changed.

        Takes effect at the next :meth:`initialize` without a type (the app's start-up): an
        active backend of another type is drained and closed there, on the app's loop. Before
        any ``initialize``, a publish uses the configured type. Raises
        :class:`EventConfigurationException` for an unknown backend name.
        """
        kind = backend_type_of(getattr(settings, "event_backend", "memory"))
        current = self._backend_type if self._backend is not None else self._last[0]
        self._configured = kind
        if self._backend is None and self._last[0] is not kind:
            self._last = (kind, {})
        if current is kind:
            return False
        logger.info("event service configured", backend=kind.value)
        return True

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop outbox relays, wait for pending handler runs (then cancel), close the backend.

        Handlers stay registered; the next ``initialize`` starts again, and so does a publish
        (with the backend last initialized, memory if none was).
        """
        for relay in list(self._relays):
            await relay.stop()
        backend = self._backend
        if backend is not None:
            await backend.close(self.config.shutdown_timeout if timeout is None else timeout)
        self._backend = None
        self._backend_type = None
        self._metrics.flush()

    close = shutdown

    async def wait_for_pending(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until in-process handler runs of published events (and the events they publish)
        have finished. Returns False when ``timeout`` seconds passed first."""
        backend = self._backend
        if backend is None:
            self._metrics.flush()
            return True
        done = await backend.wait_for_pending(timeout)
        self._metrics.flush()
        return done

    def flush_metrics(self) -> None:
        """Hand locally batched metric counts to the metrics service now."""
        self._metrics.flush()

    def record_outbox_backlog(self, count: int) -> None:
        """Set the gauge ``event_outbox_pending`` (outbox events committed, not yet delivered);
        its relays call this once per pass. Never raises."""
        self._metrics.outbox_backlog(count)

    def pending_count(self) -> int:
        """Handler runs scheduled or running in this process."""
        return 0 if self._backend is None else self._backend.pending_count()

    # ------------------------------------------------------------------ handlers
    def subscribe(
        self,
        event_name: str,
        handler: EventHandler,
        filter_func: Callable[[dict[str, Any]], Any] | None = None,
        *,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Subscription:
        """Run ``handler(event)`` for every event named ``event_name`` (``"*"``: all events)
        for which ``filter_func(event)`` is true. ``timeout`` overrides the default handler
        timeout; ``name`` overrides the handler's id (``module:qualname``). Returns the
        subscription (pass it, or the handler, to :meth:`unsubscribe`)."""
        sub = self._table.subscribe(event_name, handler, filter_func, timeout, name)
        self._metrics.subscribed(event_name, sub.id)
        return sub

    def unsubscribe(
        self, event_name: str, handler: EventHandler | Subscription | None = None
    ) -> int:
        """Remove ``handler`` (or a subscription) from ``event_name``; without one, every handler
        of that name. Returns how many subscriptions were removed."""
        return self._table.unsubscribe(event_name, handler)

    def event_handler(
        self,
        event_name: str,
        filter_func: Callable[[dict[str, Any]], Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Decorator: subscribe the function to ``event_name`` (see :meth:`subscribe`); the
        function is returned unchanged. Works before :meth:`initialize`."""

        def decorator(func: F) -> F:
            self.subscribe(event_name, func, filter_func, timeout=timeout)
            return func

        return decorator

    def handlers_for(self, event_name: str) -> list[Subscription]:
        """The subscriptions an event named ``event_name`` runs, in subscription order."""
        return self._table.handlers_for(event_name)

    def subscriptions(self) -> dict[str, list[Subscription]]:
        """Every subscription, by event name."""
        return self._table.copy()

    def set_default_context(self, context: Mapping[str, Any]) -> None:
        """Context merged under every published event's own context (theirs wins)."""
        self._default_context = envelope.checked_context(context)

    @property
    def default_context(self) -> dict[str, Any]:
        """A copy of the default context."""
        return dict(self._default_context)

    # ------------------------------------------------------------------ publishing
    def build_event(
        self, event_name: str, payload: Any, context: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """Validate and encode an event; return ``(event dict, its JSON)``.

        The dict is decoded from the JSON, so it holds exactly what a handler will receive.
        Raises :class:`EventPublishException` for a bad name, a payload or context that is not
        JSON-serializable, or an event larger than ``config.max_event_bytes``
        (see :func:`crown_nexus.core.events.envelope.build_event`).
        """
        return envelope.build_event(
            event_name,
            payload,
            context,
            default_context=self._default_context,
            max_bytes=self.config.max_event_bytes,
        )

    async def _active_backend(self) -> EventBackend:
        backend = self._backend
        if backend is None:
            kind, options = self._last
            await self.initialize(kind, **options)
            backend = self._backend
            assert backend is not None
        return backend

    async def publish(
        self,
        event_name: str,
        payload: Any,
        context: Mapping[str, Any] | None = None,
        *,
        session: Any = None,
    ) -> str:
        """Publish ``payload`` as event ``event_name``; return the event's id.

        Without ``session`` the event goes to the backend now (memory: handler tasks are
        scheduled, this waits only when ``max_pending`` runs are pending; Celery: sent to the
        broker). With an SQLAlchemy ``AsyncSession`` the event is written to the outbox table in
        the session's transaction and delivered by an :class:`~crown_nexus.core.events.outbox.OutboxRelay`
        after commit; a rollback publishes nothing (``events_published_total`` counts the event
        when the relay delivers it). Raises :class:`EventPublishException`.

        With tracing on, the publish is a ``PRODUCER`` span ``event.publish <name>`` and the
        event's context carries its ``traceparent``, so every handler (here, in a Celery
        worker or after the outbox relay) continues the publisher's trace.
        """
        if tracing_enabled():
            with span(
                f"event.publish {event_name}",
                tracer="crown_nexus.events",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "crown_nexus",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": str(event_name),
                    "crown_nexus.event.outbox": session is not None,
                },
            ) as current:
                event_id = await self._publish(event_name, payload, context, session)
                if current is not None:
                    current.set_attribute("messaging.message.id", event_id)
                return event_id
        return await self._publish(event_name, payload, context, session)

    async def _publish(
        self, event_name: str, payload: Any, context: Mapping[str, Any] | None, session: Any
    ) -> str:
        event, encoded = self.build_event(event_name, payload, context)
        if session is not None:
            await write_to_outbox(session, event, encoded, relays=self._relays)
            return str(event["id"])
        await self.deliver(event, encoded)
        return str(event["id"])

    async def deliver(self, event: dict[str, Any], encoded: bytes | None = None) -> None:
        """Hand an already built event (from :meth:`build_event` or the outbox) to the backend.

        Raises :class:`EventPublishException` when the backend fails.
        """
        backend = self._backend or await self._active_backend()
        if encoded is None:
            encoded = envelope.encode(event)
        try:
            await backend.publish(event, encoded)
        except EventException:
            raise
        except Exception as exc:
            raise EventPublishException(
                f"event backend {backend.name!r} failed: {type(exc).__name__}",
                event_name=event.get("name"),
                original_exception=exc,
            ) from exc
        self._metrics.published(event["name"], backend.name)

    # ------------------------------------------------------------------ running handlers
    def timeout_of(self, sub: Subscription) -> float | None:
        """The timeout that applies to ``sub`` (its own, else the configured default)."""
        return self.runner.timeout_of(sub)

    async def run_handler(
        self, sub: Subscription, event: dict[str, Any], *, enforce_timeout: bool = True
    ) -> bool:
        """Run one subscription for ``event`` (see :meth:`HandlerRunner.run_handler`): True
        when it succeeded or its filter skipped it, False when it failed; never raises."""
        return await self.runner.run_handler(sub, event, enforce_timeout=enforce_timeout)

    async def handler_timed_out(
        self, sub: Subscription, event: dict[str, Any], elapsed: float
    ) -> None:
        """Record that ``sub`` was stopped after exceeding its timeout (logged, reported, counted)."""
        await self.runner.handler_timed_out(sub, event, elapsed)

    async def dispatch(
        self, event: dict[str, Any], handler_ids: list[str] | None = None
    ) -> list[str]:
        """Run the handlers of ``event`` here, concurrently, and wait for them (a worker's job).

        ``handler_ids`` restricts the run to those handlers (a retry of the ones that failed).
        Returns the ids of the handlers that failed.
        """
        return await self.runner.dispatch(event, handler_ids)

    # ------------------------------------------------------------------ outbox
    def start_outbox_relay(self, engine: Any, **options: Any) -> Any:
        """Create and start an :class:`~crown_nexus.core.events.outbox.OutboxRelay` delivering
        ``engine``'s outbox through this service (``options`` go to the relay); ``shutdown``
        stops it. Call from a running event loop (e.g. the app's start-up)."""
        relay = OutboxRelay(engine, self, **options)
        relay.start()
        return relay

    def attach_relay(self, relay: Any) -> None:
        """Let ``publish(session=...)`` wake ``relay`` after commit; ``shutdown`` stops it."""
        if relay not in self._relays:
            self._relays.append(relay)

    def detach_relay(self, relay: Any) -> None:
        """Forget ``relay`` (it is not stopped)."""
        if relay in self._relays:
            self._relays.remove(relay)


def build_event_service() -> EventService:
    """Factory of ``"event_service"``: one event bus per app container.

    A bus built inside an app starts with the subscriptions made outside any app so far (the
    ``@event_service.event_handler`` decorators run at import), so code-level handlers serve
    every app; subscriptions made inside an app stay in that app.
    """
    service = EventService()
    default = default_container().registry
    if current_container() is not default_container() and default is not None:
        shared = default.instances().get("event_service")
        if isinstance(shared, EventService):
            service._subs = shared.subscriptions()
    return service


def configure_events(settings: Any) -> EventService:
    """Point the current app's event service (the default container's outside an app) at
    ``settings.event_backend`` and return it (see :meth:`EventService.configure`); ``setup_app``
    does not need it, each app's bus reads its own settings."""
    service = get_event_service()
    service.configure(settings)
    return service


def get_event_service() -> EventService:
    """The current app's event service (registered as ``"event_service"``; the default
    container's outside an app). Test overrides are returned by ``get_service`` only."""
    service: EventService = get_registry().singleton("event_service")
    return service

