"""The demo's SQLite engine keeps its connections: bursts of concurrent sessions reuse them
instead of opening and closing a connection (and its thread) each time (the soak's RSS creep)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, text

from crown_nexus.demo.db import SQLITE_POOL_SIZE, create_engine_for


async def test_bursts_of_sessions_reuse_the_pooled_connections(tmp_path: Any) -> None:
    """Five bursts of 16 overlapping sessions open 16 connections once, then none."""
    engine = create_engine_for(f"sqlite+aiosqlite:///{tmp_path}/pool.db")
    opened: list[int] = []
    event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))

    async def one() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(0.02)  # the 16 overlap

    try:
        assert SQLITE_POOL_SIZE >= 16
        await asyncio.gather(*(one() for _ in range(16)))
        first = len(opened)
        assert first <= 16
        for _ in range(4):
            await asyncio.gather(*(one() for _ in range(16)))
        assert len(opened) == first, f"{len(opened) - first} connections opened again"
    finally:
        await engine.dispose()
