"""Retention of the audit trail: delete records older than N days, keeping the chain verifiable.

Owns the cutoff rule. The store deletes only the oldest prefix of the chain and records the
hash of its last deleted record as the anchor (see :meth:`AuditStore.purge_before`), so the
first remaining record still links to something verifiable.
Configure with ``CROWN_NEXUS_AUDIT_RETENTION_DAYS`` (``audit_retention_days``; unset keeps all).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crown_nexus.core.audit.store import AuditStore, PurgeResult
from crown_nexus.core.exceptions import ValidationException

__all__ = ["purge_older_than", "retention_cutoff"]


def retention_cutoff(days: int, now: datetime | None = None) -> datetime:
    """The oldest timestamp kept when records live ``days`` days (``days >= 1``)."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValidationException(
            "audit retention must be a whole number of days, at least 1",
            errors=[{"loc": ["retention_days"], "msg": "must be >= 1", "type": "value_error"}],
        )
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC) - timedelta(days=days)


async def purge_older_than(
    store: AuditStore, days: int | None, now: datetime | None = None
) -> PurgeResult:
    """Delete the records older than ``days`` days (nothing when ``days`` is None)."""
    if days is None:
        await store.ensure_schema()
        async with store.read_sessions() as session:
            from crown_nexus.core.audit.models import AuditChainState

            state = await session.get(AuditChainState, 1)
        if state is None:
            return PurgeResult(0, 0, "")
        return PurgeResult(0, state.anchor_seq, state.anchor_hash)
    return await store.purge_before(retention_cutoff(days, now))
