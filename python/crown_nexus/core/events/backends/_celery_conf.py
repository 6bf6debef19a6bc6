"""The configuration shared by the Celery event backend and the Celery worker app.

Needs the ``celery`` extra. This module builds a configured :class:`celery.Celery` app without
the dispatch task: the backend only *sends* tasks by name (:data:`DISPATCH_TASK`), while the
worker app of :mod:`crown_nexus.core.celery_app` registers the task on top of the same
configuration. It imports nothing from the event service, so the backend can use it without an
import cycle (``core.celery_app`` → ``core.events`` → this module).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from celery import Celery

from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings, get_settings

__all__ = ["DISPATCH_TASK", "celery_settings", "configured_celery_app", "producer_app"]

logger = get_logger("crown_nexus.core.celery_app")

#: name of the task that runs an event's handlers in a worker
DISPATCH_TASK = "crown_nexus.events.dispatch"

_DEFAULT_BROKER = "redis://localhost:6379/0"


def celery_settings() -> Settings:
    """The settings the Celery app and its worker read (``CROWN_NEXUS_CELERY_*``,
    ``CROWN_NEXUS_EVENT_*``); their defaults, with a warning, when the settings do not load (a
    worker still names a broker and a queue)."""
    try:
        return get_settings()
    except Exception as exc:
        logger.warning(
            "settings could not be loaded; the Celery app uses the default settings",
            error=type(exc).__name__,
        )
        return Settings.model_construct()


def _transport_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"visibility_timeout": settings.celery_visibility_timeout}
    restore = settings.celery_restore_interval
    if restore > 0:
        # look for messages of dead workers every `restore` seconds (kombu: 10 s x 10)
        options["unacked_restore_interval"] = restore
        options["unacked_restore_throttle"] = 1
    return options


def configured_celery_app(broker_url: str | None = None, **conf: Any) -> Celery:
    """A Celery app configured for events (JSON only, late acks, Redis broker); ``conf`` overrides.

    It has no tasks: it can send the dispatch task by name; a worker needs
    :func:`crown_nexus.core.celery_app.create_celery_app`.
    """
    settings = celery_settings()
    broker = broker_url or settings.celery_broker_url or settings.redis_url or _DEFAULT_BROKER
    app = Celery("crown_nexus", broker=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.celery_queue,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings),
        worker_hijack_root_logger=False,
    )
    app.conf.update(conf)
    return app


@cache
def producer_app() -> Celery:
    """The process-wide app the Celery backend sends through when it is given none."""
    return configured_celery_app()
