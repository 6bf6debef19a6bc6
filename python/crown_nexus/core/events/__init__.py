"""The event system (guide §10, SPEC §6): publish events, handle them here or in Celery workers.

``event_service`` (registered as ``"event_service"``; :func:`get_event_service` returns it)::

    event_service = get_event_service()

    @event_service.event_handler("user.created")
    async def on_user_created(event): ...

    await event_service.initialize(EventBackendType.MEMORY)
    await event_service.publish("user.created", {"user_id": "1"}, context={"request_id": rid})

Handlers receive ``{"id", "name", "data", "context", "timestamp"}``. Typed events live in
:mod:`crown_nexus.core.events.domain_events`, exceptions in
:mod:`crown_nexus.core.events.exceptions`, the transactional outbox in
:mod:`crown_nexus.core.events.outbox`. The Celery backend (``crown_nexus.core.celery_app``) is
imported only when chosen.

Where each job lives: ``service`` (the ``EventService`` facade: lifecycle, publishing, relays),
``config`` (backend types and limits, from ``Settings``), ``subscriptions`` (who listens),
``envelope`` (the event dict, its ids, timestamp, context and the one JSON encoder),
``runner`` (running a handler: filter, timeout, failures), ``telemetry`` (the event metrics),
``backends/`` (delivery: memory, Celery, and the factory choosing one), ``outbox``,
``domain_events``, ``exceptions``.
"""

from __future__ import annotations

from typing import Any, cast

from crown_nexus.core.events.backends import EventBackend, MemoryEventBackend
from crown_nexus.core.events.domain_events import DomainEvent, UserCreatedEvent, UserData
from crown_nexus.core.events.exceptions import (
    EventConfigurationException,
    EventDataException,
    EventErrorCode,
    EventException,
    EventHandlerException,
    EventPublishException,
)
from crown_nexus.core.events.outbox import (
    OutboxRelay,
    create_outbox_tables,
    dead_letter_table,
    outbox_metadata,
    outbox_table,
)
from crown_nexus.core.events.service import (
    EventBackendType,
    EventConfig,
    EventHandler,
    EventService,
    HandlerStats,
    Subscription,
    build_event_service,
    configure_events,
    get_event_service,
    handler_id,
)

__all__ = [
    "DomainEvent",
    "EventBackend",
    "EventBackendType",
    "EventConfig",
    "EventConfigurationException",
    "EventDataException",
    "EventErrorCode",
    "EventException",
    "EventHandler",
    "EventHandlerException",
    "EventPublishException",
    "EventService",
    "HandlerStats",
    "MemoryEventBackend",
    "OutboxRelay",
    "Subscription",
    "UserCreatedEvent",
    "UserData",
    "configure_events",
    "create_outbox_tables",
    "dead_letter_table",
    "event_service",
    "get_event_service",
    "handler_id",
    "outbox_metadata",
    "outbox_table",
]


def _register() -> None:
    from crown_nexus.core.dependency_manager import get_registry, register_service

    if "event_service" not in get_registry().names():
        register_service(build_event_service, name="event_service")  # one per app container


_register()



class _CurrentEventService:
    """The guide's ``event_service``: every attribute is read from the current app's bus
    (:func:`get_event_service`), the default container's outside an app. So
    ``await event_service.publish(...)`` in a request reaches the app's own handlers, and
    ``@event_service.event_handler(...)`` at import declares a handler every app's bus starts
    with. ``isinstance(event_service, EventService)`` holds."""

    __slots__ = ()

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees an EventService
        return EventService

    def __getattr__(self, name: str) -> Any:
        return getattr(get_event_service(), name)

    def __repr__(self) -> str:
        return f"<event_service of the current app: {get_event_service()!r}>"


event_service: EventService = cast(EventService, _CurrentEventService())
