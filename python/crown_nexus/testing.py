"""Test helpers that ship with crown-nexus (STYLE habit 10).

``override_service`` / ``override_services`` swap registered services; ``capture_errors`` collects
reported errors.

``app_client(app)`` runs an app's lifespan (start-up and shutdown) around an ``httpx.AsyncClient``
that talks to it in process, so HTTP-level tests see the app exactly as a server would serve it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import Any

__all__ = ["app_client", "capture_errors", "override_service", "override_services"]


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
