"""A database that cannot serve now is a 503 with Retry-After, not a 500 (real SQLite and PostgreSQL).

Seen in the reference service's soak: SQLite's write lock stayed busy past its timeout under
load and the request answered 500 -- a client was told its request was broken when a retry
would have worked. Bugs (a missing table, a duplicate key) stay 500.
"""

from __future__ import annotations

import socket
import sqlite3
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from crown_nexus.core.exceptions import (
    DatabaseUnavailableException,
    ErrorCode,
    install_exception_handlers,
    render_exception,
)
from crown_nexus.core.exceptions._database import transient_database_error
from crown_nexus.settings import Settings

KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}


class _DriverError(Exception):
    """A driver error carrying a SQLSTATE, as asyncpg's and psycopg's do."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    return sa_exc.OperationalError("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_wrapped(sqlite3.OperationalError("database is locked")), True),
        (_wrapped(sqlite3.OperationalError("database table is locked: items")), True),
        (_wrapped(sqlite3.OperationalError("no such table: items")), False),
        (_wrapped(sqlite3.OperationalError("unable to open database file")), False),
        (_wrapped(ValueError("anything"), invalidated=True), True),
        (_wrapped(ConnectionRefusedError(111, "Connection refused")), True),
        (_wrapped(FileNotFoundError(2, "No such file")), False),
        (_wrapped(_DriverError("08006")), True),  # connection failure
        (_wrapped(_DriverError("53300")), True),  # too many connections
        (_wrapped(_DriverError("57P01")), True),  # admin shutdown
        (_wrapped(_DriverError("40001")), True),  # serialization failure
        (_wrapped(_DriverError("40P01")), True),  # deadlock
        (_wrapped(_DriverError("55P03")), True),  # lock not available
        (sa_exc.IntegrityError("INSERT", {}, _DriverError("23505")), False),  # unique violation
        (sa_exc.ProgrammingError("SELECT", {}, _DriverError("42P01")), False),  # undefined table
        (sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"), True),
        (sa_exc.NoResultFound("No row was found"), False),
        (ValueError("database is locked"), False),  # not a database error at all
        (ConnectionRefusedError(111, "refused"), False),  # bare: a network error (below)
        (_DriverError("57P03"), True),  # bare asyncpg CannotConnectNowError at connect
        (_DriverError("23505"), False),
    ],
)
def test_which_errors_are_transient(error: BaseException, transient: bool) -> None:
    """Connection loss, transient SQLSTATEs, pool timeouts and SQLite busy are transient; bugs are not."""
    assert transient_database_error(error) is transient
    status, body, headers = render_exception(error, production=True)
    network = isinstance(error, ConnectionError)
    assert status == (503 if transient or network else 500)
    assert ("Retry-After" in headers) is (transient or network)
    if network:
        assert b"NETWORK_ERROR" in body


def test_the_typed_exception_renders_the_same_way() -> None:
    """``DatabaseUnavailableException`` is a 503 with Retry-After and no internals in production."""
    exc = DatabaseUnavailableException("replica lag on orders_db", retry_after=3)
    status, body, headers = render_exception(exc, production=True)
    assert (status, headers["Retry-After"]) == (503, "3")
    assert b"orders_db" not in body and b"DATABASE_UNAVAILABLE" in body


def _app(engine: AsyncEngine, statements: list[str], *, production: bool = True) -> FastAPI:
    app = FastAPI()
    app.state.settings = (
        Settings(ENVIRONMENT="production", secret_key="p" * 40)
        if production
        else Settings(ENVIRONMENT="development")
    )
    install_exception_handlers(app)

    @app.post("/write")
    async def write() -> dict[str, bool]:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
        return {"ok": True}

    return app


async def _post(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post("/write")


def _assert_unavailable(
    response: httpx.Response, *, hidden: str, code: str = ErrorCode.DATABASE_UNAVAILABLE
) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    body = response.json()
    assert set(body) == KEYS and body["success"] is False
    assert body["code"] == code
    assert hidden not in response.text.lower()


async def test_sqlite_write_lock_busy_is_503(tmp_path: Any) -> None:
    """Another writer holds SQLite's lock past the busy timeout: 503 + Retry-After, no internals."""
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held for the whole request
    holder.execute("INSERT INTO items (name) VALUES ('held')")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.05})
    try:
        response = await _post(_app(engine, ["INSERT INTO items (name) VALUES ('x')"]))
        _assert_unavailable(response, hidden="locked")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await engine.dispose()
    # once the lock is free the same request succeeds: it was worth retrying
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.05})
    try:
        assert (await _post(_app(engine, ["INSERT INTO items (name) VALUES ('x')"]))).status_code == 200
    finally:
        await engine.dispose()


async def test_sqlite_missing_table_stays_500(tmp_path: Any) -> None:
    """A bug is not an outage: a missing table is still a 500 INTERNAL_SERVER_ERROR."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        response = await _post(_app(engine, ["INSERT INTO nowhere (name) VALUES ('x')"]))
    finally:
        await engine.dispose()
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    assert response.json()["code"] == ErrorCode.INTERNAL_SERVER_ERROR


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(postgres_url)
    yield engine
    await engine.dispose()


async def test_postgres_lock_not_available_is_503(pg_engine: AsyncEngine) -> None:
    """A row lock held by another transaction past ``lock_timeout`` (55P03): 503, not 500."""
    table = f"lock_{uuid.uuid4().hex[:12]}"
    async with pg_engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {table} (id INT PRIMARY KEY, n INT)"))
        await conn.execute(text(f"INSERT INTO {table} VALUES (1, 0)"))
    holder = await pg_engine.connect()
    try:
        await holder.execute(text(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE"))
        response = await _post(
            _app(
                pg_engine,
                [
                    "SET LOCAL lock_timeout = '50ms'",
                    f"UPDATE {table} SET n = n + 1 WHERE id = 1",
                ],
            )
        )
        _assert_unavailable(response, hidden=table)
    finally:
        await holder.rollback()
        await holder.close()
        async with pg_engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))


async def test_postgres_duplicate_key_stays_500(pg_engine: AsyncEngine) -> None:
    """A unique violation is the application's bug or a conflict it must handle: still 500."""
    table = f"dup_{uuid.uuid4().hex[:12]}"
    async with pg_engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {table} (id INT PRIMARY KEY)"))
    try:
        response = await _post(
            _app(pg_engine, [f"INSERT INTO {table} VALUES (1)", f"INSERT INTO {table} VALUES (1)"])
        )
        assert response.status_code == 500
        assert "Retry-After" not in response.headers
    finally:
        async with pg_engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))


async def test_postgres_server_unreachable_is_503(postgres_url: str) -> None:
    """No server listening where the database should be: 503 + Retry-After, not 500 (asyncpg
    raises the ``ConnectionRefusedError`` bare, so it is a NETWORK_ERROR)."""
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = postgres_url.split("@", 1)[0] + f"@127.0.0.1:{port}/postgres"
    engine = create_async_engine(url, connect_args={"timeout": 2})
    try:
        response = await _post(_app(engine, ["SELECT 1"]))
    finally:
        await engine.dispose()
    _assert_unavailable(response, hidden=str(port), code=ErrorCode.NETWORK_ERROR)


async def test_development_names_the_error_type(tmp_path: Any) -> None:
    """In development the 503 says which exception it was (never its text)."""
    path = tmp_path / "dev.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
    holder.execute("BEGIN IMMEDIATE")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.05})
    try:
        response = await _post(
            _app(engine, ["INSERT INTO items DEFAULT VALUES"], production=False)
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await engine.dispose()
    assert response.status_code == 503
    assert "OperationalError" in response.json()["message"]
    assert "locked" not in response.text
