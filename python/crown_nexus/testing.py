"""Test helpers that ship with crown-nexus (STYLE habit 10).

``override_service`` / ``override_services`` swap registered services; ``capture_errors`` collects
reported errors.

``capture_logs()`` collects log events as dicts (structlog.testing based); ``freeze_time()``
pins the clocks of logging and metrics to a :class:`FrozenClock` you advance by hand.

``app_client(app)`` runs an app's lifespan (start-up and shutdown) around an ``httpx.AsyncClient``
that talks to it in process, so HTTP-level tests see the app exactly as a server would serve it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import Any, cast

__all__ = [
    "FrozenClock",
    "app_client",
    "capture_errors",
    "capture_logs",
    "freeze_time",
    "override_service",
    "override_services",
]


@asynccontextmanager
async def app_client(app: Any, base_url: str = "http://testserver", **kwargs: Any) -> AsyncIterator[Any]:
    """Start ``app`` (its lifespan), yield an ``httpx.AsyncClient`` bound to it, then shut it down.

    ``httpx`` is a test dependency; it is imported here, not at package import.
    """
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, **kwargs) as client:
            yield client


@contextmanager
def override_service(name: str, obj: Any) -> Iterator[Any]:
    """Within the block, ``get_service(name, ...)`` returns ``obj``; restored afterwards."""
    from crown_nexus.core.dependency_manager import override_service as _override

    with _override(name, obj) as value:
        yield value


@contextmanager
def override_services(overrides: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Override several services at once (``{name: obj}``); all restored afterwards."""
    from crown_nexus.core.dependency_manager import override_service as _override

    with ExitStack() as stack:
        for name, obj in overrides.items():
            stack.enter_context(_override(name, obj))
        yield overrides


@contextmanager
def capture_errors(capacity: int = 1000) -> Iterator[Any]:
    """Collect every error reported in the block in an ``InMemoryReporter`` (yielded).

    Read them with ``reporter.recent()``; the reporter is unregistered on exit.
    """
    from crown_nexus.core.error import InMemoryReporter, register_reporter, unregister_reporter

    reporter = InMemoryReporter(capacity)
    register_reporter(reporter)
    try:
        yield reporter
    finally:
        unregister_reporter(reporter)


@contextmanager
def capture_logs(level: int | str = "debug") -> Iterator[list[dict[str, Any]]]:
    """Collect every log event of the block (at ``level`` or above) as a list of dicts.

    Each entry is the event as crown-nexus would render it (``timestamp``, ``level``, ``logger``,
    ``event``, ``request_id``, ``user_id``, fields, caller location, structured ``exception``,
    secrets redacted), plus structlog's ``log_level``. Nothing is written to the sink meanwhile.
    Built on ``structlog.testing.capture_logs``; not thread-safe (as structlog's).
    """
    import structlog.testing

    from crown_nexus.logging import config as _config
    from crown_nexus.logging.processors import EventPreparer

    if not _config.is_configured():
        _config.configure_logging()
    state = _config._STATE
    old_level = state.min_level
    state.min_level = _config._level_number(level)
    try:
        preparer: Any = EventPreparer(state.redactor)  # a structlog processor over plain dicts
        with structlog.testing.capture_logs(processors=[preparer]) as entries:
            yield cast(list[dict[str, Any]], entries)
    finally:
        state.min_level = old_level


class FrozenClock:
    """A clock that stands still until :meth:`advance` moves it.

    ``time()`` is wall-clock seconds since the epoch (``start``, default 2024-01-01T00:00:00Z),
    ``monotonic()`` seconds since the clock was made (starting at ``1000.0``), ``now()`` an aware
    UTC ``datetime``.
    """

    def __init__(self, start: float | Any = 1704067200.0) -> None:
        if hasattr(start, "timestamp"):
            start = start.timestamp()
        self._wall = float(start)
        self._mono = 1000.0

    def time(self) -> float:
        """Frozen wall-clock time (epoch seconds)."""
        return self._wall

    def time_ns(self) -> int:
        """Frozen wall-clock time (epoch nanoseconds)."""
        return round(self._wall * 1_000_000_000)

    def monotonic(self) -> float:
        """Frozen monotonic time (seconds)."""
        return self._mono

    def now(self) -> Any:
        """Frozen time as an aware UTC ``datetime``."""
        from datetime import UTC, datetime

        return datetime.fromtimestamp(self._wall, UTC)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (must be ≥ 0)."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._wall += seconds
        self._mono += seconds


#: clock hook points: (module, attribute, which clock)
_CLOCK_HOOKS: list[tuple[str, str, str]] = [
    ("crown_nexus.logging.processors", "_wall_ns", "time_ns"),
    ("crown_nexus.core.metrics.recording", "_monotonic", "monotonic"),
]


@contextmanager
def freeze_time(
    clock: FrozenClock | None = None, *, hooks: list[tuple[str, str, str]] | None = None
) -> Iterator[FrozenClock]:
    """Within the block, log timestamps and metric windows read ``clock`` (yielded).

    ``hooks`` adds ``(module, attribute, "time" | "time_ns" | "monotonic")`` hook points of
    other modules.
    asyncio's own clock is never touched.
    """
    import importlib

    clock = clock or FrozenClock()
    saved: list[tuple[Any, str, Any]] = []
    try:
        for module_name, attr, kind in [*_CLOCK_HOOKS, *(hooks or [])]:
            module = importlib.import_module(module_name)
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, getattr(clock, kind))
        yield clock
    finally:
        for module, attr, original in reversed(saved):
            setattr(module, attr, original)
