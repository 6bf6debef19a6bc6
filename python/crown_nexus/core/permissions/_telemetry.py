"""Metrics and events of the permission system (guide §11), recorded wherever a check runs.

Every check — :class:`~crown_nexus.core.permissions.checker.PermissionChecker`, the
:class:`~crown_nexus.core.permissions.service.PermissionService` methods, the decorators and the
utility functions — goes through the checker, which records its metrics here, once per check.

The metrics and event services are found in the service registry. When a service is not
registered yet because its module was never imported (an application using the permission
system outside ``setup_app``), the registry imports that module on first use, which registers
it; so importing the permission system is enough. An application that registered its own
``metrics_service`` / ``event_service`` keeps it. Recording never raises.
"""

from __future__ import annotations

import time
from typing import Any

from crown_nexus.core.dependency_manager import get_registry as _services
from crown_nexus.logging import get_logger

__all__ = ["metrics_service", "record_check", "record_value", "service"]

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


#: check kind → (counter, histogram) names
_NAMES = {
    prefix: (f"{prefix}_checks_total", f"{prefix}_check_duration_seconds")
    for prefix in ("permission", "multiple_permissions", "object_permission")
}


def record_check(prefix: str, started: float, labels: dict[str, str], granted: bool) -> None:
    """Count one check in ``<prefix>_checks_total`` (``labels`` + ``granted``) and time it since
    ``started`` in ``<prefix>_check_duration_seconds`` (``labels``)."""
    metrics = metrics_service()
    if metrics is None:
        return
    counter, histogram = _NAMES[prefix]
    try:
        metrics.observe_histogram(histogram, time.perf_counter() - started, labels)
        metrics.increment_counter(counter, 1, {**labels, "granted": "True" if granted else "False"})
    except Exception as exc:  # metrics never break an authorization decision
        logger.debug("Could not record permission metrics", error=repr(exc))


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
