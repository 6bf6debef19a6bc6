"""Write requests' SQLite sessions begin IMMEDIATE: under contention they wait their turn instead
of being refused at once ("database is locked"), which the soak saw answer 500 under a burst of
writes. Reads keep beginning deferred and never wait for a writer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crown_nexus.demo.db import create_engine_for, write_engine


async def _engine(tmp_path: Any) -> AsyncEngine:
    engine = create_engine_for(f"sqlite+aiosqlite:///{tmp_path}/w.db")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE stock (id INTEGER PRIMARY KEY, n INTEGER)"))
        await conn.execute(text("INSERT INTO stock VALUES (1, 10)"))
    return engine


async def _read_then_write(factory: async_sessionmaker[AsyncSession], hold: asyncio.Event) -> int:
    """Read the stock, wait until told, then write what was read minus one (a lost update if
    two such transactions interleaved)."""
    async with factory() as session, session.begin():
        n = int((await session.execute(text("SELECT n FROM stock WHERE id = 1"))).scalar_one())
        await hold.wait()
        await session.execute(text("UPDATE stock SET n = :n WHERE id = 1"), {"n": n - 1})
        return n


async def test_write_sessions_wait_their_turn_and_lose_no_update(tmp_path: Any) -> None:
    """Two read-then-write transactions at once on write sessions: the second waits for the
    first (its BEGIN IMMEDIATE holds), then reads the committed value: both succeed, 10 -> 8."""
    engine = await _engine(tmp_path)
    writes = async_sessionmaker(write_engine(engine), expire_on_commit=False)
    try:
        go = asyncio.Event()
        first = asyncio.create_task(_read_then_write(writes, go))
        await asyncio.sleep(0.05)  # the first holds the write lock now
        second = asyncio.create_task(_read_then_write(writes, go))
        await asyncio.sleep(0.1)
        assert not second.done()  # waiting at BEGIN IMMEDIATE, not refused
        go.set()
        assert sorted(await asyncio.gather(first, second)) == [9, 10]
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT n FROM stock"))).scalar_one() == 8
    finally:
        await engine.dispose()


async def test_deferred_transactions_are_refused_at_once(tmp_path: Any) -> None:
    """Why: the same two transactions begun deferred (plain ``BEGIN``) -- the second's snapshot
    is stale once the first commits, and SQLite refuses its write at once, whatever the
    timeout."""
    engine = await _engine(tmp_path)
    try:

        async def deferred(hold: asyncio.Event) -> int:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("BEGIN")
                n = int((await conn.execute(text("SELECT n FROM stock WHERE id = 1"))).scalar_one())
                await hold.wait()
                await conn.execute(text("UPDATE stock SET n = :n WHERE id = 1"), {"n": n - 1})
                await conn.commit()
                return n

        go = asyncio.Event()
        first = asyncio.create_task(deferred(go))
        second = asyncio.create_task(deferred(go))
        await asyncio.sleep(0.1)  # both have read
        go.set()
        results = await asyncio.gather(first, second, return_exceptions=True)
        refused = [r for r in results if isinstance(r, sa_exc.OperationalError)]
        assert len(refused) == 1 and "locked" in str(refused[0])
    finally:
        await engine.dispose()


async def test_read_sessions_keep_the_drivers_transactions(tmp_path: Any) -> None:
    """A default session that reads and later writes while another writer commits in between
    is not refused: its reads held no snapshot (the driver begins at the first write)."""
    engine = await _engine(tmp_path)
    reads = async_sessionmaker(engine, expire_on_commit=False)
    writes = async_sessionmaker(write_engine(engine), expire_on_commit=False)
    try:
        async with reads() as session:
            await session.execute(text("SELECT n FROM stock WHERE id = 1"))
            async with writes() as other, other.begin():
                await other.execute(text("UPDATE stock SET n = 7 WHERE id = 1"))
            await session.execute(text("UPDATE stock SET n = n - 1 WHERE id = 1"))
            await session.commit()
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT n FROM stock"))).scalar_one() == 6
    finally:
        await engine.dispose()


async def test_reads_never_wait_for_a_writer(tmp_path: Any) -> None:
    """A read session answers while a write session holds the lock (WAL, deferred BEGIN)."""
    engine = await _engine(tmp_path)
    writes = async_sessionmaker(write_engine(engine), expire_on_commit=False)
    reads = async_sessionmaker(engine, expire_on_commit=False)
    try:
        go = asyncio.Event()
        writer = asyncio.create_task(_read_then_write(writes, go))
        await asyncio.sleep(0.05)
        async with reads() as session:
            n = await asyncio.wait_for(
                session.scalar(text("SELECT n FROM stock WHERE id = 1")), timeout=1.0
            )
        assert n == 10
        go.set()
        await writer
    finally:
        await engine.dispose()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "GET", "HEAD"])
async def test_the_request_method_picks_the_sessionmaker(method: str) -> None:
    """get_sessionmaker gives unsafe methods the app's write sessionmaker, others the default."""
    from types import SimpleNamespace

    from crown_nexus.demo.db import get_sessionmaker

    state = SimpleNamespace(sessionmaker="read", write_sessionmaker="write")
    request: Any = SimpleNamespace(method=method, app=SimpleNamespace(state=state))
    expected = "write" if method in {"POST", "PUT", "PATCH", "DELETE"} else "read"
    assert get_sessionmaker(request) == expected
