"""Rate-limiting metrics, recorded through ``crown_nexus.core.metrics`` (guide §8 "Metrics").

* ``rate_limiting_checks_total{backend, algorithm, result}`` -- every check (``allowed``/``limited``)
* ``rate_limiting_check_duration_seconds{backend}`` -- time of one check
* ``rate_limit_exceeded_total{path, strategy}`` -- refused checks; ``path`` is the rule's
  ``path_pattern`` (``*`` for rules without one), so the label set stays bounded
* ``rate_limiting_requests_total{path, result}`` -- requests seen by the middleware
  (``allowed``, ``limited``, ``unavailable``)
* ``rate_limiting_middleware_duration_seconds`` -- time the middleware spends deciding
* ``rate_limiting_backend_errors_total{backend}`` / ``rate_limiting_backend_recoveries_total``

The metrics service is looked up once (``get_service("metrics_service")``); metrics are created
on first use. When the metrics system is unavailable nothing is recorded and checks go on.
"""

from __future__ import annotations

import threading
from typing import Any

from crown_nexus.core.rate_limiting.models import RateLimitResult, RateLimitRule

__all__ = [
    "backend_error",
    "backend_recovered",
    "record_check",
    "record_request",
    "reset",
]

_DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

_DEFINITIONS: dict[str, tuple[str, str, list[str]]] = {
    "rate_limiting_checks_total": ("counter", "Rate limit checks", ["backend", "algorithm", "result"]),
    "rate_limiting_check_duration_seconds": (
        "histogram", "Time of one rate limit check", ["backend"],
    ),
    "rate_limit_exceeded_total": ("counter", "Requests refused by a rate limit", ["path", "strategy"]),
    "rate_limiting_requests_total": (
        "counter", "Requests seen by the rate limit middleware", ["path", "result"],
    ),
    "rate_limiting_middleware_duration_seconds": (
        "histogram", "Time the rate limit middleware spends deciding", [],
    ),
    "rate_limiting_backend_errors_total": (
        "counter", "Rate limit backend failures", ["backend"],
    ),
    "rate_limiting_backend_recoveries_total": (
        "counter", "Rate limit backend recoveries after a failure", ["backend"],
    ),
}

_lock = threading.Lock()
_state: dict[str, Any] = {"service": None, "resolved": False, "created": set()}


def reset() -> None:
    """Forget the cached metrics service (tests swap it)."""
    with _lock:
        _state["service"] = None
        _state["resolved"] = False
        _state["created"] = set()


def _service() -> Any:
    if _state["resolved"]:
        return _state["service"]
    with _lock:
        if not _state["resolved"]:
            svc = None
            try:
                from crown_nexus.core.dependency_manager import get_service

                svc = get_service("metrics_service")
            except Exception:
                svc = None
            _state["service"] = svc
            _state["resolved"] = svc is not None
        return _state["service"]


def _ensure(svc: Any, name: str) -> None:
    created: set[str] = _state["created"]
    if name in created:
        return
    kind, description, labels = _DEFINITIONS[name]
    try:
        if kind == "counter":
            svc.create_counter(name=name, description=description, labelnames=labels)
        else:
            svc.create_histogram(
                name=name, description=description, labelnames=labels,
                buckets=list(_DURATION_BUCKETS),
            )
    except Exception:  # already created elsewhere (same definition): use that one
        created.add(name)
        return
    created.add(name)


def _inc(name: str, labels: dict[str, str]) -> None:
    svc = _service()
    if svc is None:
        return
    _ensure(svc, name)
    try:
        svc.increment_counter(name, amount=1, labels=labels)
    except Exception:  # metrics never break a request
        return


def _observe(name: str, value: float, labels: dict[str, str]) -> None:
    svc = _service()
    if svc is None:
        return
    _ensure(svc, name)
    try:
        svc.observe_histogram(name, value=value, labels=labels)
    except Exception:
        return


def record_check(rule: RateLimitRule, result: RateLimitResult, duration: float, backend: str) -> None:
    """Count one check and its duration; a refusal also counts ``rate_limit_exceeded_total``."""
    outcome = "allowed" if result.allowed else "limited"
    _inc(
        "rate_limiting_checks_total",
        {"backend": backend, "algorithm": rule.effective_algorithm.value, "result": outcome},
    )
    _observe("rate_limiting_check_duration_seconds", duration, {"backend": backend})
    if not result.allowed:
        _inc(
            "rate_limit_exceeded_total",
            {"path": rule.path_pattern or "*", "strategy": rule.strategy.value},
        )


def record_request(path_label: str, result: str, duration: float) -> None:
    """Count one request seen by the middleware and the time spent deciding."""
    _inc("rate_limiting_requests_total", {"path": path_label, "result": result})
    _observe("rate_limiting_middleware_duration_seconds", duration, {})


def backend_error(backend: str) -> None:
    """Count one failed backend call."""
    _inc("rate_limiting_backend_errors_total", {"backend": backend})


def backend_recovered(backend: str) -> None:
    """Count one recovery of the backend."""
    _inc("rate_limiting_backend_recoveries_total", {"backend": backend})
