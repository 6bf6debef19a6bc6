"""``log_action_in``: an audit record written in the caller's transaction (SQLite and PostgreSQL).

The audited change and its record are one unit of work: both commit, or both roll back and the
chain stays unbroken; writers in other transactions wait for the chain head instead of forking it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from crown_nexus.core.audit import AuditService
from crown_nexus.core.exceptions import ValidationException


@pytest.fixture
async def app_db(audit_url: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """The application's own engine on the trail's database, with one business table."""
    engine = create_async_engine(
        audit_url, connect_args={"timeout": 10} if audit_url.startswith("sqlite") else {}
    )
    if audit_url.startswith("sqlite"):
        # concurrent SQLite writers begin IMMEDIATE (a deferred transaction that reads and then
        # writes is refused at once, "database is locked", when another writer is committing)
        @event.listens_for(engine.sync_engine, "connect")
        def _no_implicit(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    table = f"orders_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, total INTEGER)"))
    try:
        yield engine, table
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))
        await engine.dispose()


async def test_commits_with_the_change(audit: AuditService, app_db: tuple[AsyncEngine, str]) -> None:
    """Committed together: the row and its record are both there, linked into the chain."""
    app_engine, table = app_db
    await audit.log_action(user_id="u0", action="before")  # the chain already has a head
    async with AsyncSession(app_engine) as session, session.begin():
        await session.execute(text(f"INSERT INTO {table} VALUES (1, 250)"))
        record = await audit.log_action_in(
            session, user_id="u1", action="order_created", resource_type="Order",
            resource_id=1, details={"total": 250, "password": "hunter2"},
        )
    assert record["seq"] == 2 and len(record["hash"]) == 64
    [row] = await audit.recent(1)
    assert (row["seq"], row["action"], row["resource_id"]) == (2, "order_created", "1")
    assert row["details"]["password"] != "hunter2"  # redacted like log_action's
    assert (await audit.verify_chain()).ok


async def test_rolls_back_with_the_change(audit: AuditService, app_db: tuple[AsyncEngine, str]) -> None:
    """Rolled back together: no row, no record, and the next record continues the chain."""
    app_engine, table = app_db
    await audit.log_action(user_id="u0", action="before")
    with pytest.raises(RuntimeError):
        async with AsyncSession(app_engine) as session, session.begin():
            await session.execute(text(f"INSERT INTO {table} VALUES (2, 10)"))
            await audit.log_action_in(session, user_id="u1", action="order_created")
            raise RuntimeError("payment refused")
    async with app_engine.connect() as conn:
        assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 0
    after = await audit.log_action(user_id="u2", action="after")
    assert after["seq"] == 2  # the rolled-back record's seq was never taken
    assert [r["action"] for r in await audit.recent(5)] == ["before", "after"]
    assert (await audit.verify_chain()).ok


async def test_concurrent_transactions_extend_one_chain(
    audit: AuditService, app_db: tuple[AsyncEngine, str]
) -> None:
    """Transactions writing at once (and the background writer beside them) wait for the head:
    every record gets its own seq and the chain verifies."""
    app_engine, table = app_db

    async def order(n: int) -> int:
        async with AsyncSession(app_engine) as session, session.begin():
            await session.execute(text(f"INSERT INTO {table} VALUES ({100 + n}, {n})"))
            record = await audit.log_action_in(session, user_id=f"u{n}", action="order_created")
            await asyncio.sleep(0.01)  # hold the head a moment: others must wait, not fork
            return int(record["seq"])

    background = [audit.log_action(user_id="bg", action=f"bg{i}") for i in range(5)]
    seqs = await asyncio.gather(*(order(n) for n in range(6)))
    for pending in background:
        await pending
    assert len(set(seqs)) == 6
    verification = await audit.verify_chain()
    assert verification.ok and verification.checked == 11


async def test_bad_input_is_refused_before_any_write(
    audit: AuditService, app_db: tuple[AsyncEngine, str]
) -> None:
    """An empty action is a 422 and the caller's transaction is untouched."""
    app_engine, _ = app_db
    async with AsyncSession(app_engine) as session, session.begin():
        with pytest.raises(ValidationException):
            await audit.log_action_in(session, user_id="u1", action="")
        assert not session.new
    assert (await audit.verify_chain()).checked == 0
