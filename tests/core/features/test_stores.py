"""Every store behind one suite; SQL survives restarts; Redis is shared by worker processes
(real OS processes) and an outage leaves the last known flags in force."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from crown_nexus.core.features import (
    FeatureService,
    FeatureStore,
    FeatureStoreException,
    FeatureTarget,
    RedisFeatureStore,
    SQLFeatureStore,
    register_flag,
)
from crown_nexus.core.metrics import MetricsService
from crown_nexus.testing import capture_logs, override_service

ROOT = Path(__file__).resolve().parents[3]


async def test_store_contract(store: FeatureStore) -> None:
    """save/load/delete round-trip and every write changes the version."""
    v0, flags = await store.load()
    assert flags == {} and await store.version() == v0
    await store.save("a", {"name": "a", "enabled": True})
    v1 = await store.version()
    assert v1 != v0
    await store.save("a", {"name": "a", "enabled": False, "percentage": 5.5})
    await store.save("b", {"name": "b", "allow": {"user": ["x"]}})
    v2, flags = await store.load()
    assert v2 not in (v0, v1) and v2 == await store.version()
    assert flags == {
        "a": {"name": "a", "enabled": False, "percentage": 5.5},
        "b": {"name": "b", "allow": {"user": ["x"]}},
    }
    assert await store.delete("a") is True
    assert await store.version() != v2
    assert await store.delete("a") is False
    assert set((await store.load())[1]) == {"b"}


async def test_service_round_trip_on_every_store(service: FeatureService) -> None:
    """The admin API writes through to the store; a reload reads back the same rules."""
    rule = await service.set_flag("sms_notifications", enabled=True, percentage=10, deny_users=["z"])
    assert await service.refresh(force=True)
    assert await service.get_flag("sms_notifications") == rule
    assert not await service.is_enabled("sms_notifications", target=FeatureTarget.USER, target_id="z")
    assert await service.delete_flag("sms_notifications")
    assert await service.refresh(force=True)
    assert (await service.get_flag("sms_notifications")).enabled is False


async def test_a_second_service_on_a_shared_store_sees_changes(
    store: FeatureStore, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """Two services on one shared store: a change by one is evaluated by the other within 1 s."""
    if not store.shared:
        pytest.skip("the memory store is per process by design")
    from tests.core.features.conftest import make_store

    kind = request.node.callspec.params["store"]
    other_store = store if kind == "sqlite" else await make_store(kind, request, tmp_path)
    if kind == "redis":
        other_store._flags_key = store._flags_key  # type: ignore[attr-defined]
        other_store._version_key = store._version_key  # type: ignore[attr-defined]
        other_store._generation_key = store._generation_key  # type: ignore[attr-defined]
    a = FeatureService(store=store, environment="test", poll_interval=0.1)
    b = FeatureService(store=other_store, environment="test", poll_interval=0.1)
    await a.initialize()
    await b.initialize()
    try:
        await a.set_flag("push_notifications", enabled=True)
        start = time.monotonic()
        while not await b.is_enabled("push_notifications"):
            assert time.monotonic() - start < 1.0, "not seen within 1 s"
            await asyncio.sleep(0.01)
    finally:
        await a.shutdown()
        await b.shutdown()


async def test_sql_flags_survive_a_restart(database_url: str) -> None:
    """Flags set on SQLite / PostgreSQL are in force in a new service after the old one stopped."""
    from tests.core.features.conftest import _clear_sql

    await _clear_sql(database_url)
    register_flag("beta_reports")
    first = FeatureService(store=SQLFeatureStore(database_url), environment="test")
    await first.initialize()
    await first.set_flag("beta_reports", enabled=True, allow_users=["u1"], percentage=0)
    await first.shutdown()
    del first

    second = FeatureService(store=SQLFeatureStore(database_url), environment="test")
    assert not await second.is_enabled("beta_reports", target=FeatureTarget.USER, target_id="u1")
    await second.initialize()
    try:
        assert await second.is_enabled("beta_reports", target=FeatureTarget.USER, target_id="u1")
        assert not await second.is_enabled("beta_reports", target=FeatureTarget.USER, target_id="u2")
    finally:
        await second.shutdown()


def _worker(mode: str, url: str, prefix: str = "-") -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CROWN_NEXUS_LOG_LEVEL="WARNING")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.core.features._worker", mode, url, prefix],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_worker_processes_share_flags_through_redis(redis_url: str) -> None:
    """A flag set in one OS process is evaluated on in another within 1 s (Redis store)."""
    prefix = f"t{uuid.uuid4().hex[:10]}:features:"
    watcher = _worker("watch", redis_url, prefix)
    try:
        assert watcher.stdout is not None
        ready = watcher.stdout.readline().split()
        assert ready == ["READY", "False"], (ready, watcher.stderr.read() if watcher.stderr else "")
        setter = _worker("set", redis_url, prefix)
        out, err = setter.communicate(timeout=60)
        assert setter.returncode == 0, err
        set_at = float(out.split()[1])
        seen = watcher.stdout.readline().split()
        assert seen and seen[0] == "ON", seen
        assert float(seen[1]) - set_at < 1.0
    finally:
        watcher.kill()
        watcher.wait(timeout=10)


async def test_redis_outage_keeps_last_known_flags(redis_server: Any) -> None:
    """Redis going away: flags stay in force, evaluation stays local, logged once, counted."""
    metrics = MetricsService()
    with override_service("metrics_service", metrics):
        svc = FeatureService(
            store=RedisFeatureStore(redis_server.url), environment="test", poll_interval=0.05,
            op_timeout=0.5,
        )
        await svc.initialize()
        try:
            await svc.set_flag("push_notifications", enabled=True, allow_users=["vip"], percentage=0)
            with capture_logs("info") as logs:
                redis_server.stop()
                await asyncio.sleep(0.6)  # several failed polls
                t0 = time.perf_counter()
                for _ in range(1000):
                    on = await svc.is_enabled(
                        "push_notifications", target=FeatureTarget.USER, target_id="vip"
                    )
                    assert on
                assert time.perf_counter() - t0 < 0.5  # no network on the hot path
                assert not svc.store_available
                with pytest.raises(FeatureStoreException) as info:
                    await svc.set_flag("push_notifications", enabled=False)
                assert info.value.status_code == 502
                assert await svc.is_enabled("push_notifications")  # the failed write changed nothing
                redis_server.start()
                for _ in range(100):
                    if svc.store_available:
                        break
                    await asyncio.sleep(0.05)
                assert svc.store_available
            unavailable = [e for e in logs if "unavailable" in e["event"]]
            assert len(unavailable) == 1, [e["event"] for e in logs]
            assert any("available again" in e["event"] for e in logs)
            errors = metrics.get_counter_sum("feature_store_errors_total", {"store": "redis"})
            assert errors >= 2  # failed polls (backing off to 1 s) and the failed write
            # the restarted Redis kept nothing (no persistence): its empty state is loaded
            assert not await svc.is_enabled("push_notifications")
            await svc.set_flag("push_notifications", enabled=True)
            assert await svc.is_enabled("push_notifications")
        finally:
            await svc.shutdown()


async def test_store_down_at_start_up_serves_defaults_then_loads(redis_server: Any) -> None:
    """A Redis that is down at start-up: defaults serve, the flags load once Redis is back."""
    url = redis_server.url
    writer = FeatureService(store=RedisFeatureStore(url), environment="test")
    await writer.set_flag("sms_notifications", enabled=True)
    await writer.shutdown()
    redis_server.stop()
    svc = FeatureService(store=RedisFeatureStore(url), environment="test", poll_interval=0.05)
    await svc.initialize()
    try:
        assert not await svc.is_enabled("sms_notifications")
        assert not svc.store_available
    finally:
        redis_server.start()
    try:
        await writer.set_flag("sms_notifications", enabled=True)  # the restart lost the data
        for _ in range(100):
            if await svc.is_enabled("sms_notifications"):
                break
            await asyncio.sleep(0.05)
        assert await svc.is_enabled("sms_notifications")
    finally:
        await svc.shutdown()
        await writer.shutdown()


async def test_service_started_lazily_inside_a_loop(redis_url: str) -> None:
    """Without initialize(), the first evaluation in a loop starts loading in the background."""
    prefix = f"t{uuid.uuid4().hex[:10]}:features:"
    writer = FeatureService(store=RedisFeatureStore(redis_url, prefix=prefix), environment="test")
    await writer.set_flag("sms_notifications", enabled=True)
    reader = FeatureService(
        store=RedisFeatureStore(redis_url, prefix=prefix), environment="test", poll_interval=0.05
    )
    try:
        first = await reader.is_enabled("sms_notifications")  # answers at once, from defaults
        assert first is False
        for _ in range(100):
            if await reader.is_enabled("sms_notifications"):
                break
            await asyncio.sleep(0.02)
        assert await reader.is_enabled("sms_notifications")
    finally:
        await reader.shutdown()
        await writer.shutdown()


async def test_sql_flags_survive_a_process_restart(database_url: str) -> None:
    """A flag set by one OS process on SQLite / PostgreSQL is in force in the next process."""
    from tests.core.features.conftest import _clear_sql

    await _clear_sql(database_url)
    setter = _worker("sql-set", database_url)
    _, err = setter.communicate(timeout=60)
    assert setter.returncode == 0, err
    getter = _worker("sql-get", database_url)
    out, err = getter.communicate(timeout=60)
    assert getter.returncode == 0, err
    assert out.split() == ["ON", "OFF"]


async def test_a_stalled_redis_never_holds_an_evaluation(redis_server: Any) -> None:
    """Redis frozen (SIGSTOP): evaluations stay local and fast, writes fail within the timeout."""
    import signal

    svc = FeatureService(
        store=RedisFeatureStore(redis_server.url), environment="test", poll_interval=0.05,
        op_timeout=0.3,
    )
    await svc.initialize()
    await svc.set_flag("sms_notifications", enabled=True)
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(0.5)  # polls are stuck or timing out meanwhile
        t0 = time.perf_counter()
        for i in range(1000):
            assert await svc.is_enabled("sms_notifications", target=FeatureTarget.USER, target_id=i)
        assert time.perf_counter() - t0 < 0.5
        t0 = time.perf_counter()
        with pytest.raises(FeatureStoreException):
            await svc.set_flag("sms_notifications", enabled=False)
        assert time.perf_counter() - t0 < 2.0
        assert not svc.store_available
        assert await svc.is_enabled("sms_notifications")
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
        await svc.shutdown()
