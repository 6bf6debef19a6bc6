"""Fixtures of the feature flag tests: one suite over every store (memory, SQLite, PostgreSQL,
real Redis), a clean flag registry per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from crown_nexus.core.features import (
    FeatureService,
    FeatureStore,
    MemoryFeatureStore,
    get_flag_registry,
    reset_flag_registry,
)

STORES = ["memory", "sqlite", "postgres", "redis"]


@pytest.fixture(autouse=True)
def _clean_flag_registry() -> Iterator[None]:
    """Each test starts from the shipped flags; the registry is restored afterwards (flags that
    modules registered at import, e.g. the demo's, stay registered for later tests)."""
    registry = get_flag_registry()
    saved = dict(registry._flags)
    reset_flag_registry()
    yield
    registry._flags = saved
    registry.version += 1


async def _clear_sql(url: str) -> None:
    from sqlalchemy import delete
    from sqlalchemy.ext.asyncio import create_async_engine

    from crown_nexus.core.features.stores.sql import feature_metadata, flags_table

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(feature_metadata.create_all)
            await conn.execute(delete(flags_table))
    finally:
        await engine.dispose()


async def make_store(kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> FeatureStore:
    """A fresh, empty store of ``kind`` (real servers for PostgreSQL and Redis)."""
    if kind == "memory":
        return MemoryFeatureStore()
    if kind == "sqlite":
        from crown_nexus.core.features import SQLFeatureStore

        return SQLFeatureStore(f"sqlite+aiosqlite:///{tmp_path / 'flags.db'}")
    if kind == "postgres":
        from crown_nexus.core.features import SQLFeatureStore

        url = request.getfixturevalue("postgres_url")
        await _clear_sql(url)
        return SQLFeatureStore(url)
    from crown_nexus.core.features import RedisFeatureStore

    url = request.getfixturevalue("redis_url")
    return RedisFeatureStore(url, prefix=f"t{uuid.uuid4().hex[:10]}:features:")


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[FeatureStore]:
    """An empty store of every kind."""
    st = await make_store(request.param, request, tmp_path)
    await st.initialize()
    try:
        yield st
    finally:
        await st.close()


@pytest.fixture
async def service(store: FeatureStore) -> AsyncIterator[FeatureService]:
    """A started FeatureService on each store (fast polling, test environment)."""
    svc = FeatureService(store=store, environment="test", poll_interval=0.05)
    await svc.initialize()
    try:
        yield svc
    finally:
        await svc.shutdown()


@pytest.fixture
async def memory_service() -> AsyncIterator[FeatureService]:
    """A started FeatureService on the memory store."""
    svc = FeatureService(store=MemoryFeatureStore(), environment="test")
    await svc.initialize()
    try:
        yield svc
    finally:
        await svc.shutdown()
