"""Shared helpers for the guide example tests: an app built with ``setup_app``, the error body check, the user's SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.settings import Settings

ERROR_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}


def guide_app(*routers: APIRouter, **settings: Any) -> FastAPI:
    """A FastAPI app with the guide's routers mounted and ``setup_app`` applied."""
    app = FastAPI()
    for router in routers:
        app.include_router(router)
    setup_app(
        app,
        Settings(**settings),
    )
    return app


def assert_error_body(body: dict[str, Any], code: str, message: str | None = None) -> None:
    """``body`` is the SPEC §3 error body with ``code`` (and ``message`` when given)."""
    assert set(body) == ERROR_KEYS, body
    assert body["success"] is False
    assert body["code"] == code
    if message is not None:
        assert body["message"] == message
    assert isinstance(body["request_id"], str) and body["request_id"]
    ts = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0


def data_of(body: dict[str, Any]) -> Any:
    """The original body of a successful response (unwraps the ResponseFormatter envelope)."""
    if isinstance(body, dict) and body.get("success") is True and "data" in body:
        return body["data"]
    return body


@contextmanager
def registered(name: str, factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Register the user's ``factory`` as service ``name`` (as the guide's code would), removed after."""
    from crown_nexus.core.dependency_manager import (
        has_service,
        register_service,
        unregister_service,
    )

    assert not has_service(name), f"service {name!r} is already registered"
    register_service(factory, name=name)
    try:
        yield factory
    finally:
        unregister_service(name)


@asynccontextmanager
async def sqlite_database(
    base: Any, *rows: Any, path: Path | None = None
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The user's SQLite database (in memory, or the file at ``path``): ``base``'s tables holding ``rows``.

    Yields its session factory; the engine is disposed after.
    """
    engine = create_async_engine(f"sqlite+aiosqlite:///{path or ':memory:'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(base.metadata.create_all)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        if rows:
            async with sessions() as session:
                session.add_all(rows)
                await session.commit()
        yield sessions
    finally:
        await engine.dispose()
