"""The transactional outbox on SQLite and PostgreSQL: commit/rollback, relay crash, dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from crown_nexus.core.events import (
    EventBackendType,
    EventPublishException,
    EventService,
    OutboxRelay,
    create_outbox_tables,
    dead_letter_table,
    outbox_table,
)
from crown_nexus.testing import capture_errors

app_metadata = MetaData()
orders = Table(
    "outbox_test_orders",
    app_metadata,
    Column("id", Integer, primary_key=True),
    Column("item", String(50)),
)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on SQLite or PostgreSQL with the outbox tables created and emptied."""
    eng = create_async_engine(database_url)
    await create_outbox_tables(eng)
    async with eng.begin() as conn:
        await conn.run_sync(app_metadata.create_all)
        for table in (outbox_table, dead_letter_table, orders):
            await conn.execute(delete(table))
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def events(service: EventService) -> list[dict[str, Any]]:
    """Events of name "order.created" that reached a handler."""
    got: list[dict[str, Any]] = []
    service.subscribe("order.created", got.append)
    return got


async def _place_order(engine: AsyncEngine, service: EventService, item: str, commit: bool) -> str:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        await session.execute(insert(orders).values(item=item))
        event_id = await service.publish("order.created", {"item": item}, session=session)
        if commit:
            await session.commit()
        else:
            await session.rollback()
    return event_id


async def _count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_commit_writes_both_and_relay_delivers(engine, service, events) -> None:  # type: ignore[no-untyped-def]
    """Committed: the row and its event exist; the relay delivers the event once and marks it."""
    event_id = await _place_order(engine, service, "lamp", commit=True)
    assert events == []  # nothing is delivered before the relay runs
    relay = OutboxRelay(engine, service)
    assert [p["id"] for p in await relay.pending()] == [event_id]
    assert await relay.run_once() == 1
    assert await service.wait_for_pending(2)
    assert [e["id"] for e in events] == [event_id] and events[0]["data"] == {"item": "lamp"}
    assert await relay.pending() == []
    assert await relay.run_once() == 0
    assert await relay.purge_delivered() == 1


async def test_rollback_publishes_nothing(engine, service, events) -> None:  # type: ignore[no-untyped-def]
    """Rolled back: neither the row nor the event exists, nothing is delivered or counted."""
    from crown_nexus.core.dependency_manager import get_service

    metrics = get_service("metrics_service")
    service.flush_metrics()
    before = metrics.get_counter_sum("events_published_total", {"event_type": "order.created"})
    await _place_order(engine, service, "kettle", commit=False)
    assert await _count(engine, orders) == 0
    assert await _count(engine, outbox_table) == 0
    relay = OutboxRelay(engine, service)
    assert await relay.run_once() == 0
    assert await service.wait_for_pending(1)
    assert events == []
    after = metrics.get_counter_sum("events_published_total", {"event_type": "order.created"})
    assert after == before


async def test_bad_payload_in_transaction_raises_and_writes_nothing(engine, service) -> None:  # type: ignore[no-untyped-def]
    """A non-serializable payload raises EventPublishException before anything is written."""
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        with pytest.raises(EventPublishException):
            await service.publish("order.created", {"bad": object()}, session=session)
        await session.commit()
    assert await _count(engine, outbox_table) == 0


async def test_relay_not_running_at_commit_delivers_on_start(engine, service, events) -> None:  # type: ignore[no-untyped-def]
    """Events committed while no relay ran (it had crashed) are delivered when one starts."""
    ids = [await _place_order(engine, service, f"i{n}", commit=True) for n in range(3)]
    relay = OutboxRelay(engine, service, poll_interval=0.05)
    relay.start()
    try:
        for _ in range(250):
            if len(events) == 3:
                break
            await asyncio.sleep(0.02)
    finally:
        await relay.stop()
    assert [e["id"] for e in events] == ids


async def test_relay_crash_mid_delivery_redelivers_after_claim_lapses(engine, service, events) -> None:  # type: ignore[no-untyped-def]
    """A relay killed while delivering leaves its claimed events to the next relay."""
    event_id = await _place_order(engine, service, "hammer", commit=True)
    entered = asyncio.Event()

    async def hang(event: dict[str, Any], body: bytes) -> None:
        entered.set()
        await asyncio.sleep(60)

    crashing = OutboxRelay(engine, service, deliver=hang, claim_timeout=1.0)
    task = asyncio.create_task(crashing.run_once())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()  # the relay dies mid-delivery
    await asyncio.gather(task, return_exceptions=True)
    restarted = OutboxRelay(engine, service, claim_timeout=1.0)
    [row] = await restarted.pending()
    if row["next_attempt_at"] > time.time() + 0.2:  # (not when this machine is very slow)
        assert await restarted.run_once() == 0  # still claimed by the dead relay
    await asyncio.sleep(max(0.0, row["next_attempt_at"] - time.time()) + 0.05)
    assert await restarted.run_once() == 1
    assert await service.wait_for_pending(1)
    assert [e["id"] for e in events] == [event_id]


async def test_failures_retry_then_dead_letter_then_replay(engine, service, events) -> None:  # type: ignore[no-untyped-def]
    """Failed deliveries are retried with backoff, then parked; replay delivers them."""
    event_id = await _place_order(engine, service, "desk", commit=True)
    calls: list[tuple[str, float]] = []

    async def broken(event: dict[str, Any], body: bytes) -> None:
        calls.append((event["id"], time.monotonic()))
        raise ConnectionError("broker down")

    failing = OutboxRelay(engine, service, deliver=broken, max_attempts=3, retry_backoff=0.1)
    with capture_errors() as reporter:
        assert await failing.run_once() == 0
        [row] = await failing.pending()
        assert row["attempts"] == 1 and "broker down" in row["last_error"]
        assert row["next_attempt_at"] >= row["created_at"] + 0.1
        async with asyncio.timeout(10):
            while len(calls) < 3:
                await failing.run_once()
                await asyncio.sleep(0.01)
    gaps = [b[1] - a[1] for a, b in zip(calls, calls[1:], strict=False)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # exponential backoff between attempts
    calls_ids = [c[0] for c in calls]
    assert calls_ids == [event_id] * 3
    assert await failing.pending() == []
    [dead] = await failing.dead_letters()
    assert dead["id"] == event_id and dead["attempts"] == 3 and dead["event"]["name"] == "order.created"
    assert [r.type for r in reporter.recent()] == ["ConnectionError"]
    working = OutboxRelay(engine, service)
    assert await working.replay() == 1
    assert await working.dead_letters() == []
    assert await working.run_once() == 1
    assert await service.wait_for_pending(1)
    assert [e["id"] for e in events] == [event_id]


async def test_commit_wakes_background_relay(engine, service, events) -> None:  # type: ignore[no-untyped-def]
    """A running relay delivers right after commit, without waiting for its poll interval."""
    relay = OutboxRelay(engine, service, poll_interval=30)
    relay.start()
    await asyncio.sleep(0.05)  # first (empty) pass done; now sleeping for 30 s
    try:
        event_id = await _place_order(engine, service, "screw", commit=True)
        for _ in range(250):
            if events:
                break
            await asyncio.sleep(0.02)
    finally:
        await relay.stop()
    assert [e["id"] for e in events] == [event_id]


async def test_service_shutdown_stops_relays(engine) -> None:  # type: ignore[no-untyped-def]
    """EventService.shutdown stops the relays attached to it."""
    svc = EventService()
    await svc.initialize(EventBackendType.MEMORY)
    relay = svc.start_outbox_relay(engine, poll_interval=30)
    assert isinstance(relay, OutboxRelay) and relay.running
    await svc.shutdown()
    assert not relay.running


async def test_events_of_one_transaction_delivered_in_publish_order(engine, service) -> None:  # type: ignore[no-untyped-def]
    """Events published in one transaction reach handlers in publish order."""
    got: list[int] = []
    service.subscribe("seq", lambda e: got.append(e["data"]))
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        for n in range(30):
            await service.publish("seq", n, session=session)
        await session.commit()
    relay = OutboxRelay(engine, service, batch_size=7)
    while await relay.run_once():
        pass
    assert await service.wait_for_pending(2)
    assert got == list(range(30))


async def test_a_batch_is_marked_delivered_in_one_write(engine, service, events) -> None:  # type: ignore[no-untyped-def]
    """A batch of 40 events costs the relay two outbox writes (claim, mark), not one per event."""
    from sqlalchemy import event as sa_event

    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        for n in range(40):
            await service.publish("order.created", {"n": n}, session=session)
        await session.commit()
    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE CROWN_NEXUS_EVENT_OUTBOX"):
            writes.append(statement)

    sa_event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        relay = OutboxRelay(engine, service, batch_size=100)
        assert await relay.run_once() == 40
    finally:
        sa_event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(writes) == 2
    assert await service.wait_for_pending(2)
    assert sorted(e["data"]["n"] for e in events) == list(range(40))
    assert await relay.pending() == []
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox_table.c.attempts, outbox_table.c.delivered_at))).all()
    assert len(rows) == 40 and all(r.attempts == 1 and r.delivered_at is not None for r in rows)


async def test_concurrency_runs_deliveries_of_a_batch_at_once(engine, service) -> None:  # type: ignore[no-untyped-def]
    """With concurrency=4 a deliver that waits is run for 4 events at once (never more); a
    failed one is retried later while the rest are marked delivered."""
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        for n in range(10):
            await service.publish("job", {"n": n}, session=session)
        await session.commit()
    running = 0
    peak = 0
    seen: list[int] = []

    async def slow(event: dict[str, Any], body: bytes) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.05)
            if event["data"]["n"] == 3 and 3 not in seen:
                seen.append(3)
                raise RuntimeError("busy")
            seen.append(event["data"]["n"])
        finally:
            running -= 1

    relay = OutboxRelay(engine, service, deliver=slow, concurrency=4, retry_backoff=0.01)
    assert await relay.run_once() == 9
    assert peak == 4
    [left] = await relay.pending()
    assert left["event"]["data"] == {"n": 3} and left["attempts"] == 1
    await asyncio.sleep(0.05)
    assert await relay.run_once() == 1
    assert sorted(seen) == [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9]
    assert await relay.pending() == []


def _outbox_gauge(metrics: Any) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    text = metrics.render_latest()[0].decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "event_outbox_pending":
                return float(sample.value)
    return None


async def test_relay_reports_the_outbox_backlog_each_pass(engine) -> None:  # type: ignore[no-untyped-def]
    """event_outbox_pending is the undelivered outbox rows after each pass: committed events
    count until delivered, a rolled-back one never, a retried one still, a dead letter not;
    workers combine it by livemax (each relay sees the same table)."""
    from crown_nexus.core.dependency_manager import get_registry
    from crown_nexus.core.metrics import MetricsService

    metrics = MetricsService()
    with get_registry().override("metrics_service", metrics):
        svc = EventService()
        await svc.initialize(EventBackendType.MEMORY)
        try:
            for n in range(5):
                await _place_order(engine, svc, f"o{n}", commit=True)
            await _place_order(engine, svc, "gone", commit=False)
            relay = OutboxRelay(engine, svc, batch_size=2)
            assert relay.backlog is None and _outbox_gauge(metrics) == 0  # created at start-up
            assert await relay.run_once() == 2
            assert relay.backlog == 3 and _outbox_gauge(metrics) == 3
            assert await relay.run_once() == 2
            assert relay.backlog == 1 and _outbox_gauge(metrics) == 1
            # committed between passes: counted by the next pass
            await _place_order(engine, svc, "late", commit=True)

            async def broken(event: dict[str, Any], body: bytes) -> None:
                raise ConnectionError("broker down")

            retrying = OutboxRelay(engine, svc, deliver=broken, batch_size=2, max_attempts=5)
            assert await retrying.run_once() == 0  # both failed, both wait for a retry
            assert retrying.backlog == 2 and _outbox_gauge(metrics) == 2
            assert await relay.run_once() == 0  # nothing due: still counted
            assert _outbox_gauge(metrics) == 2
            await _place_order(engine, svc, "doomed", commit=True)
            parking = OutboxRelay(engine, svc, deliver=broken, max_attempts=1)
            with capture_errors():
                assert await parking.run_once() == 0  # "doomed" goes to the dead letters
            assert parking.backlog == 2 and _outbox_gauge(metrics) == 2
            assert len(await parking.dead_letters()) == 1
            async with engine.begin() as conn:  # make the retried rows due now
                await conn.execute(outbox_table.update().values(next_attempt_at=0.0))
            assert await relay.run_once() == 2
            assert relay.backlog == 0 and _outbox_gauge(metrics) == 0
            assert await svc.wait_for_pending(2)
        finally:
            await svc.shutdown()
    assert metrics.get_metric("event_outbox_pending")._multiprocess_mode == "livemax"


async def test_background_relay_sets_the_backlog_gauge_from_its_first_pass(engine) -> None:  # type: ignore[no-untyped-def]
    """A started relay reports the backlog it finds on its first pass (events committed while
    none ran, here failing to deliver) and brings the gauge to 0 once they are delivered."""
    from crown_nexus.core.dependency_manager import get_registry
    from crown_nexus.core.metrics import MetricsService

    async def broken(event: dict[str, Any], body: bytes) -> None:
        raise ConnectionError("broker down")

    metrics = MetricsService()
    with get_registry().override("metrics_service", metrics):
        svc = EventService()
        await svc.initialize(EventBackendType.MEMORY)
        try:
            for n in range(2):
                await _place_order(engine, svc, f"b{n}", commit=True)
            stuck = svc.start_outbox_relay(engine, deliver=broken, poll_interval=30)
            for _ in range(250):
                if stuck.backlog is not None:
                    break
                await asyncio.sleep(0.02)
            assert stuck.backlog == 2 and _outbox_gauge(metrics) == 2
            await stuck.stop()
            async with engine.begin() as conn:  # make the retries due now
                await conn.execute(outbox_table.update().values(next_attempt_at=0.0))
            got: list[Any] = []
            svc.subscribe("order.created", got.append)
            relay = svc.start_outbox_relay(engine, poll_interval=30)
            for _ in range(250):
                if len(got) == 2 and relay.backlog == 0:
                    break
                await asyncio.sleep(0.02)
            assert len(got) == 2 and _outbox_gauge(metrics) == 0
        finally:
            await svc.shutdown()
