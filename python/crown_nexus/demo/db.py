"""The reference service's database: SQLAlchemy 2 async on SQLite (default) or PostgreSQL.

Every demo router defines its tables on :class:`Base`; ``create_app`` creates them at start-up.
Use ``Depends(get_db)`` in endpoints for an ``AsyncSession`` bound to the app's engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

__all__ = [
    "SQLITE_MAX_OVERFLOW",
    "SQLITE_POOL_SIZE",
    "SQLITE_PRAGMAS",
    "Base",
    "create_engine_for",
    "get_db",
    "get_sessionmaker",
    "write_engine",
]

#: what every SQLite connection is set to: write-ahead logging (readers never wait for the
#: writer), wait up to 5 s for a lock instead of failing at once, sync at checkpoints only
#: (safe with WAL; a power loss may lose the last commits, never corrupt the file), and a page
#: cache of at most 512 KiB per connection (SQLite's default, 2 MiB, times the pool's 20 kept
#: connections let a worker grow by ~40 MiB as the file grew; another connection's commit
#: invalidates a connection's cache anyway, and the OS caches the file)
SQLITE_PRAGMAS: tuple[tuple[str, str], ...] = (
    ("journal_mode", "WAL"),
    ("busy_timeout", "5000"),
    ("synchronous", "NORMAL"),
    ("cache_size", "-512"),
)


#: SQLite connections the pool keeps open (aiosqlite runs each in its own thread). With
#: SQLAlchemy's default (5 kept, 10 more opened when busy and closed when returned) a loaded
#: service opened and closed ~10 connections a second (a thread and a page cache each): the
#: soak saw the worker's heap fragment, RSS creeping while the memory in use stayed flat
SQLITE_POOL_SIZE = 20
#: connections opened past the pool when it is exhausted (closed when returned)
SQLITE_MAX_OVERFLOW = 20


#: execution option of the engine behind the sessions of requests that write: on SQLite their
#: transactions begin IMMEDIATE (take the write lock first, waiting up to the busy timeout).
#: A transaction that began deferred, read, and then writes after another writer committed is
#: refused by SQLite at once ("database is locked": its snapshot is stale, waiting cannot help),
#: which under a burst of writes answered 500 (now 503) instead of waiting its turn. Other
#: sessions keep ``sqlite3``'s own transactions (begun at the first write, so reads never wait
#: for a writer: WAL). Django 5.1's ``transaction_mode="IMMEDIATE"`` is the same remedy.
WRITE_OPTION = "crown_nexus_demo_write"
#: request methods whose sessions come from the write sessionmaker
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Base(DeclarativeBase):
    """Declarative base of every demo table."""


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for name, value in SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {name}={value}")
    finally:
        cursor.close()


def _begin_sqlite(conn: Any) -> None:
    """``BEGIN IMMEDIATE`` for write sessions (:data:`WRITE_OPTION`). Other sessions keep the
    driver's own transactions: ``sqlite3`` begins one just before the first write, so a
    session's reads before it hold no snapshot that another writer's commit could make stale
    (an explicit deferred ``BEGIN`` would)."""
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def write_engine(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` for sessions that write (:data:`WRITE_OPTION`; the same pool)."""
    return engine.execution_options(**{WRITE_OPTION: True})


def create_engine_for(url: str) -> AsyncEngine:
    """Create the async engine for ``url``.

    SQLite gets a connection that crosses threads and, on every new connection,
    :data:`SQLITE_PRAGMAS` (WAL, a 5 s busy timeout, ``synchronous=NORMAL``), so concurrent
    writers queue briefly instead of failing or stalling readers; transactions on
    :func:`write_engine` begin IMMEDIATE (:data:`WRITE_OPTION`); a file database keeps
    :data:`SQLITE_POOL_SIZE` connections open rather than opening and closing them under load.
    """
    if url.startswith("sqlite"):
        in_memory = ":memory:" in url or "mode=memory" in url or url.rstrip("/").endswith(":")
        pool: dict[str, int] = (
            {} if in_memory else {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_MAX_OVERFLOW}
        )
        engine = create_async_engine(url, connect_args={"check_same_thread": False}, **pool)
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _begin_sqlite)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """The app's session factory (set up by ``create_app``): the write sessionmaker for a
    request whose method writes (:data:`UNSAFE_METHODS`), the default one otherwise."""
    state = request.app.state
    factory: async_sessionmaker[AsyncSession] | None = None
    if request.method in UNSAFE_METHODS:
        factory = getattr(state, "write_sessionmaker", None)
    return factory if factory is not None else state.sessionmaker  # type: ignore[no-any-return]


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one ``AsyncSession`` per request, closed afterwards."""
    async with get_sessionmaker(request)() as session:
        yield session
