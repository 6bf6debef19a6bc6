"""The Celery backend: each published event becomes one task run by a Celery worker.

Needs the ``celery`` extra. The worker runs the handlers registered in its own process (see
``crown_nexus.core.celery_app``: ``CROWN_NEXUS_EVENT_HANDLER_MODULES``); delivery is at least
once (late acks, redelivery when a worker dies, failed handlers retried with backoff), so
handlers should be idempotent (the event ``id`` is stable across redeliveries).
"""

from __future__ import annotations

import asyncio
from typing import Any

from crown_nexus.core.events.backends._celery_conf import DISPATCH_TASK, producer_app
from crown_nexus.core.events.backends.base import EventBackend
from crown_nexus.core.events.exceptions import EventPublishException

__all__ = ["CeleryEventBackend"]

_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 1}


class CeleryEventBackend(EventBackend):
    """Sends ``crown_nexus.events.dispatch`` tasks carrying the event's JSON.

    ``app`` defaults to one process-wide app configured like the worker's
    (``_celery_conf.producer_app``); it sends the task by name, so it needs no task registered.
    """

    name = "celery"

    def __init__(self, app: Any = None, task_options: dict[str, Any] | None = None) -> None:
        self.app = producer_app() if app is None else app
        self.task_options = {"retry": True, "retry_policy": _RETRY_POLICY, **(task_options or {})}
        self._closed = False

    def _send(self, payload: str) -> None:
        self.app.send_task(DISPATCH_TASK, args=(payload,), **self.task_options)

    async def publish(self, event: dict[str, Any], encoded: bytes) -> None:
        """Send the event to the broker (in a thread, so the loop is not blocked)."""
        if self._closed:
            raise EventPublishException("event backend is closed", event_name=event["name"])
        try:
            await asyncio.to_thread(self._send, encoded.decode())
        except Exception as exc:
            raise EventPublishException(
                f"could not send event to the Celery broker: {type(exc).__name__}",
                event_name=event["name"],
                original_exception=exc,
            ) from exc

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop sending (the app's connections are pooled by Celery and stay)."""
        self._closed = True
