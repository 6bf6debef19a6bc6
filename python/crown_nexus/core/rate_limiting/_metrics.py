"""Rate-limiting metrics, recorded through ``crown_nexus.core.metrics`` (guide §8 "Metrics").

* ``rate_limiting_checks_total{backend, algorithm, result}`` -- every check (``allowed``/``limited``)
* ``rate_limiting_check_duration_seconds{backend}`` -- time of one check, sampled: the first
  check and then one in :data:`DURATION_SAMPLE_EVERY` (a histogram observation costs more than
  an in-memory check; counts come from the counters, which see every check)
* ``rate_limit_exceeded_total{path, strategy}`` -- refused checks; ``path`` is the rule's
  ``path_pattern`` (``*`` for rules without one), so the label set stays bounded
* ``rate_limiting_requests_total{path, result}`` -- requests seen by the middleware
  (``allowed``, ``limited``, ``unavailable``)
* ``rate_limiting_middleware_duration_seconds`` -- time the middleware spends deciding (sampled
  like the check duration)
* ``rate_limiting_backend_errors_total{backend}`` / ``rate_limiting_backend_recoveries_total``

Allowed, untimed checks -- nearly all of them -- are batched: :func:`count_allowed` adds one to a
local tally, written to ``rate_limiting_checks_total`` every :data:`FLUSH_EVERY` checks, at the
latest :data:`FLUSH_AFTER_SECONDS` after the first unwritten one (an event-loop timer), on any
refused or timed check, and by :func:`flush` (call it before reading the counter directly).

The metrics service is looked up once (``get_service("metrics_service")``); metrics are created
on first use. When the metrics system is unavailable nothing is recorded and checks go on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.rate_limiting.models import RateLimitResult, RateLimitRule
from crown_nexus.logging import get_logger

__all__ = [
    "DURATION_SAMPLE_EVERY",
    "FLUSH_AFTER_SECONDS",
    "FLUSH_EVERY",
    "backend_error",
    "backend_recovered",
    "count_allowed",
    "flush",
    "record_check",
    "record_request",
    "reset",
    "should_time",
]

logger = get_logger("crown_nexus.core.rate_limiting")

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

#: one check (and one middleware request) in this many has its duration observed
DURATION_SAMPLE_EVERY = 16

#: when the metrics service could not be found, look again after this many seconds
RETRY_LOOKUP_SECONDS = 30.0

#: allowed checks are written to the counter in batches of at most this many
FLUSH_EVERY = 256
#: ... and at most this long after the first unwritten one
FLUSH_AFTER_SECONDS = 1.0

_state: dict[str, Any] = {"retry_at": 0.0, "created": set()}
#: allowed checks not yet written, per (backend, algorithm)
_pending: dict[tuple[str, str], int] = {}
_pending_total = [0]
_timer: list[Any] = [None]
_samples = {"check": 0, "request": 0}


def should_time(kind: str) -> bool:
    """True when this check/request's duration is to be observed (the first, then 1 in N)."""
    n = _samples[kind]
    _samples[kind] = n + 1 if n + 1 < DURATION_SAMPLE_EVERY else 0
    return n == 0


def reset() -> None:
    """Forget which metrics were created and any failed lookup (tests swap the service)."""
    _state["retry_at"] = 0.0
    _state["created"] = set()
    _samples["check"] = _samples["request"] = 0
    _pending.clear()
    _pending_total[0] = 0
    _cancel_timer()


def _cancel_timer() -> None:
    handle = _timer[0]
    _timer[0] = None
    if handle is not None:
        handle.cancel()


def count_allowed(backend: str, algorithm: str) -> None:
    """Count one allowed check in the local tally (see the module docs); O(1), no I/O."""
    key = (backend, algorithm)
    _pending[key] = _pending.get(key, 0) + 1
    n = _pending_total[0] + 1
    _pending_total[0] = n
    if n >= FLUSH_EVERY:
        flush()
    elif n == 1:
        try:
            _timer[0] = asyncio.get_running_loop().call_later(FLUSH_AFTER_SECONDS, flush)
        except RuntimeError:  # no running loop (a synchronous caller): write now
            flush()


def flush() -> None:
    """Write the tally of allowed checks to ``rate_limiting_checks_total`` now."""
    _cancel_timer()
    if not _pending_total[0]:
        return
    pending = list(_pending.items())
    _pending.clear()
    _pending_total[0] = 0
    svc = _service()
    if svc is None:
        return
    try:
        for (backend, algorithm), n in pending:
            labels = _check_labels.get((backend, algorithm, True))
            if labels is None:
                labels = _check_labels.setdefault(
                    (backend, algorithm, True),
                    {"backend": backend, "algorithm": algorithm, "result": "allowed"},
                )
            svc.increment_counter("rate_limiting_checks_total", n, labels)
    except Exception as exc:  # metrics never break a check
        logger.debug("rate limit metrics not recorded", error=str(exc))


def _service() -> Any:
    """The registry's current metrics service (it changes after a shutdown), or ``None``."""
    if _state["retry_at"]:
        if time.monotonic() < _state["retry_at"]:
            return None
        _state["retry_at"] = 0.0
    try:
        svc = get_service("metrics_service")
    except Exception:
        _state["retry_at"] = time.monotonic() + RETRY_LOOKUP_SECONDS
        return None
    if id(svc) not in _state["created"]:
        _ensure_all(svc)
    return svc


def _ensure_all(svc: Any) -> None:
    created: set[int] = _state["created"]
    if id(svc) in created:
        return
    for name, (kind, description, labels) in _DEFINITIONS.items():
        try:
            if kind == "counter":
                svc.create_counter(name=name, description=description, labelnames=labels)
            else:
                svc.create_histogram(
                    name=name, description=description, labelnames=labels,
                    buckets=list(_DURATION_BUCKETS),
                )
        except Exception as exc:  # created elsewhere with another shape: record into that one
            logger.debug("rate limit metric not created", metric=name, error=str(exc))
    created.add(id(svc))


#: label dicts reused per (backend, algorithm, allowed) and per (path, strategy): the sets are
#: small and fixed, and building them per check costs more than the increment
_MAX_CACHED_LABELS = 256
_check_labels: dict[tuple[str, str, bool], dict[str, str]] = {}
_exceeded_labels: dict[tuple[str, str], dict[str, str]] = {}


def record_check(
    rule: RateLimitRule, result: RateLimitResult, duration: float | None, backend: str
) -> None:
    """Count one check (and its duration when timed); a refusal also counts
    ``rate_limit_exceeded_total``. Writes the batched tally too."""
    if _pending_total[0]:
        flush()
    svc = _service()
    if svc is None:
        return
    allowed = result.allowed
    algorithm = rule.hot_params[0].value
    labels = _check_labels.get((backend, algorithm, allowed))
    if labels is None:
        labels = _check_labels.setdefault(
            (backend, algorithm, allowed),
            {"backend": backend, "algorithm": algorithm,
             "result": "allowed" if allowed else "limited"},
        )
    try:
        svc.increment_counter("rate_limiting_checks_total", 1, labels)
        if duration is not None:
            svc.observe_histogram(
                "rate_limiting_check_duration_seconds", duration, {"backend": backend}
            )
        if not allowed:
            key = (rule.path_pattern or "*", rule.strategy.value)
            exceeded = _exceeded_labels.get(key)
            if exceeded is None:
                exceeded = {"path": key[0], "strategy": key[1]}
                if len(_exceeded_labels) < _MAX_CACHED_LABELS:
                    _exceeded_labels[key] = exceeded
            svc.increment_counter("rate_limit_exceeded_total", 1, exceeded)
    except Exception as exc:  # metrics never break a check
        logger.debug("rate limit metrics not recorded", error=str(exc))


def record_request(path_label: str, result: str, duration: float | None) -> None:
    """Count one request seen by the middleware (and the time spent deciding when timed)."""
    svc = _service()
    if svc is None:
        return
    try:
        svc.increment_counter("rate_limiting_requests_total", 1, {"path": path_label, "result": result})
        if duration is not None:
            svc.observe_histogram("rate_limiting_middleware_duration_seconds", duration, None)
    except Exception as exc:
        logger.debug("rate limit metrics not recorded", error=str(exc))


def _inc(name: str, labels: dict[str, str]) -> None:
    svc = _service()
    if svc is None:
        return
    try:
        svc.increment_counter(name, 1, labels)
    except Exception as exc:
        logger.debug("rate limit metrics not recorded", error=str(exc))


def backend_error(backend: str) -> None:
    """Count one failed backend call."""
    _inc("rate_limiting_backend_errors_total", {"backend": backend})


def backend_recovered(backend: str) -> None:
    """Count one recovery of the backend."""
    _inc("rate_limiting_backend_recoveries_total", {"backend": backend})
