"""Shared fixtures: real servers, implementation parametrization, a fresh demo app."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests._servers import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real redis-server shared by the session (CI's, or one started here)."""
    url = os.environ.get("CROWN_NEXUS_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer()
    try:
        server.start()
    except FileNotFoundError as exc:
        pytest.skip(f"no Redis server can run here: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server this test may kill and restart (``.stop()`` / ``.start()``)."""
    server = RedisServer()
    try:
        server.start()
    except FileNotFoundError as exc:
        pytest.skip(f"no Redis server can run here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_client(redis_url: str):  # type: ignore[no-untyped-def]
    """A redis-py asyncio client on the shared server, flushed before and after the test."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (asyncpg) of a real PostgreSQL (CI's, or one started here)."""
    url = os.environ.get("CROWN_NEXUS_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    server = PostgresServer()
    try:
        server.start()
    except FileNotFoundError as exc:
        pytest.skip(f"no PostgreSQL server can run here: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def _audit_trail_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Code run as written (``get_service("audit_service")``) audits into a temporary SQLite file,
    not the settings' default ``./crown_nexus.db``."""
    from crown_nexus.core.audit import close_audit, configure_audit

    path = tmp_path_factory.mktemp("audit") / "audit.db"
    previous = configure_audit(database_url=f"sqlite+aiosqlite:///{path}")
    try:
        yield
    finally:
        close_audit()
        configure_audit(**previous)


@pytest.fixture(autouse=True)
def _starts_in_the_default_container() -> Iterator[None]:
    """Every test starts outside any app: an app's container stays inside that app's scopes."""
    from crown_nexus.container import current_container, default_container

    found = current_container()
    assert found is default_container(), f"an earlier test left {found!r} current"
    yield


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """Every database test runs on SQLite (a file) and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


def implementations_of(name: str) -> list[str]:
    """The kinds of implementation available for hot path ``name`` (for parametrize)."""
    from crown_nexus import accel

    return sorted(accel.available(name))


def pytest_report_header(config: pytest.Config) -> str:
    try:
        from crown_nexus import accel

        return f"crown_nexus.accel.implementations(): {accel.implementations()}"
    except Exception as exc:
        return f"crown_nexus.accel failed: {exc!r}"
