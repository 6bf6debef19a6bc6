"""Metrics and events of the permission system (guide §11), recorded wherever a check runs.

Every check — :class:`~crown_nexus.core.permissions.checker.PermissionChecker`, the
:class:`~crown_nexus.core.permissions.service.PermissionService` methods, the decorators and the
utility functions — goes through the checker, which records its metrics here, once per check.

The metrics and event services are found in the service registry. When a service is not
registered yet because its module was never imported (an application using the permission
system outside ``setup_app``), the registry imports that module on first use, which registers
it; so importing the permission system is enough. An application that registered its own
``metrics_service`` / ``event_service`` keeps it. Recording never raises.

A check is counted on its hot path in a local queue (one ``deque.append``: exact under threads)
and handed to the metrics service in batches, as the feature flags' telemetry does: at most
:data:`FLUSH_AFTER_SECONDS` after the first unflushed check (an event-loop timer, or a thread
timer outside a loop), every :data:`FLUSH_EVERY` checks, at exit, and before the metrics
service answers a reader or renders ``/metrics`` (:func:`flush` is one of its flush hooks), so
counts and durations are complete whenever they are read (when the loop closes before its timer
fires, the next read, scrape, :data:`FLUSH_EVERY`-th check or exit hands them over). Each check's duration is observed,
none is sampled.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from collections import deque
from typing import Any

from crown_nexus.core.dependency_manager import get_registry as _services
from crown_nexus.logging import get_logger

__all__ = [
    "FLUSH_AFTER_SECONDS",
    "FLUSH_EVERY",
    "flush",
    "metrics_service",
    "record_check",
    "record_value",
    "service",
]

logger = get_logger("crown_nexus.core.permissions")


def service(name: str) -> Any:
    """The service ``name`` from the registry, or ``None``.

    A shipped service (``metrics_service``, ``event_service``...) is built on first use, its
    module imported by the registry (``BUILTIN_PROVIDERS``) when the application never did.
    """
    try:
        return _services().get(name)
    except Exception as exc:  # not available: the check goes on without it
        logger.debug("Service unavailable", service=name, error=repr(exc))
        return None


def metrics_service() -> Any:
    """The metrics service (see :func:`service`), or ``None``."""
    return service("metrics_service")


#: check kind → (counter, histogram, label names) -- the counter adds ``granted``
_NAMES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "permission": ("permission_checks_total", "permission_check_duration_seconds", ("permission",)),
    "multiple_permissions": (
        "multiple_permissions_checks_total",
        "multiple_permissions_check_duration_seconds",
        ("require_all",),
    ),
    "object_permission": (
        "object_permission_checks_total",
        "object_permission_check_duration_seconds",
        ("object_type", "permission"),
    ),
}

FLUSH_EVERY = 1024
FLUSH_AFTER_SECONDS = 1.0

#: ``(metrics service, prefix, label values, granted, duration)`` of the checks not handed
#: over yet (each goes to the service that was current when it ran)
_pending: deque[tuple[Any, str, tuple[str, ...], bool, float]] = deque()
_timer_armed = False
_hooked = False
_flush_lock = threading.RLock()
_perf_counter = time.perf_counter


def record_check(prefix: str, started: float, values: tuple[str, ...], granted: bool) -> None:
    """Count one check in ``<prefix>_checks_total`` (its labels, ``values`` in the order of
    ``_NAMES``, plus ``granted``) and time it since ``started`` in
    ``<prefix>_check_duration_seconds`` (its labels); handed over in a batch (module docstring)."""
    metrics = metrics_service()
    if metrics is None:
        return
    _pending.append((metrics, prefix, values, granted, _perf_counter() - started))
    if len(_pending) >= FLUSH_EVERY:
        flush()
    elif not _timer_armed:
        _arm_timer(metrics)


def _arm_timer(metrics: Any) -> None:
    """Flush within :data:`FLUSH_AFTER_SECONDS`; make the metrics service flush before reads."""
    global _timer_armed
    _timer_armed = True
    hook_metrics(metrics)
    try:
        asyncio.get_running_loop().call_later(FLUSH_AFTER_SECONDS, flush)
    except RuntimeError:  # no loop in this thread: a daemon thread timer
        timer = threading.Timer(FLUSH_AFTER_SECONDS, flush)
        timer.daemon = True
        timer.start()


def flush() -> None:
    """Hand every pending check to the metrics service now (never raises)."""
    global _timer_armed
    _timer_armed = False
    if not _pending:
        return
    batch: dict[tuple[Any, str, tuple[str, ...]], list[Any]] = {}
    popleft = _pending.popleft
    while True:
        try:
            metrics, prefix, values, granted, duration = popleft()
        except IndexError:
            break
        key = (metrics, prefix, values)
        entry = batch.get(key)
        if entry is None:
            entry = batch[key] = [0, 0, []]
        entry[0 if granted else 1] += 1
        entry[2].append(duration)
    with _flush_lock:  # one hand-over at a time (a timer thread and a reader may race)
        _hand_over(batch)


def _hand_over(batch: dict[tuple[Any, str, tuple[str, ...]], list[Any]]) -> None:
    for (metrics, prefix, values), (granted, denied, durations) in batch.items():
        try:
            counter, histogram, names = _NAMES[prefix]
            labels = dict(zip(names, values, strict=True))
            observe_many = getattr(metrics, "observe_many", None)
            if observe_many is not None:
                observe_many(histogram, durations, labels)
            else:
                for duration in durations:
                    metrics.observe_histogram(histogram, duration, labels)
            if granted:
                metrics.increment_counter(counter, granted, {**labels, "granted": "True"})
            if denied:
                metrics.increment_counter(counter, denied, {**labels, "granted": "False"})
        except Exception as exc:  # metrics never break an authorization decision
            logger.debug("Could not record permission metrics", error=repr(exc))


def hook_metrics(metrics: Any) -> None:
    """Make the metrics services flush the pending checks before they are read (the hook is
    process-wide: registered once, through any service that supports it)."""
    global _hooked
    if _hooked or metrics is None:
        return
    add = getattr(metrics, "add_flush_hook", None)
    if add is not None:
        add(flush)
        _hooked = True


atexit.register(flush)


def record_value(kind: str, name: str, value: float = 1.0) -> None:
    """Increment counter ``name`` (``kind="counter"``) or observe ``value`` in histogram ``name``."""
    metrics = metrics_service()
    if metrics is None:
        return
    try:
        if kind == "counter":
            metrics.increment_counter(name)
        else:
            metrics.observe_histogram(name, value)
    except Exception as exc:
        logger.debug("Could not record permission metrics", error=repr(exc))
