"""Run every permission-system test against every implementation of the bit checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crown_nexus.core.permissions import reset_registry
from tests.conftest import implementations_of


@pytest.fixture(autouse=True, params=implementations_of("permissions"))
def registry(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh default registry of the implementation under test; defaults restored after."""
    reg = reset_registry(request.param)
    try:
        yield reg
    finally:
        reset_registry()


class EventRecorder:
    """An in-process event service that records what is published (async, like the real one)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, event_name: str, payload: dict[str, Any], **_: Any) -> None:
        """Record one event."""
        self.published.append((event_name, payload))
