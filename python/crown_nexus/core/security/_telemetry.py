"""Metrics and events of the security service, through the registered services.

Metrics go to ``get_service("metrics_service")`` (guide §12 names); each labelled child is
bound once and reused, so a token validation pays a couple of increments, not a registry
lookup. Events go to ``get_service("event_service")`` only when that service is available. A
missing or failing metrics/event service never breaks a security operation.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Any

__all__ = ["SecurityTelemetry"]

logger = logging.getLogger("crown_nexus.core.security")

_DURATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: name -> (kind, description, label names)
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "token_validation_duration_seconds": ("histogram", "Time to validate a token", ("success",)),
    "token_validations_total": ("counter", "Token validations", ("success", "token_type")),
    "tokens_created_total": ("counter", "Tokens created", ("token_type",)),
    "token_creation_duration_seconds": ("histogram", "Time to create tokens", ("token_type",)),
    "password_verification_duration_seconds": (
        "histogram",
        "Time to verify a password",
        ("success",),
    ),
    "password_verifications_total": ("counter", "Password verifications", ("success",)),
    "api_keys_created_total": ("counter", "API keys created", ()),
    "api_key_verification_duration_seconds": (
        "histogram",
        "Time to verify an API key",
        ("success",),
    ),
    "csrf_validations_total": ("counter", "CSRF token validations", ("success",)),
    "suspicious_content_detections_total": (
        "counter",
        "Inputs flagged as suspicious",
        ("category",),
    ),
}


class SecurityTelemetry:
    """Records the security metrics and publishes the security events (best effort)."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._metrics: dict[str, Any] | None = None
        self._disabled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._events_available: bool | None = None

    # --- metrics ---------------------------------------------------------------------------

    def _load(self) -> dict[str, Any] | None:
        if self._disabled:
            return None
        if self._metrics is not None:
            return self._metrics
        try:
            from crown_nexus.core.dependency_manager import get_service

            service = get_service("metrics_service")
            made: dict[str, Any] = {}
            for name, (kind, description, labels) in METRICS.items():
                if kind == "counter":
                    made[name] = service.create_counter(
                        name=name, description=description, labelnames=list(labels)
                    )
                else:
                    made[name] = service.create_histogram(
                        name=name,
                        description=description,
                        labelnames=list(labels),
                        buckets=list(_DURATION_BUCKETS),
                    )
            self._service = service
            self._metrics = made
        except Exception as exc:
            logger.debug("security metrics disabled: %s", exc)
            self._disabled = True
            return None
        return self._metrics

    def _child(self, name: str, values: tuple[str, ...]) -> Any:
        key = (name, values)
        child = self._children.get(key)
        if child is None:
            metrics = self._load()
            if metrics is None:
                return None
            metric = metrics[name]
            child = metric.labels(*values) if values and hasattr(metric, "labels") else metric
            self._children[key] = child
        return child

    def inc(self, name: str, *values: str) -> None:
        """Increment counter ``name`` with label values in declaration order."""
        if self._disabled:
            return
        try:
            child = self._child(name, values)
            if child is not None:
                child.inc()
        except Exception as exc:  # metrics never break security operations
            logger.debug("security metric %s failed: %s", name, exc)

    def observe(self, name: str, value: float, *values: str) -> None:
        """Observe ``value`` on histogram ``name`` with label values in declaration order."""
        if self._disabled:
            return
        try:
            child = self._child(name, values)
            if child is not None:
                child.observe(value)
        except Exception as exc:
            logger.debug("security metric %s failed: %s", name, exc)

    # --- events ----------------------------------------------------------------------------

    def _event_service(self) -> Any:
        try:
            from crown_nexus.core.dependency_manager import get_service, has_service

            if not has_service("event_service"):
                if self._events_available is None:
                    self._events_available = (
                        importlib.util.find_spec("crown_nexus.core.events") is not None
                    )
                if not self._events_available:
                    return None
            return get_service("event_service")
        except Exception:
            return None

    async def publish(self, event_name: str, payload: dict[str, Any]) -> None:
        """Publish ``event_name`` with ``payload`` when an event service is registered."""
        service = self._event_service()
        if service is None:
            return
        try:
            await service.publish(event_name=event_name, payload=payload)
        except Exception as exc:
            logger.warning("publishing %s failed: %s", event_name, type(exc).__name__)

    def publish_soon(self, event_name: str, payload: dict[str, Any]) -> None:
        """From sync code: schedule :meth:`publish` on the running loop (dropped without one)."""
        if self._event_service() is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self.publish(event_name, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
