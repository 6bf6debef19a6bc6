"""Fixtures of the audit trail tests: an empty trail in a fresh database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from crown_nexus.core.audit import AuditService, close_audit, configure_audit

AUDIT_TABLES = ("crown_nexus_audit_records", "crown_nexus_audit_chain")


async def drop_audit_tables(url: str) -> None:
    """Remove the audit tables so a test starts with an empty trail."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table in AUDIT_TABLES:
                await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    finally:
        await engine.dispose()


@pytest.fixture
async def audit_url(database_url: str) -> AsyncIterator[str]:
    """``database_url`` with no audit tables; the audit I/O thread is closed afterwards."""
    close_audit()
    await drop_audit_tables(database_url)
    previous = configure_audit(**_current())
    try:
        yield database_url
    finally:
        close_audit()
        configure_audit(**previous)
        await drop_audit_tables(database_url)  # leave no tampered trail behind


@pytest.fixture
def audit(audit_url: str) -> AuditService:
    """An ``AuditService`` writing to the test's database."""
    return AuditService(database_url=audit_url)


@pytest.fixture
async def raw_engine(audit_url: str) -> AsyncIterator[AsyncEngine]:
    """A plain engine on the test's database, for tampering with rows directly."""
    engine = create_async_engine(audit_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _current() -> dict[str, Any]:
    """The audit configuration in force (configure_audit returns it and is then restored)."""
    previous = configure_audit()
    configure_audit(**previous)
    return previous
