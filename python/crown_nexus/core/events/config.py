"""What can be configured about the event system, and where it comes from.

Owns :class:`EventBackendType` (which backend delivers events) and :class:`EventConfig` (the
limits: event size, handler and shutdown timeouts, the memory backend's bound and backpressure,
duration sampling). The values come from :class:`~crown_nexus.settings.Settings` (the
``CROWN_NEXUS_EVENT_*`` variables, see the README's configuration table), whose defaults are
the dataclass defaults here too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from crown_nexus.core.events.exceptions import EventConfigurationException
from crown_nexus.settings import Settings, get_settings

__all__ = ["EventBackendType", "EventConfig", "backend_type_of"]


class EventBackendType(enum.StrEnum):
    """Where events are delivered: ``MEMORY`` (this process) or ``CELERY`` (worker processes)."""

    MEMORY = "memory"
    CELERY = "celery"


def backend_type_of(value: Any) -> EventBackendType:
    """``value`` (a name or an enum) as an :class:`EventBackendType`.

    Raises :class:`EventConfigurationException` for an unknown backend name.
    """
    try:
        return EventBackendType(value.value if isinstance(value, enum.Enum) else value)
    except ValueError:
        raise EventConfigurationException(
            f"unknown event backend {value!r}; use 'memory' or 'celery'"
        ) from None


def _setting_default(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass
class EventConfig:
    """Limits of the event system (:meth:`from_settings` reads them from ``Settings``).

    - ``max_event_bytes``: largest encoded event (payload + context) accepted (1 MiB).
    - ``handler_timeout``: default seconds a handler may run (``None``: no limit).
    - ``max_pending``: memory backend bound on scheduled handler runs (backpressure).
    - ``backpressure_timeout``: seconds ``publish`` may wait for room (``None``: as long as needed).
    - ``shutdown_timeout``: seconds ``shutdown`` waits for pending handlers before cancelling them.
    - ``duration_sample_every``: ``event_handler_duration_seconds`` observes the first run of
      each subscription, then one run in this many (1: every run).
    """

    max_event_bytes: int = _setting_default("event_max_bytes")
    handler_timeout: float | None = _setting_default("event_handler_timeout")
    max_pending: int = _setting_default("event_max_pending")
    backpressure_timeout: float | None = _setting_default("event_backpressure_timeout")
    shutdown_timeout: float | None = _setting_default("event_shutdown_timeout")
    duration_sample_every: int = _setting_default("event_duration_sample_every")

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> EventConfig:
        """The limits ``settings`` hold (default: :func:`~crown_nexus.settings.get_settings`,
        the current app's): ``CROWN_NEXUS_EVENT_MAX_BYTES``, ``..._HANDLER_TIMEOUT``,
        ``..._MAX_PENDING``, ``..._BACKPRESSURE_TIMEOUT``, ``..._SHUTDOWN_TIMEOUT`` and
        ``..._DURATION_SAMPLE_EVERY``."""
        s = get_settings() if settings is None else settings
        return cls(
            max_event_bytes=s.event_max_bytes,
            handler_timeout=s.event_handler_timeout,
            max_pending=s.event_max_pending,
            backpressure_timeout=s.event_backpressure_timeout,
            shutdown_timeout=s.event_shutdown_timeout,
            duration_sample_every=s.event_duration_sample_every,
        )

    #: the name this had when it read ``os.environ`` itself
    from_env = from_settings
