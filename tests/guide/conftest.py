"""Fixtures the guide section files share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crown_nexus.core.dependency_manager import get_service


@pytest.fixture
def fresh_shared_service() -> Iterator[None]:
    """The guide's blocks read the shared "metrics_service": each test starts from an empty one."""
    get_service("metrics_service").reset()
    yield
    get_service("metrics_service").reset()
