"""Metrics and events of the security service, through the registered services.

Metrics go to ``get_service("metrics_service")`` (guide §12 names); each labelled child is
bound once and reused, so a token validation pays a couple of increments, not a registry
lookup. Events go to ``get_service("event_service")`` only when that service is available. A
missing or failing metrics/event service never breaks a security operation.

API keys and suspicious-content detection record in one place, the ``record_*`` functions
below, which the module-level functions (:func:`~crown_nexus.core.security.generate_api_key`,
:func:`~crown_nexus.core.security.verify_api_key`,
:func:`~crown_nexus.core.security.validation.detect_suspicious_content`) call through the
process-wide :func:`shared_telemetry`; the ``SecurityService`` methods call those same functions,
so every entry point records once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from typing import Any

from crown_nexus.container import current_container

__all__ = [
    "SecurityTelemetry",
    "record_api_key_created",
    "record_api_key_verification",
    "record_suspicious_content",
    "shared_telemetry",
]

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
    """Records the security metrics and publishes the security events (best effort).

    Rare operations record straight into the metrics service. Token validation, the hot path,
    is counted locally and flushed into the metrics service at most once per
    ``flush_interval`` seconds (and on :meth:`flush` / shutdown), and its duration histogram
    samples one validation in ``sample_every``: a validation then costs a dict update instead of
    two registry updates.
    """

    def __init__(
        self, flush_interval: float = 1.0, sample_every: int = 16, max_samples: int = 128
    ) -> None:
        self._service: Any = None
        self._labelnames = {name: spec[2] for name, spec in METRICS.items()}
        self._disabled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._events_available: bool | None = None
        self._pending: dict[tuple[str, tuple[str, ...]], int] = {}
        self._flush_interval = flush_interval
        self._sample_every = max(1, sample_every)
        self._sample_counter = 0
        #: sampled validation durations waiting for the next flush (at most ``max_samples``)
        self._samples: list[tuple[float, str]] = []
        self._max_samples = max_samples
        self._countdown = 1
        #: True when the next token validation should be timed (see :meth:`validation`)
        self.time_next = False
        #: successful validations per token type since the last flush (the decode hot path
        #: counts here inline, then calls :meth:`sample_validation` once in ``sample_every``)
        self.ok_counts: dict[str, int] = {}
        #: ``time.monotonic()`` after which the next validation flushes
        self.next_flush = 0.0
        self.sample_every = self._sample_every
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    # --- metrics ---------------------------------------------------------------------------

    def _metrics(self) -> Any:
        if self._service is not None or self._disabled:
            return self._service
        try:
            from crown_nexus.core.dependency_manager import get_service

            service = get_service("metrics_service")
            for name, (kind, description, labels) in METRICS.items():
                if kind == "counter":
                    service.create_counter(
                        name=name, description=description, labelnames=list(labels)
                    )
                else:
                    service.create_histogram(
                        name=name,
                        description=description,
                        labelnames=list(labels),
                        buckets=list(_DURATION_BUCKETS),
                    )
            # refusals start at 0, so denial rates and alerts have a series before the first
            for token_type in ("access", "refresh"):
                service.increment_counter(
                    "token_validations_total", 0, {"success": "false", "token_type": token_type}
                )
            self._service = service
        except Exception as exc:
            logger.debug("security metrics disabled: %s", exc)
            self._disabled = True
        return self._service

    def _labels(self, name: str, values: tuple[str, ...]) -> dict[str, str]:
        return dict(zip(self._labelnames[name], values, strict=False))

    def inc(self, name: str, *values: str, amount: int = 1) -> None:
        """Increment counter ``name`` now; label values in declaration order."""
        service = self._metrics()
        if service is None:
            return
        try:
            service.increment_counter(name, amount=amount, labels=self._labels(name, values))
        except Exception as exc:  # metrics never break security operations
            logger.debug("security metric %s failed: %s", name, exc)

    def observe(self, name: str, value: float, *values: str) -> None:
        """Observe ``value`` on histogram ``name`` now; label values in declaration order."""
        service = self._metrics()
        if service is None:
            return
        try:
            service.observe_histogram(name, value, self._labels(name, values))
        except Exception as exc:
            logger.debug("security metric %s failed: %s", name, exc)

    def count(self, name: str, *values: str) -> None:
        """Count one event of counter ``name`` locally; flushed at most every ``flush_interval``."""
        key = (name, values)
        pending = self._pending
        pending[key] = pending.get(key, 0) + 1
        if time.monotonic() >= self.next_flush:
            self.flush()

    def validation(self, key: tuple[str, tuple[str, ...]], start: float) -> None:
        """Record one token validation; ``key`` is ``("token_validations_total", (success,
        token_type))``.

        ``start`` is the ``time.perf_counter()`` at which it began when :attr:`time_next` asked
        for a timing (one validation in ``sample_every``), else ``0.0``. The count and the
        sampled durations (at most ``max_samples`` per flush) are kept locally and reach the
        metrics service at the next :meth:`flush`, at most ``flush_interval`` seconds away; a
        validation costs a dict update and a clock read.
        """
        pending = self._pending
        pending[key] = pending.get(key, 0) + 1
        if start:
            self.time_next = False
            if len(self._samples) < self._max_samples:
                self._samples.append((time.perf_counter() - start, key[1][0]))
        else:
            countdown = self._countdown - 1
            if countdown <= 0:
                countdown = self._sample_every
                self.time_next = True
            self._countdown = countdown
        if time.monotonic() >= self.next_flush:
            self.flush()

    def sample_validation(self, start: float, success: str) -> None:
        """The hot path's once-in-``sample_every`` step: keep the duration of a timed
        validation (``start`` from ``time.perf_counter()``), or ask for the next one to be timed."""
        if start:
            self.time_next = False
            if len(self._samples) < self._max_samples:
                self._samples.append((time.perf_counter() - start, success))
        else:
            self.time_next = True

    def _arm_timer(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        timer = self._timer
        if timer is not None and self._timer_loop is loop and not timer.cancelled():
            return
        self._timer_loop = loop
        self._timer = loop.call_later(self._flush_interval, self._timed_flush)

    def _timed_flush(self) -> None:
        self._timer = None
        self.flush()

    def should_sample(self) -> bool:
        """True for one call in ``sample_every`` (time the hot path only then)."""
        self._sample_counter += 1
        if self._sample_counter >= self._sample_every:
            self._sample_counter = 0
            return True
        return False

    def flush(self) -> None:
        """Move the locally counted events into the metrics service.

        A flush that moved something arms one timer for the end of the next interval, so
        counts made after it reach the metrics service within ``flush_interval`` even when no
        further validation comes (a scrape never misses the last burst).
        """
        self.next_flush = time.monotonic() + self._flush_interval
        if self._samples or self.ok_counts or self._pending:
            self._arm_timer()
        if self._samples:
            samples, self._samples = self._samples, []
            for elapsed, success in samples:
                self.observe("token_validation_duration_seconds", elapsed, success)
        if self.ok_counts:
            ok_counts, self.ok_counts = self.ok_counts, {}
            for token_type, amount in ok_counts.items():
                self.inc("token_validations_total", "true", str(token_type), amount=amount)
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        for (name, values), amount in pending.items():
            self.inc(name, *values, amount=amount)

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


class _SharedTelemetry(SecurityTelemetry):
    """Process-wide telemetry: follows the registered metrics service when it is replaced (an
    override, a re-registration) and retries one that failed, instead of keeping the first."""

    def _metrics(self) -> Any:
        try:
            from crown_nexus.core.dependency_manager import get_service

            current = get_service("metrics_service")
        except Exception as exc:
            logger.debug("security metrics unavailable: %s", exc)
            return None
        if current is not self._service:
            self._service = None
            self._disabled = False
        return super()._metrics()


def shared_telemetry() -> SecurityTelemetry:
    """The current app's telemetry the module-level security functions record through (kept in
    its container; the default container's outside an app)."""
    state = current_container().state
    found: SecurityTelemetry | None = state.get("security.telemetry")
    if found is None:
        found = state.setdefault("security.telemetry", _SharedTelemetry())
    return found


def record_api_key_created(user_id: str, key_id: str, name: str, permissions: list[str]) -> None:
    """Count ``api_keys_created_total`` and publish ``security.api_key_created`` (never the key)."""
    telemetry = shared_telemetry()
    telemetry.inc("api_keys_created_total")
    telemetry.publish_soon(
        "security.api_key_created",
        {"user_id": user_id, "key_id": key_id, "name": name, "permissions": list(permissions)},
    )


def record_api_key_verification(started: float, ok: bool) -> None:
    """Observe ``api_key_verification_duration_seconds`` since ``started`` (``perf_counter``)."""
    shared_telemetry().observe(
        "api_key_verification_duration_seconds",
        time.perf_counter() - started,
        "true" if ok else "false",
    )


def record_suspicious_content(categories: list[str]) -> None:
    """Count one ``suspicious_content_detections_total`` per attack class found."""
    telemetry = shared_telemetry()
    for category in categories:
        telemetry.inc("suspicious_content_detections_total", category)
