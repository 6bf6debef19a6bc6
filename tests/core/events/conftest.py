"""Fixtures of the event tests: a fresh EventService on the memory backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from crown_nexus.core.events import EventBackendType, EventConfig, EventService


@pytest.fixture
async def service() -> AsyncIterator[EventService]:
    """A fresh, initialized memory-backend EventService, shut down after the test."""
    svc = EventService(EventConfig(handler_timeout=5.0, shutdown_timeout=2.0))
    await svc.initialize(EventBackendType.MEMORY)
    try:
        yield svc
    finally:
        await svc.shutdown()
