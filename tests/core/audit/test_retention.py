"""Retention deletes old records and anchors the chain so the rest still verifies (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crown_nexus.core.audit import AuditService, configure_audit
from crown_nexus.core.exceptions import ValidationException

NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def _aged(audit: AuditService, ages_days: list[int]) -> None:
    for i, age in enumerate(ages_days):
        audit.log_action(f"u{i}", "act", details={"i": i}, timestamp=NOW - timedelta(days=age))
    await audit.flush()


async def test_retention_deletes_old_prefix_and_chain_still_verifies(audit: AuditService) -> None:
    """Records older than the retention go; the anchor keeps verify_chain() true for the rest."""
    await _aged(audit, [100, 90, 80, 40, 10, 1])
    result = await audit.apply_retention(30, now=NOW)
    assert (result.deleted, result.anchor_seq) == (4, 4)
    rows = await audit.recent(10)
    assert [r["seq"] for r in rows] == [5, 6, 7]  # 7 is the retention record itself
    assert rows[0]["prev_hash"] == result.anchor_hash
    assert rows[-1]["action"] == "audit.retention" and rows[-1]["details"]["deleted"] == 4
    verdict = await audit.verify_chain()
    assert verdict.ok and verdict.anchor_seq == 4 and verdict.checked == 3
    again = await audit.apply_retention(30, now=NOW)
    assert again.deleted == 0 and again.anchor_seq == 4


async def test_tampering_after_retention_is_still_found(
    audit: AuditService, raw_engine: AsyncEngine
) -> None:
    """After a purge, deleting the first remaining record or editing one is still detected."""
    await _aged(audit, [100, 90, 10, 5, 1])
    await audit.apply_retention(30, now=NOW)
    async with raw_engine.begin() as conn:
        await conn.execute(text("DELETE FROM crown_nexus_audit_records WHERE seq = 3"))
    verdict = await audit.verify_chain()
    assert (verdict.ok, verdict.first_broken, verdict.reason) == (False, 4, "gap")


async def test_retention_is_stopped_at_the_first_recent_record(audit: AuditService) -> None:
    """Only a prefix is deleted: an old record after a recent one stays (the chain keeps no hole)."""
    await _aged(audit, [100, 5, 100, 1])
    result = await audit.apply_retention(30, now=NOW)
    assert result.deleted == 1
    assert [r["seq"] for r in await audit.recent(10)][:3] == [2, 3, 4]
    assert (await audit.verify_chain()).ok


async def test_retention_of_everything_and_writing_on(audit: AuditService) -> None:
    """When every record is old, all go; new records link to the anchor and verify."""
    await _aged(audit, [90, 80])
    result = await audit.apply_retention(7, now=NOW)
    assert result.deleted == 2 and result.anchor_seq == 2
    await audit.log_action("u9", "after")
    assert (await audit.verify_chain()).ok


async def test_retention_days_come_from_settings(audit_url: str) -> None:
    """CROWN_NEXUS_AUDIT_RETENTION_DAYS (audit_retention_days) is the default; unset keeps all."""
    from crown_nexus.settings import Settings

    audit = AuditService(database_url=audit_url)
    await _aged(audit, [100, 1])
    configure_audit(Settings(database_url=audit_url))
    assert (await audit.apply_retention(now=NOW)).deleted == 0  # no retention configured
    configure_audit(Settings(database_url=audit_url, audit_retention_days=30))
    assert (await audit.apply_retention(now=NOW)).deleted == 1
    assert Settings(CROWN_NEXUS_AUDIT_RETENTION_DAYS="45").audit_retention_days == 45


async def test_bad_retention_is_refused(audit: AuditService) -> None:
    """A retention of zero or negative days is a typed validation error, not a wipe."""
    with pytest.raises(ValidationException):
        await audit.apply_retention(0)
    with pytest.raises(ValidationException):
        await audit.apply_retention(-5)
