"""Metrics and events of the feature flag service, through the registered services.

Metrics (``get_service("metrics_service")``, created on first use):

* ``feature_flag_evaluations_total{flag, result}`` -- every evaluation (``result`` is
  ``"true"``/``"false"``). Counted in a local dict on the hot path and handed to the metrics
  service in batches: at most :data:`FLUSH_AFTER_SECONDS` after the first uncounted one (an
  event-loop timer), every :data:`FLUSH_EVERY` evaluations, and on :meth:`FeatureTelemetry.flush`.
* ``feature_flag_updates_total{action}`` -- ``set`` / ``delete`` through the admin API.
* ``feature_store_errors_total{store}`` -- failed store reads and writes.
* ``feature_store_reloads_total{store}`` -- times the local copy was reloaded from the store.

Events: ``feature.updated`` through ``get_service("event_service")`` when one is available.
A missing or failing metrics or event service never breaks an evaluation or an update.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crown_nexus.logging import get_logger

__all__ = ["EVALUATIONS", "FLUSH_AFTER_SECONDS", "FLUSH_EVERY", "FeatureTelemetry"]

logger = get_logger("crown_nexus.core.features")

EVALUATIONS = "feature_flag_evaluations_total"
UPDATES = "feature_flag_updates_total"
STORE_ERRORS = "feature_store_errors_total"
RELOADS = "feature_store_reloads_total"

_DEFINITIONS: dict[str, tuple[str, list[str]]] = {
    EVALUATIONS: ("Feature flag evaluations", ["flag", "result"]),
    UPDATES: ("Feature flag changes through the admin API", ["action"]),
    STORE_ERRORS: ("Failed feature flag store operations", ["store"]),
    RELOADS: ("Reloads of the local feature flags from the store", ["store"]),
}

FLUSH_EVERY = 1024
FLUSH_AFTER_SECONDS = 1.0
#: when the metrics service could not be found, look again after this many seconds
RETRY_LOOKUP_SECONDS = 30.0


class FeatureTelemetry:
    """Batched evaluation counts plus immediate counters and events (best effort)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        #: ``(flag, "true" | "false")`` -> evaluations not yet handed over
        self.counts: dict[tuple[str, str], int] = {}
        self.pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._service: Any = None
        self._retry_at = 0.0
        self._created: set[int] = set()

    # --- metrics ---------------------------------------------------------------------------

    def _metrics(self) -> Any:
        if not self.enabled:
            return None
        if self._retry_at and time.monotonic() < self._retry_at:
            return None
        try:
            from crown_nexus.core.dependency_manager import get_service

            service = get_service("metrics_service")
        except Exception as exc:
            logger.debug("feature flag metrics disabled for now", error=str(exc))
            self._retry_at = time.monotonic() + RETRY_LOOKUP_SECONDS
            return None
        self._retry_at = 0.0
        if id(service) not in self._created:
            for name, (description, labels) in _DEFINITIONS.items():
                try:
                    service.create_counter(name=name, description=description, labelnames=labels)
                except Exception as exc:  # created elsewhere with another shape
                    logger.debug("feature flag metric not created", metric=name, error=str(exc))
            self._created.add(id(service))
        return service

    def noted(self) -> None:
        """Called by the hot path after it counted: flush at :data:`FLUSH_EVERY`, else make
        sure a timer will flush within :data:`FLUSH_AFTER_SECONDS`."""
        if self.pending >= FLUSH_EVERY:
            self.flush()
            return
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a synchronous caller: hand over now
                self.flush()
                return
            self._timer = loop.call_later(FLUSH_AFTER_SECONDS, self.flush)

    def flush(self) -> None:
        """Hand the pending evaluation counts to the metrics service now."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if not self.counts:
            self.pending = 0
            return
        counts, self.counts = self.counts, {}
        self.pending = 0
        service = self._metrics()
        if service is None:
            return
        try:
            for (flag, result), amount in counts.items():
                service.increment_counter(EVALUATIONS, amount, {"flag": flag, "result": result})
        except Exception as exc:  # metrics never break an evaluation
            logger.debug("feature flag metrics not recorded", error=str(exc))

    def inc(self, name: str, labels: dict[str, str]) -> None:
        """Increment counter ``name`` by one now."""
        service = self._metrics()
        if service is None:
            return
        try:
            service.increment_counter(name, 1, labels)
        except Exception as exc:
            logger.debug("feature flag metrics not recorded", metric=name, error=str(exc))

    # --- events ----------------------------------------------------------------------------

    async def publish(self, event_name: str, payload: dict[str, Any]) -> None:
        """Publish ``event_name`` when an event service is available (failures are logged)."""
        try:
            from crown_nexus.core.dependency_manager import get_service

            service = get_service("event_service")
        except Exception:
            return
        try:
            await service.publish(event_name=event_name, payload=payload)
        except Exception as exc:
            logger.warning("publishing feature flag event failed", event_name=event_name, error=type(exc).__name__)
