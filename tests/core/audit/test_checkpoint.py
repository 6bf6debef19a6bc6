"""Signed checkpoints find what the chain alone cannot: a history rewritten whole by someone who
can write to the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crown_nexus.core.audit import AuditService, Checkpoint, record_hash
from crown_nexus.core.audit.chain import GENESIS_HASH
from crown_nexus.core.exceptions import ConfigurationException, ValidationException

T = "crown_nexus_audit_records"
KEY = "checkpoint-key-" + "k" * 40


async def _fill(audit: AuditService, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        audit.log_action(f"u{i}", "act", resource_id=f"r{i}", details={"i": i})
    await audit.flush()


async def _rewrite_from(engine: AsyncEngine, first: int) -> None:
    """The attack: from record ``first`` on, make ``mallory`` the actor and recompute every hash
    and the chain-state head, so the chain is consistent again."""
    async with engine.begin() as conn:
        rows = (await conn.execute(text(f"SELECT * FROM {T} ORDER BY seq"))).mappings().all()
        prev = None
        for row in rows:
            fields: dict[str, Any] = dict(row)
            if fields["seq"] < first:
                prev = fields["hash"]
                continue
            created = fields["created_at"]
            if isinstance(created, str):
                created = datetime.fromisoformat(created)
            fields["created_at"] = created if created.tzinfo else created.replace(tzinfo=UTC)
            if isinstance(fields["details"], str):
                fields["details"] = json.loads(fields["details"])
            fields["actor_id"] = "mallory"
            fields["prev_hash"] = prev if prev is not None else fields["prev_hash"]
            fields.pop("hash")
            prev = record_hash(fields)
            await conn.execute(
                text(f"UPDATE {T} SET actor_id = 'mallory', prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": fields["prev_hash"], "h": prev, "s": fields["seq"]},
            )
        await conn.execute(
            text("UPDATE crown_nexus_audit_chain SET head_hash = :h WHERE id = 1"), {"h": prev}
        )


async def test_checkpoint_then_more_records_verifies(audit: AuditService) -> None:
    """A checkpoint stays valid while the trail grows; it is JSON data and logged."""
    await _fill(audit, 5)
    checkpoint = await audit.checkpoint(secret_key=KEY)
    assert (checkpoint.seq, len(checkpoint.hash), len(checkpoint.signature)) == (5, 64, 64)
    await _fill(audit, 5, start=5)
    stored = json.loads(json.dumps(checkpoint.to_dict()))  # kept outside the database
    result = await audit.verify_checkpoint(stored, secret_key=KEY)
    assert result.ok and result.reason is None and result.chain is not None
    assert result.chain.head_seq == 10


async def test_a_whole_rewrite_passes_the_chain_but_not_the_checkpoint(
    audit: AuditService, raw_engine: AsyncEngine
) -> None:
    """The attack: records 3.. rewritten and re-hashed with the head updated -- verify_chain()
    is satisfied, the checkpoint taken before is not."""
    await _fill(audit, 8)
    checkpoint = await audit.checkpoint(secret_key=KEY)
    await _rewrite_from(raw_engine, 3)
    assert (await audit.verify_chain()).ok  # invisible to the chain alone
    result = await audit.verify_checkpoint(checkpoint, secret_key=KEY)
    assert (result.ok, result.reason) == (False, "rewritten")


async def test_truncation_is_found(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """Records after a point deleted and the head moved back: the chain verifies, the
    checkpoint says the chain now ends before it."""
    await _fill(audit, 6)
    checkpoint = await audit.checkpoint(secret_key=KEY)
    async with raw_engine.begin() as conn:
        head = (await conn.execute(text(f"SELECT hash FROM {T} WHERE seq = 4"))).scalar_one()
        await conn.execute(text(f"DELETE FROM {T} WHERE seq > 4"))
        await conn.execute(
            text("UPDATE crown_nexus_audit_chain SET head_seq = 4, head_hash = :h WHERE id = 1"),
            {"h": head},
        )
    assert (await audit.verify_chain()).ok
    result = await audit.verify_checkpoint(checkpoint, secret_key=KEY)
    assert (result.ok, result.reason) == (False, "truncated")


@pytest.mark.parametrize("field", ["seq", "hash", "created_at"])
async def test_a_changed_field_or_another_key_is_a_bad_signature(
    audit: AuditService, field: str
) -> None:
    """Moving the checkpoint (another seq, hash or time) or signing with another key fails."""
    await _fill(audit, 3)
    data = (await audit.checkpoint(secret_key=KEY)).to_dict()
    changed = dict(data)
    changed[field] = {
        "seq": 2,
        "hash": "f" * 64,
        "created_at": "2020-01-01T00:00:00.000000Z",
    }[field]
    assert (await audit.verify_checkpoint(changed, secret_key=KEY)).reason == "bad_signature"
    other = await audit.verify_checkpoint(data, secret_key="another-key-" + "x" * 40)
    assert (other.ok, other.reason) == (False, "bad_signature")


async def test_an_edit_is_a_broken_chain(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """A plain edit (not re-hashed) is reported through the chain's own verification."""
    await _fill(audit, 4)
    checkpoint = await audit.checkpoint(secret_key=KEY)
    async with raw_engine.begin() as conn:
        await conn.execute(text(f"UPDATE {T} SET action = 'other' WHERE seq = 2"))
    result = await audit.verify_checkpoint(checkpoint, secret_key=KEY)
    assert (result.ok, result.reason) == (False, "chain_broken")
    assert result.chain is not None and result.chain.first_broken == 2


async def test_empty_trail_and_retention(audit: AuditService) -> None:
    """Seq 0 is the genesis; a checkpoint older than what retention kept cannot be confirmed."""
    empty = await audit.checkpoint(secret_key=KEY)
    assert (empty.seq, empty.hash) == (0, GENESIS_HASH)
    assert (await audit.verify_checkpoint(empty, secret_key=KEY)).ok
    await _fill(audit, 3)
    early = await audit.checkpoint(secret_key=KEY)
    await _fill(audit, 5, start=3)
    at_anchor = await audit.checkpoint(secret_key=KEY)  # seq 8, the last record retention takes
    purged = await audit.apply_retention(1, now=datetime.now(UTC) + timedelta(days=1, seconds=1))
    assert purged.anchor_seq == 8
    result = await audit.verify_checkpoint(early, secret_key=KEY)
    assert (result.ok, result.reason) == (False, "before_anchor")
    assert (await audit.verify_checkpoint(at_anchor, secret_key=KEY)).ok  # the anchor's hash


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {"seq": 1},
        {"seq": -1, "hash": "a" * 64, "created_at": "2026-01-01T00:00:00.000000Z", "signature": "b" * 64},
        {"seq": True, "hash": "a" * 64, "created_at": "2026-01-01T00:00:00.000000Z", "signature": "b" * 64},
        {"seq": 1, "hash": "A" * 64, "created_at": "2026-01-01T00:00:00.000000Z", "signature": "b" * 64},
        {"seq": 1, "hash": "a" * 64, "created_at": "yesterday", "signature": "b" * 64},
        {"seq": 1, "hash": "a" * 64, "created_at": "2026-01-01T00:00:00.000000Z", "signature": 5},
        {"seq": 1, "hash": "a" * 64, "created_at": "2026-01-01T00:00:00.000000Z", "signature": "b" * 64, "x": 1},
    ],
)
def test_malformed_checkpoints_are_422(bad: Any) -> None:
    """Anything but the four typed fields is a ValidationException, never a crash."""
    with pytest.raises(ValidationException):
        Checkpoint.from_dict(bad)


async def test_no_key_is_a_configuration_error(audit: AuditService) -> None:
    """Signing needs a key: an empty one is refused, never a checkpoint signed with nothing."""
    with pytest.raises(ConfigurationException):
        Checkpoint.create(1, "a" * 64, datetime.now(UTC), b"")
