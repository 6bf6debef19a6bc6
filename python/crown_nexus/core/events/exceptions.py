"""Exceptions of the event system (guide §10).

Every event exception is an :class:`~crown_nexus.core.exceptions.AppException`, rendered with the
standard error body:

- :class:`EventException` (500, ``EVENT_ERROR``): base of every event error.
- :class:`EventPublishException` (500, ``EVENT_PUBLISH_ERROR``): an event could not be published:
  its payload or context is not JSON-serializable, it is larger than the configured maximum, its
  name is not a non-empty string, or the backend refused it.
- :class:`EventDataException` (422, ``EVENT_DATA_ERROR``): typed event data does not fit its
  dataclass (:meth:`DomainEvent.create` / :meth:`DomainEvent.from_dict`); also a ``ValueError``.
- :class:`EventHandlerException` (500, ``EVENT_HANDLER_ERROR``): a handler failed or timed out.
- :class:`EventConfigurationException` (500, ``EVENT_CONFIGURATION_ERROR``): unknown backend, a
  missing optional dependency (``celery``), bad settings.
"""

from __future__ import annotations

import enum
from typing import Any

from crown_nexus.core.exceptions import AppException

__all__ = [
    "EventConfigurationException",
    "EventDataException",
    "EventErrorCode",
    "EventException",
    "EventHandlerException",
    "EventPublishException",
]


class EventErrorCode(enum.StrEnum):
    """The ``code`` of each event exception."""

    EVENT_ERROR = "EVENT_ERROR"
    EVENT_PUBLISH_ERROR = "EVENT_PUBLISH_ERROR"
    EVENT_DATA_ERROR = "EVENT_DATA_ERROR"
    EVENT_HANDLER_ERROR = "EVENT_HANDLER_ERROR"
    EVENT_CONFIGURATION_ERROR = "EVENT_CONFIGURATION_ERROR"


class EventException(AppException):
    """Base of every event error; ``event_name`` (when known) is also in ``details``."""

    status_code = 500
    default_code: Any = EventErrorCode.EVENT_ERROR
    default_message = "Event system error"

    def __init__(
        self,
        message: str | None = None,
        code: Any = None,
        status_code: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
        *,
        event_name: str | None = None,
        original_exception: BaseException | None = None,
    ) -> None:
        info: Any = details
        if event_name is not None and (details is None or isinstance(details, dict)):
            info = {**(details or {}), "event_name": event_name}
        self.event_name = event_name
        self.original_exception = original_exception
        super().__init__(message, code=code, status_code=status_code, details=info, headers=headers)


class EventPublishException(EventException):
    """An event could not be published (bad payload, too large, bad name, backend failure)."""

    default_code = EventErrorCode.EVENT_PUBLISH_ERROR
    default_message = "Event could not be published"


class EventDataException(EventPublishException, ValueError):
    """Typed event data does not fit its declared dataclass."""

    status_code = 422
    default_code = EventErrorCode.EVENT_DATA_ERROR
    default_message = "Event data does not match its type"


class EventHandlerException(EventException):
    """An event handler failed or exceeded its timeout; ``handler`` names it."""

    default_code = EventErrorCode.EVENT_HANDLER_ERROR
    default_message = "Event handler failed"

    def __init__(
        self,
        message: str | None = None,
        code: Any = None,
        status_code: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
        *,
        event_name: str | None = None,
        handler: str | None = None,
        original_exception: BaseException | None = None,
    ) -> None:
        self.handler = handler
        if handler is not None and (details is None or isinstance(details, dict)):
            details = {**(details or {}), "handler": handler}
        super().__init__(
            message,
            code=code,
            status_code=status_code,
            details=details,
            headers=headers,
            event_name=event_name,
            original_exception=original_exception,
        )


class EventConfigurationException(EventException):
    """The event system is misconfigured (unknown backend, missing extra, bad settings)."""

    default_code = EventErrorCode.EVENT_CONFIGURATION_ERROR
    default_message = "Event system configuration error"
