"""The configuration shared by the Celery event backend and the Celery worker app.

Needs the ``celery`` extra. This module builds a configured :class:`celery.Celery` app without
the dispatch task: the backend only *sends* tasks by name (:data:`DISPATCH_TASK`), while the
worker app of :mod:`crown_nexus.core.celery_app` registers the task on top of the same
configuration. It imports nothing from the event service, so the backend can use it without an
import cycle (``core.celery_app`` → ``core.events`` → this module).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from celery import Celery

from crown_nexus.logging import get_logger
from crown_nexus.settings import get_settings

__all__ = ["DISPATCH_TASK", "configured_celery_app", "env_number", "producer_app"]

logger = get_logger("crown_nexus.core.celery_app")

#: name of the task that runs an event's handlers in a worker
DISPATCH_TASK = "crown_nexus.events.dispatch"

_DEFAULT_BROKER = "redis://localhost:6379/0"


def env_number(name: str, default: float) -> float:
    """The float in environment variable ``name``; ``default`` when unset or not a number."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        logger.warning("ignoring non-numeric setting", name=name)
        return default


def _broker_url() -> str:
    url = os.environ.get("CROWN_NEXUS_CELERY_BROKER_URL")
    if url:
        return url
    try:
        settings = get_settings()
    except Exception:  # settings that do not load must not stop a worker from naming a broker
        return _DEFAULT_BROKER
    return settings.celery_broker_url or settings.redis_url or _DEFAULT_BROKER


def _transport_options() -> dict[str, Any]:
    options: dict[str, Any] = {
        "visibility_timeout": env_number("CROWN_NEXUS_CELERY_VISIBILITY_TIMEOUT", 3600.0),
    }
    restore = env_number("CROWN_NEXUS_CELERY_RESTORE_INTERVAL", 0.0)
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
    app = Celery("crown_nexus", broker=broker_url or _broker_url(), set_as_current=False)
    queue = os.environ.get("CROWN_NEXUS_CELERY_QUEUE", "crown-nexus-events")
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(),
        worker_hijack_root_logger=False,
    )
    app.conf.update(conf)
    return app


@cache
def producer_app() -> Celery:
    """The process-wide app the Celery backend sends through when it is given none."""
    return configured_celery_app()
