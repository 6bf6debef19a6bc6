"""The Celery app behind the Celery event backend (guide §10 ``from app.core.celery_app import celery_app``).

Importing this module needs the ``celery`` extra (``pip install 'crown-nexus[celery]'``); nothing
else in crown-nexus imports it unless the Celery backend is chosen.

Configuration (:class:`~crown_nexus.settings.Settings`, read when the app is built; the
variables are listed in the README's configuration table):

- broker: ``settings.celery_broker_url`` (``CROWN_NEXUS_CELERY_BROKER_URL``), else
  ``settings.redis_url`` (``REDIS_URI``), else ``redis://localhost:6379/0``;
- ``CROWN_NEXUS_CELERY_VISIBILITY_TIMEOUT`` (seconds, default 3600): how long a delivered but
  unacknowledged message waits before Redis hands it to another worker;
- ``CROWN_NEXUS_CELERY_RESTORE_INTERVAL`` (seconds): how often a worker looks for such
  messages of dead workers (kombu's default is about every 100 s; a starting worker looks once);
- ``CROWN_NEXUS_CELERY_QUEUE`` (default ``crown-nexus-events``);
- ``CROWN_NEXUS_EVENT_HANDLER_MODULES``: comma-separated modules a worker imports to register
  its handlers (``@event_service.event_handler(...)`` at import time);
- ``CROWN_NEXUS_EVENT_MAX_RETRIES`` (default 5), ``CROWN_NEXUS_EVENT_RETRY_BACKOFF`` (first
  delay, seconds, default 1.0, doubling each retry), ``CROWN_NEXUS_EVENT_RETRY_BACKOFF_MAX``
  (default 600).

Delivery is at least once: tasks are acknowledged late (after the handlers ran), a task whose
worker process died is rejected back to the queue, and handlers that failed are retried alone
with exponential backoff. Events travel as one orjson-encoded JSON string through Celery's
``json`` serializer; ``accept_content`` is ``["json"]`` (never pickle).

Run a worker::

    CROWN_NEXUS_EVENT_HANDLER_MODULES=myapp.handlers \\
        celery -A crown_nexus.core.celery_app:celery_app worker --pool=solo
"""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import threading
from typing import Any

from celery import Celery, Task
from celery.signals import worker_init

from crown_nexus.core.events import EventBackendType, get_event_service
from crown_nexus.core.events.backends._celery_conf import (
    DISPATCH_TASK,
    celery_settings,
    configured_celery_app,
)
from crown_nexus.core.events.envelope import decode as decode_event
from crown_nexus.core.tracing import resume_span, tracing_enabled
from crown_nexus.logging import get_logger

__all__ = [
    "DISPATCH_TASK",
    "celery_app",
    "create_celery_app",
    "dispatch_event",
    "load_handler_modules",
    "retry_delay",
]

logger = get_logger("crown_nexus.core.celery_app")

def create_celery_app(broker_url: str | None = None, **conf: Any) -> Celery:
    """A Celery app configured for events (JSON only, late acks, Redis broker) with the dispatch
    task registered, for workers; ``conf`` overrides."""
    app = configured_celery_app(broker_url, **conf)
    app.task(
        name=DISPATCH_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=celery_settings().event_max_retries,
    )(dispatch_event)
    return app


def load_handler_modules(modules: str | None = None) -> list[str]:
    """Import the handler modules named in ``modules`` (default: the ``event_handler_modules``
    setting, ``CROWN_NEXUS_EVENT_HANDLER_MODULES``; comma-separated); return their names. An unimportable module raises ``ImportError``."""
    raw = celery_settings().event_handler_modules if modules is None else modules
    names = [m.strip() for m in raw.split(",") if m.strip()]
    for name in names:
        importlib.import_module(name)
    return names


def retry_delay(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: exponential from
    ``CROWN_NEXUS_EVENT_RETRY_BACKOFF``, capped, with up to 10 % jitter."""
    settings = celery_settings()
    base = settings.event_retry_backoff
    cap = settings.event_retry_backoff_max
    delay = min(cap, base * (2 ** max(0, retries)))
    return delay * (1.0 + random.random() * 0.1)  # jitter, not security


class _Worker:
    """Per-process state of a worker: its event loop and whether handlers are loaded."""

    def __init__(self) -> None:
        self.pid = -1
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock = threading.Lock()

    def run(self, coro: Any) -> Any:
        with self.lock:
            if self.pid != os.getpid() or self.loop is None or self.loop.is_closed():
                self.pid = os.getpid()
                self.loop = asyncio.new_event_loop()
                load_handler_modules()
                self.loop.run_until_complete(self._start())
            return self.loop.run_until_complete(coro)

    @staticmethod
    async def _start() -> None:
        service = get_event_service()
        if not service.initialized:
            # events published by handlers in the worker go back through the broker
            await service.initialize(EventBackendType.CELERY, app=celery_app)


_worker = _Worker()


def dispatch_event(self: Task, encoded: str, handler_ids: list[str] | None = None) -> list[str]:
    """Run the handlers of one event in this worker; retry the ones that failed with backoff.

    Returns the ids of handlers still failing after the last retry (empty when all succeeded).
    """
    event = decode_event(encoded)
    service = get_event_service()
    if tracing_enabled():  # the worker continues the trace the publisher put in the context
        with resume_span(
            f"{DISPATCH_TASK} {event.get('name')}",
            event.get("context") if isinstance(event.get("context"), dict) else None,
            tracer="crown_nexus.events",
            attributes={
                "messaging.system": "celery",
                "messaging.operation.type": "process",
                "messaging.destination.name": str(event.get("name")),
                "messaging.message.id": str(event.get("id")),
                "crown_nexus.celery.retries": int(self.request.retries or 0),
            },
        ):
            failed: list[str] = _worker.run(service.dispatch(event, handler_ids))
    else:
        failed = _worker.run(service.dispatch(event, handler_ids))
    if not failed:
        return []
    retries = int(self.request.retries or 0)
    if retries >= (self.max_retries or 0):
        logger.error(
            "Event handlers still failing after retries; giving up",
            event_name=event.get("name"),
            event_id=event.get("id"),
            handlers=failed,
            retries=retries,
        )
        return failed
    delay = retry_delay(retries)
    logger.warning(
        "Event handlers failed; retrying",
        event_name=event.get("name"),
        event_id=event.get("id"),
        handlers=failed,
        retry_in=round(delay, 3),
    )
    raise self.retry(args=(encoded, failed), countdown=delay)


@worker_init.connect
def _load_handlers_at_start(**_: Any) -> None:
    """A worker imports its handler modules before taking tasks: a bad module name stops it
    at start-up instead of failing events later."""
    try:
        names = load_handler_modules()
    except ImportError as exc:
        logger.critical("cannot import the event handler modules", error=str(exc))
        # Celery logs and swallows exceptions from signal receivers; SystemExit stops the worker
        raise SystemExit(f"crown-nexus: cannot import event handler modules: {exc}") from exc
    if names:
        logger.info("event handler modules loaded", modules=names)
    from crown_nexus.core.tracing.sdk import configure_tracing

    # CROWN_NEXUS_OTEL_* / OTEL_*: the worker exports its spans like the app (no-op otherwise)
    configure_tracing()


#: the app the guide imports (``from crown_nexus.core.celery_app import celery_app``)
celery_app: Celery = create_celery_app()
