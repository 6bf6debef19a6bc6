"""The SQL flag store (SQLAlchemy 2 async): flags survive restarts; SQLite and PostgreSQL.

Two tables (in :data:`feature_metadata`, add it to your migrations or let
:meth:`SQLFeatureStore.initialize` create them): ``crown_nexus_feature_flags`` (one row per
flag: ``name``, JSON ``body``, ``updated_at``) and ``crown_nexus_feature_flags_version`` (one
row whose ``version`` is bumped in the same transaction as every write, so pollers notice).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import orjson
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, delete, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.features.stores.base import FeatureStore

__all__ = ["SQLFeatureStore", "feature_metadata", "flags_table", "version_table"]

#: metadata holding the flag tables
feature_metadata = MetaData()

flags_table = Table(
    "crown_nexus_feature_flags",
    feature_metadata,
    Column("name", String(128), primary_key=True),
    Column("body", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

version_table = Table(
    "crown_nexus_feature_flags_version",
    feature_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
)


def _engine_for(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        return create_async_engine(url, connect_args={"check_same_thread": False})
    return create_async_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True)


class SQLFeatureStore(FeatureStore):
    """Flags in a SQL database, shared by every process on it and kept across restarts.

    Build it from a URL (``sqlite+aiosqlite:///...``, ``postgresql+asyncpg://...``) or pass a
    ready ``engine``. A store built from a URL keeps one engine per event loop (async database
    connections belong to the loop that opened them).
    """

    name: ClassVar[str] = "sql"
    shared: ClassVar[bool] = True
    default_poll_interval: ClassVar[float] = 1.0

    def __init__(self, url: str | None = None, *, engine: AsyncEngine | None = None) -> None:
        if engine is None and not url:
            raise ConfigurationException(message="SQLFeatureStore needs a database URL or an engine")
        self._url = url
        self._owns_engine = engine is None
        self._engine_obj: AsyncEngine | None = engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def _engine(self) -> AsyncEngine:
        if not self._owns_engine:
            assert self._engine_obj is not None
            return self._engine_obj
        loop = asyncio.get_running_loop()
        if self._engine_obj is None or self._loop is not loop:
            assert self._url is not None
            self._engine_obj = _engine_for(self._url)
            self._loop = loop
        return self._engine_obj

    def _init_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def initialize(self) -> None:
        """Create the tables and the version row when missing.

        Safe to call concurrently: callers on one loop wait for one another, and a table created
        by another connection or process meanwhile (PostgreSQL refuses the second
        ``CREATE TABLE`` with a unique violation on its catalog) is taken as created.
        """
        async with self._init_lock():
            await self._create()

    async def _create(self) -> None:
        engine = self._engine()
        for attempt in range(3):
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(feature_metadata.create_all)
                break
            except (IntegrityError, ProgrammingError):  # created concurrently: check again
                if attempt == 2:
                    raise
        try:
            async with engine.begin() as conn:
                found = (
                    await conn.execute(select(version_table.c.id).where(version_table.c.id == 1))
                ).first()
                if found is None:
                    await conn.execute(insert(version_table).values(id=1, version=0))
        except IntegrityError:  # another process created it at the same moment
            pass
        self._ready = True

    async def _ensure(self) -> AsyncEngine:
        if not self._ready:
            async with self._init_lock():
                if not self._ready:  # not done by the caller we waited for
                    await self._create()
        return self._engine()

    async def version(self) -> str:
        engine = await self._ensure()
        async with engine.connect() as conn:
            value = (
                await conn.execute(select(version_table.c.version).where(version_table.c.id == 1))
            ).scalar()
        return str(value or 0)

    async def load(self) -> tuple[str, dict[str, dict[str, Any]]]:
        engine = await self._ensure()
        async with engine.begin() as conn:
            value = (
                await conn.execute(select(version_table.c.version).where(version_table.c.id == 1))
            ).scalar()
            rows = (await conn.execute(select(flags_table.c.name, flags_table.c.body))).all()
        return str(value or 0), {row.name: orjson.loads(row.body) for row in rows}

    async def _bump(self, conn: AsyncConnection) -> None:
        result = await conn.execute(
            sql_update(version_table)
            .where(version_table.c.id == 1)
            .values(version=version_table.c.version + 1)
        )
        if result.rowcount == 0:
            await conn.execute(insert(version_table).values(id=1, version=1))

    async def save(self, name: str, data: dict[str, Any]) -> None:
        engine = await self._ensure()
        body = orjson.dumps(data).decode()
        for attempt in range(2):
            try:
                async with engine.begin() as conn:
                    result = await conn.execute(
                        sql_update(flags_table)
                        .where(flags_table.c.name == name)
                        .values(body=body, updated_at=time.time())
                    )
                    if result.rowcount == 0:
                        await conn.execute(
                            insert(flags_table).values(name=name, body=body, updated_at=time.time())
                        )
                    await self._bump(conn)
                return
            except IntegrityError:  # inserted by another writer meanwhile: update it instead
                if attempt:
                    raise

    async def delete(self, name: str) -> bool:
        engine = await self._ensure()
        async with engine.begin() as conn:
            result = await conn.execute(delete(flags_table).where(flags_table.c.name == name))
            existed = bool(result.rowcount)
            if existed:
                await self._bump(conn)
        return existed

    async def close(self) -> None:
        engine = self._engine_obj
        if engine is None or not self._owns_engine:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self._loop is running:
            await engine.dispose()
        self._engine_obj = None
        self._loop = None
        self._ready = False

    def describe(self) -> str:
        url = self._url or (str(self._engine_obj.url) if self._engine_obj is not None else "sql")
        return f"sql ({url.split(':', 1)[0]})"
