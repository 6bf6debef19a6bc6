"""A PostgreSQL flag store that goes away and comes back: the last known flags stay in force,
evaluation never waits on the database, writes fail with 502 and change nothing, the outage is
logged once, and the stored flags are back in force after the restart (a real server, killed
with an immediate shutdown and restarted on the same data)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from crown_nexus.core.features import (
    FeatureService,
    FeatureStoreException,
    FeatureTarget,
    SQLFeatureStore,
)
from crown_nexus.core.metrics import MetricsService
from crown_nexus.testing import capture_logs, override_service
from tests._servers import PostgresServer


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster this test may kill and restart."""
    server = PostgresServer()
    try:
        server.start()
    except FileNotFoundError as exc:
        pytest.skip(f"no PostgreSQL server can run here: {exc}")
    try:
        yield server
    finally:
        server.stop()


async def _until(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_postgres_outage_keeps_last_known_flags(private_postgres: PostgresServer) -> None:
    """Database down: flags in force, local evaluation, 502 on write, logged once; back after."""
    metrics = MetricsService()
    with override_service("metrics_service", metrics):
        svc = FeatureService(
            store=SQLFeatureStore(private_postgres.url), environment="test", poll_interval=0.05,
            op_timeout=2.0,  # a fresh cluster on a loaded machine can take a while to answer
        )
        await svc.initialize()
        try:
            await svc.set_flag("push_notifications", enabled=True, allow_users=["vip"], percentage=0)
            assert await _until(lambda: svc.store_available, 10.0)  # up before the outage
            with capture_logs("info") as logs:
                private_postgres.kill()
                assert await _until(lambda: not svc.store_available, 10.0)
                t0 = time.perf_counter()
                for _ in range(1000):
                    assert await svc.is_enabled(
                        "push_notifications", target=FeatureTarget.USER, target_id="vip"
                    )
                assert time.perf_counter() - t0 < 0.5  # no database on the hot path
                with pytest.raises(FeatureStoreException) as info:
                    await svc.set_flag("push_notifications", enabled=False)
                assert info.value.status_code == 502
                assert await svc.is_enabled("push_notifications")  # nothing changed
                private_postgres.restart()
                assert await _until(lambda: svc.store_available, 15.0)
            unavailable = [e for e in logs if "unavailable" in e["event"]]
            assert len(unavailable) == 1, [e["event"] for e in logs]
            assert any("available again" in e["event"] for e in logs)
            assert metrics.get_counter_sum("feature_store_errors_total", {"store": "sql"}) >= 2
            # the database kept the flag: it is the stored rule that is in force again
            assert await svc.refresh(force=True)
            assert await svc.is_enabled(
                "push_notifications", target=FeatureTarget.USER, target_id="vip"
            )
            assert not await svc.is_enabled(
                "push_notifications", target=FeatureTarget.USER, target_id="other"
            )
            await svc.set_flag("push_notifications", enabled=False)
            assert not await svc.is_enabled("push_notifications")
        finally:
            await svc.shutdown()


async def test_concurrent_first_start_creates_the_tables_once(
    private_postgres: PostgresServer,
) -> None:
    """Eight stores (as eight workers) and a second caller in one store start on an empty
    database at once: every one succeeds (PostgreSQL refuses a concurrent second CREATE TABLE
    with a catalog unique violation, which the store takes as "created")."""
    stores = [SQLFeatureStore(private_postgres.url) for _ in range(8)]
    try:
        await asyncio.gather(*(s.initialize() for s in stores), stores[0].initialize())
        await asyncio.gather(*(s.save(f"f{i}", {"name": f"f{i}"}) for i, s in enumerate(stores)))
        _, flags = await stores[0].load()
        assert set(flags) == {f"f{i}" for i in range(8)}
    finally:
        for s in stores:
            await s.close()
