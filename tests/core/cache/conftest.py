"""Fixtures of the cache tests: one suite, every backend (memory, real Redis, null)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from crown_nexus.core.cache import CacheService
from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.settings import Settings

STORING = ["memory", "redis"]
ALL = ["memory", "redis", "null"]


def make_service(name: str, request: pytest.FixtureRequest, **kwargs: object) -> CacheService:
    """A CacheService whose default backend is ``name`` (Redis: the session's real server)."""
    redis_url = request.getfixturevalue("redis_url") if name == "redis" else None
    return CacheService(
        Settings(),
        default_backend=name,
        redis_url=redis_url,
        key_prefix=f"t{uuid.uuid4().hex[:8]}:" if name == "redis" else "",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(params=STORING)
async def service(request: pytest.FixtureRequest) -> AsyncIterator[CacheService]:
    """A started CacheService on each storing backend, installed as ``cache_service``."""
    svc = make_service(request.param, request)
    with get_registry().override("cache_service", svc):
        await svc.initialize()
        try:
            yield svc
        finally:
            await svc.clear()
            await svc.shutdown()


@pytest.fixture(params=ALL)
async def any_service(request: pytest.FixtureRequest) -> AsyncIterator[CacheService]:
    """A started CacheService on every backend, null included."""
    svc = make_service(request.param, request)
    with get_registry().override("cache_service", svc):
        await svc.initialize()
        try:
            yield svc
        finally:
            await svc.clear()
            await svc.shutdown()


@pytest.fixture(params=STORING)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """The default backend of a started service, on each storing backend."""
    svc = make_service(request.param, request)
    await svc.initialize()
    try:
        yield svc._get_backend()
    finally:
        await svc.clear()
        await svc.shutdown()
