"""verify_chain() finds rows changed, deleted or reordered directly in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crown_nexus.core.audit import AuditService, canonical_encoding, record_hash
from crown_nexus.core.audit.chain import GENESIS_HASH

T = "crown_nexus_audit_records"


async def _fill(audit: AuditService, n: int = 10) -> None:
    for i in range(n):
        audit.log_action(f"u{i}", "act", resource_id=f"r{i}", details={"i": i})
    await audit.flush()


async def _sql(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def test_intact_chain_verifies(audit: AuditService) -> None:
    """An untouched chain verifies and reports every record checked."""
    assert (await audit.verify_chain()).ok  # empty trail
    await _fill(audit)
    result = await audit.verify_chain()
    assert result.ok and bool(result) and result.checked == 10 and result.head_seq == 10
    assert result.first_broken is None and result.reason is None


async def test_edited_row_is_found(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """Changing one record's details (or actor) breaks the chain exactly there."""
    await _fill(audit)
    await _sql(raw_engine, f"UPDATE {T} SET details = '{{\"i\": 99}}' WHERE seq = 4")
    result = await audit.verify_chain()
    assert not result.ok and result.first_broken == 4 and result.reason == "hash_mismatch"
    assert result.to_dict()["first_broken"] == 4


async def test_edited_actor_is_found(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """Changing a typed column (the actor) is found too."""
    await _fill(audit)
    await _sql(raw_engine, f"UPDATE {T} SET actor_id = 'mallory' WHERE seq = 7")
    result = await audit.verify_chain()
    assert (result.ok, result.first_broken, result.reason) == (False, 7, "hash_mismatch")


async def test_rehashed_edit_is_found(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """An edit whose own hash is recomputed still breaks the link from the next record."""
    await _fill(audit)
    async with raw_engine.begin() as conn:
        row = (await conn.execute(text(f"SELECT * FROM {T} WHERE seq = 5"))).mappings().one()
        fields = dict(row, actor_id="mallory")
        created = fields["created_at"]
        if isinstance(created, str):
            created = datetime.fromisoformat(created)
        fields["created_at"] = created if created.tzinfo else created.replace(tzinfo=UTC)
        if isinstance(fields["details"], str):
            import json

            fields["details"] = json.loads(fields["details"])
        new_hash = record_hash(fields)
        await conn.execute(
            text(f"UPDATE {T} SET actor_id = 'mallory', hash = :h WHERE seq = 5"), {"h": new_hash}
        )
    result = await audit.verify_chain()
    assert (result.ok, result.first_broken, result.reason) == (False, 6, "prev_mismatch")


async def test_deleted_row_is_found(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """Deleting a record in the middle leaves a gap found at the next record."""
    await _fill(audit)
    await _sql(raw_engine, f"DELETE FROM {T} WHERE seq = 6")
    result = await audit.verify_chain()
    assert (result.ok, result.first_broken, result.reason) == (False, 7, "gap")


async def test_deleted_tail_is_found(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """Deleting the newest records is found against the recorded head."""
    await _fill(audit)
    await _sql(raw_engine, f"DELETE FROM {T} WHERE seq >= 9")
    result = await audit.verify_chain()
    assert (result.ok, result.first_broken, result.reason) == (False, 9, "missing_tail")


async def test_deleted_first_row_is_found(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """Deleting the oldest record (without an anchor from retention) is found."""
    await _fill(audit)
    await _sql(raw_engine, f"DELETE FROM {T} WHERE seq = 1")
    result = await audit.verify_chain()
    assert (result.ok, result.first_broken, result.reason) == (False, 2, "gap")


async def test_swapped_rows_are_found(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """Swapping two records' positions (their seq) is found at the first of them."""
    await _fill(audit)
    await _sql(
        raw_engine,
        f"UPDATE {T} SET seq = -1 WHERE seq = 3",
        f"UPDATE {T} SET seq = 3 WHERE seq = 4",
        f"UPDATE {T} SET seq = 4 WHERE seq = -1",
    )
    result = await audit.verify_chain()
    assert (result.ok, result.first_broken) == (False, 3)
    assert result.reason in ("prev_mismatch", "hash_mismatch")


async def test_swapped_contents_are_found(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """Swapping two records' contents (hashes included) while keeping seq is found."""
    await _fill(audit)
    cols = "actor_id, resource_id, details, prev_hash, hash"
    async with raw_engine.begin() as conn:
        a = (await conn.execute(text(f"SELECT {cols} FROM {T} WHERE seq = 2"))).mappings().one()
        b = (await conn.execute(text(f"SELECT {cols} FROM {T} WHERE seq = 8"))).mappings().one()
        for seq, row in ((2, b), (8, a)):
            details = row["details"]
            if not isinstance(details, str):
                import json

                details = json.dumps(details)
            await conn.execute(
                text(
                    f"UPDATE {T} SET actor_id=:actor_id, resource_id=:resource_id, "
                    f"details=:details, prev_hash=:prev_hash, hash=:hash WHERE seq=:seq"
                ),
                {**row, "details": details, "seq": seq},
            )
    result = await audit.verify_chain()
    assert (result.ok, result.first_broken) == (False, 2)


async def test_inserted_row_is_found(audit: AuditService, raw_engine: AsyncEngine) -> None:
    """A forged record appended after the recorded head is found."""
    await _fill(audit, 3)
    await _sql(
        raw_engine,
        f"INSERT INTO {T} (seq, created_at, action, details, prev_hash, hash) "
        f"VALUES (4, '2026-01-01 00:00:00', 'forged', '{{}}', 'x', 'y')",
    )
    result = await audit.verify_chain()
    assert (result.ok, result.first_broken, result.reason) == (False, 4, "beyond_head")


def test_canonical_encoding_is_fixed() -> None:
    """The encoding is sorted-key compact JSON with UTC microsecond timestamps (documented form)."""
    fields = {
        "seq": 1,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "actor_id": "u1",
        "action": "login",
        "details": {"b": 1, "a": "é"},
        "prev_hash": GENESIS_HASH,
    }
    encoded = canonical_encoding(fields)
    assert encoded == (
        '{"action":"login","actor_id":"u1","client_ip":null,"details":{"a":"é","b":1},'
        '"prev":"' + GENESIS_HASH + '","request_id":null,"resource_id":null,'
        '"resource_type":null,"seq":1,"target_id":null,"ts":"2026-01-02T03:04:05.000006Z","v":1}'
    ).encode()
    import hashlib

    assert record_hash(fields) == hashlib.sha256(encoded).hexdigest()
    with pytest.raises(ValueError):
        canonical_encoding({**fields, "details": {"x": float("inf")}})


async def test_every_independent_tampering_is_listed(
    audit: AuditService, raw_engine: AsyncEngine
) -> None:
    """An edit, a deletion and a swap at different places are each reported in ``breaks``."""
    await _fill(audit, 20)
    await _sql(
        raw_engine,
        f"UPDATE {T} SET resource_id = 'other' WHERE seq = 3",
        f"DELETE FROM {T} WHERE seq = 9",
        f"UPDATE {T} SET seq = -1 WHERE seq = 14",
        f"UPDATE {T} SET seq = 14 WHERE seq = 15",
        f"UPDATE {T} SET seq = 15 WHERE seq = -1",
    )
    result = await audit.verify_chain()
    assert (result.ok, result.first_broken, result.reason) == (False, 3, "hash_mismatch")
    found = {b.seq: b.reason for b in result.breaks}
    assert found[3] == "hash_mismatch" and found[10] == "gap"
    assert found[14] == "prev_mismatch" and found[15] == "prev_mismatch"
    assert set(found) <= {3, 10, 14, 15, 16}
    assert result.to_dict()["breaks"][0] == {"seq": 3, "reason": "hash_mismatch", "detail": result.detail}
