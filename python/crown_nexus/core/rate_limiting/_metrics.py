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
  like the check duration: each middleware's first request, then one in N)
* ``rate_limiting_backend_errors_total{backend}`` / ``rate_limiting_backend_recoveries_total``

Allowed, untimed checks -- nearly all of them -- are batched: :func:`count_allowed` adds one to a
local tally, written to ``rate_limiting_checks_total`` every :data:`FLUSH_EVERY` checks, at the
latest :data:`FLUSH_AFTER_SECONDS` after the first unwritten one (an event-loop timer), and by
:func:`flush` (call it before reading the counter directly; the service's ``close`` does).
Refused checks are written at once.

The metrics service is looked up once (``get_service("metrics_service")``); metrics are created
on first use. When the metrics system is unavailable nothing is recorded and checks go on.

The tally, its timer and the lookup state belong to the current app's container, so two apps in
one process count into their own metrics service.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable
from typing import Any

from crown_nexus.container import current_container
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
    "declare_rules",
    "flush",
    "observe_check_duration",
    "record_check",
    "record_request",
    "request_cell",
    "reset",
    "tally_cell",
    "tally_noted",
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
DURATION_SAMPLE_EVERY = 64

#: when the metrics service could not be found, look again after this many seconds
RETRY_LOOKUP_SECONDS = 30.0

#: allowed checks are written to the counter in batches of at most this many
FLUSH_EVERY = 256
#: ... and at most this long after the first unwritten one
FLUSH_AFTER_SECONDS = 1.0

class _Tally:
    """One app's allowed checks not yet written — one ``[count]`` cell per (backend, algorithm);
    callers keep the cell and bump it in place (see :func:`tally_cell`) — its admitted requests
    not yet written (one cell per path label, see :func:`request_cell`), its flush timer, and
    the metrics lookup state (retry time, services whose metrics exist)."""

    __slots__ = ("__weakref__", "cells", "created", "requests", "retry_at", "timer")

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], list[int]] = {}
        self.requests: dict[str, list[int]] = {}
        self.timer: Any = None
        self.retry_at = 0.0
        self.created: set[int] = set()
        _TALLIES.add(self)


#: every app's tally, for the metrics flush hook (:func:`_flush_all`)
_TALLIES: weakref.WeakSet[_Tally] = weakref.WeakSet()


def _tally() -> _Tally:
    """The current app's tally (its container's)."""
    state = current_container().state
    found: _Tally | None = state.get("rate_limiting.tally")
    if found is None:
        found = state.setdefault("rate_limiting.tally", _Tally())
    return found


def reset() -> None:
    """Forget which metrics were created and any failed lookup (tests swap the service)."""
    tally = _tally()
    tally.retry_at = 0.0
    tally.created = set()
    for cell in tally.cells.values():
        cell[0] = 0
    _cancel_timer(tally)


def _cancel_timer(tally: _Tally) -> None:
    handle = tally.timer
    tally.timer = None
    if handle is not None:
        handle.cancel()


def tally_cell(backend: str, algorithm: str) -> list[int]:
    """The ``[count]`` cell of allowed checks not yet written for ``(backend, algorithm)``.

    A hot path keeps the cell and, per allowed check, does ``c = cell[0] + 1; cell[0] = c`` and
    calls :func:`tally_noted` when ``c == 1 or c >= FLUSH_EVERY`` (see :func:`count_allowed`).
    """
    key = (backend, algorithm)
    cells = _tally().cells
    cell = cells.get(key)
    if cell is None:
        cell = cells.setdefault(key, [0])
    return cell


def request_cell(label: str) -> list[int]:
    """The ``[count]`` cell of admitted requests not yet written to
    ``rate_limiting_requests_total{path=label, result="allowed"}`` (the middleware's rule
    patterns: a bounded set), bumped in place like :func:`tally_cell`'s."""
    cells = _tally().requests
    cell = cells.get(label)
    if cell is None:
        if len(cells) >= 256:
            flush()
            cells.clear()
        cell = cells.setdefault(label, [0])
    return cell


def tally_noted(count: int) -> None:
    """A cell reached ``count``: write everything at ``FLUSH_EVERY``; start the timer at 1
    (and make the metrics services flush the tallies before every read)."""
    if count >= FLUSH_EVERY:
        flush()
        return
    tally = _tally()
    if tally.timer is None:
        try:  # the callback runs in this context: the same app's tally and metrics
            tally.timer = asyncio.get_running_loop().call_later(FLUSH_AFTER_SECONDS, flush)
        except RuntimeError:  # no running loop (a synchronous caller): write now
            flush()
            return
        add_hook = getattr(_service(), "add_flush_hook", None)
        if add_hook is not None:  # process-wide, once per hook object
            add_hook(_flush_all)


def _flush_all() -> None:
    """The metrics flush hook: write every app's pending admitted requests (the checks keep
    their batches: every ``FLUSH_EVERY``, the timer, :func:`flush`)."""
    for tally in list(_TALLIES):
        _flush(tally, checks=False)


def count_allowed(backend: str, algorithm: str) -> None:
    """Count one allowed check in the local tally (see the module docs); O(1), no I/O."""
    cell = tally_cell(backend, algorithm)
    c = cell[0] + 1
    cell[0] = c
    if c == 1 or c >= FLUSH_EVERY:
        tally_noted(c)


def flush() -> None:
    """Write the current app's tally now: allowed checks to ``rate_limiting_checks_total``,
    admitted requests to ``rate_limiting_requests_total``."""
    _flush(_tally())


def _flush(tally: _Tally, checks: bool = True) -> None:
    cells, requests = tally.cells, tally.requests
    if checks:
        _cancel_timer(tally)
    pending = [(key, cell[0]) for key, cell in cells.items() if cell[0]] if checks else []
    admitted = [(label, cell[0]) for label, cell in requests.items() if cell[0]]
    if not pending and not admitted:
        return
    for key, _ in pending:
        cells[key][0] = 0
    for label, _ in admitted:
        requests[label][0] = 0
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
        for label, n in admitted:
            svc.increment_counter(
                "rate_limiting_requests_total", n, {"path": label, "result": "allowed"}
            )
    except Exception as exc:  # metrics never break a check
        logger.debug("rate limit metrics not recorded", error=str(exc))


def _service() -> Any:
    """The registry's current metrics service (it changes after a shutdown), or ``None``."""
    tally = _tally()
    if tally.retry_at:
        if time.monotonic() < tally.retry_at:
            return None
        tally.retry_at = 0.0
    try:
        svc = get_service("metrics_service")
    except Exception:
        tally.retry_at = time.monotonic() + RETRY_LOOKUP_SECONDS
        return None
    if id(svc) not in tally.created:
        _ensure_all(svc, tally.created)
    return svc


def _ensure_all(svc: Any, created: set[int]) -> None:
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
_request_labels: dict[tuple[str, str], dict[str, str]] = {}


def record_check(
    rule: RateLimitRule, result: RateLimitResult, duration: float | None, backend: str
) -> None:
    """Count one check (and its duration when timed); a refusal also counts
    ``rate_limit_exceeded_total``. An allowed check goes to the batched tally."""
    allowed = result.allowed
    algorithm = rule.hot_params[0].value
    if allowed:
        count_allowed(backend, algorithm)
        if duration is None:
            return
    svc = _service()
    if svc is None:
        return
    labels = _check_labels.get((backend, algorithm, allowed))
    if labels is None:
        labels = _check_labels.setdefault(
            (backend, algorithm, allowed),
            {"backend": backend, "algorithm": algorithm,
             "result": "allowed" if allowed else "limited"},
        )
    try:
        if not allowed:
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


#: backend -> its ``{"backend": ...}`` label set of the check-duration histogram
_duration_labels: dict[str, dict[str, str]] = {}


def observe_check_duration(backend: str, duration: float) -> None:
    """Observe one sampled check's duration in ``rate_limiting_check_duration_seconds`` (the
    check itself is already counted: the allowed tally or :func:`record_check`)."""
    svc = _service()
    if svc is None:
        return
    labels = _duration_labels.get(backend)
    if labels is None:
        labels = _duration_labels.setdefault(backend, {"backend": backend})
    try:
        svc.observe_histogram("rate_limiting_check_duration_seconds", duration, labels)
    except Exception as exc:  # metrics never break a check
        logger.debug("rate limit metrics not recorded", error=str(exc))


def declare_rules(rules: Iterable[RateLimitRule]) -> None:
    """Start ``rate_limit_exceeded_total`` of every rule at 0, so refusal rates and alerts have
    a series before the first refusal."""
    svc = _service()
    if svc is None:
        return
    for rule in rules:
        labels = {"path": rule.path_pattern or "*", "strategy": rule.strategy.value}
        try:
            svc.increment_counter("rate_limit_exceeded_total", 0, labels)
        except Exception as exc:
            logger.debug("rate limit metrics not recorded", error=str(exc))


def record_request(path_label: str, result: str, duration: float | None) -> None:
    """Count one request seen by the middleware (and the time spent deciding when timed)."""
    svc = _service()
    if svc is None:
        return
    labels = _request_labels.get((path_label, result))
    if labels is None:
        labels = {"path": path_label, "result": result}
        if len(_request_labels) < _MAX_CACHED_LABELS:
            _request_labels[(path_label, result)] = labels
    try:
        svc.increment_counter("rate_limiting_requests_total", 1, labels)
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
