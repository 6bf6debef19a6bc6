"""The reference service's database: SQLAlchemy 2 async on SQLite (default) or PostgreSQL.

Every demo router defines its tables on :class:`Base`; ``create_app`` creates them at start-up.
Use ``Depends(get_db)`` in endpoints for an ``AsyncSession`` bound to the app's engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

__all__ = ["Base", "create_engine_for", "get_db", "get_sessionmaker"]


class Base(DeclarativeBase):
    """Declarative base of every demo table."""


def create_engine_for(url: str) -> AsyncEngine:
    """Create the async engine for ``url`` (SQLite gets a connection that crosses threads)."""
    if url.startswith("sqlite"):
        return create_async_engine(url, connect_args={"check_same_thread": False})
    return create_async_engine(url, pool_pre_ping=True)


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """The app's session factory (set up by ``create_app``)."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return factory


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one ``AsyncSession`` per request, closed afterwards."""
    async with get_sessionmaker(request)() as session:
        yield session
