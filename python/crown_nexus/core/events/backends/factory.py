"""Which backend an :class:`~crown_nexus.core.events.config.EventBackendType` means, built with
the options that backend accepts.

Owns the choice of backend class, the check of its options (unknown or bad ones raise
:class:`~crown_nexus.core.events.exceptions.EventConfigurationException`) and the lazy import of
the Celery backend (a missing ``celery`` extra is a configuration error naming it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crown_nexus.core.events.backends.base import EventBackend
from crown_nexus.core.events.backends.memory import MemoryEventBackend
from crown_nexus.core.events.config import EventBackendType
from crown_nexus.core.events.exceptions import EventConfigurationException

if TYPE_CHECKING:
    from crown_nexus.core.events.service import EventService

__all__ = ["build_backend"]


def build_backend(
    service: EventService, kind: EventBackendType, options: dict[str, Any]
) -> EventBackend:
    """A new backend of ``kind`` delivering ``service``'s events (memory: ``max_pending``,
    ``backpressure_timeout``, defaulting to ``service.config``; Celery: ``app``,
    ``task_options``)."""
    if kind is EventBackendType.MEMORY:
        unknown = sorted(set(options) - {"max_pending", "backpressure_timeout"})
        if unknown:
            raise EventConfigurationException(
                f"unknown memory backend options {unknown}", details={"options": unknown}
            )
        try:
            return MemoryEventBackend(
                service,
                max_pending=options.get("max_pending", service.config.max_pending),
                backpressure_timeout=options.get(
                    "backpressure_timeout", service.config.backpressure_timeout
                ),
            )
        except (TypeError, ValueError) as exc:
            raise EventConfigurationException(f"bad memory backend options: {exc}") from exc
    try:
        from crown_nexus.core.events.backends.celery import CeleryEventBackend
    except ImportError as exc:
        raise EventConfigurationException(
            "the Celery event backend needs the celery extra: pip install 'crown-nexus[celery]'"
        ) from exc
    unknown = sorted(set(options) - {"app", "task_options"})
    if unknown:
        raise EventConfigurationException(
            f"unknown Celery backend options {unknown}", details={"options": unknown}
        )
    return CeleryEventBackend(**options)
