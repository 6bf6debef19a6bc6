"""Several processes writing at once extend one unbroken chain; tampering is then still found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crown_nexus.core.audit import AuditService

N = 200
T = "crown_nexus_audit_records"


def _start_writers(url: str) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.core.audit._writer", url, name, str(N)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[3],
        )
        for name in ("worker-a", "worker-b")
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.stderr.read() if proc.stderr else line
    for proc in procs:  # both are connected: start them together
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    return procs


@pytest.mark.slow
async def test_two_processes_one_chain_then_tampering_found(
    audit: AuditService, audit_url: str, raw_engine: AsyncEngine
) -> None:
    """Two workers append 200 records each at once: one chain of 400; then an edited, a deleted
    and two swapped rows are each found by verify_chain() (SQLite and PostgreSQL)."""
    _start_writers(audit_url)
    verdict = await audit.verify_chain()
    assert verdict.ok, verdict
    assert (verdict.checked, verdict.head_seq) == (2 * N, 2 * N)
    page = await audit.query(actor_id="worker-a")
    assert page.total == N
    async with raw_engine.connect() as conn:
        actors = [r[0] for r in await conn.execute(text(f"SELECT actor_id FROM {T} ORDER BY seq"))]
    assert actors.count("worker-b") == N
    # both really wrote concurrently: their records interleave in the chain
    switches = sum(1 for a, b in zip(actors, actors[1:], strict=False) if a != b)
    assert switches >= 1

    async def tamper(*statements: str) -> None:
        async with raw_engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))

    def broken(verdict) -> dict[int, str]:  # type: ignore[no-untyped-def]
        return {b.seq: b.reason for b in verdict.breaks}

    # an edited row
    await tamper(f"UPDATE {T} SET details = '{{\"i\": -1}}' WHERE seq = 300")
    verdict = await audit.verify_chain()
    assert (verdict.ok, verdict.first_broken, verdict.reason) == (False, 300, "hash_mismatch")
    assert broken(verdict) == {300: "hash_mismatch"}
    # a deleted row: found at the record after it, the edit is still reported
    await tamper(f"DELETE FROM {T} WHERE seq = 200")
    verdict = await audit.verify_chain()
    assert (verdict.ok, verdict.first_broken, verdict.reason) == (False, 201, "gap")
    assert broken(verdict) == {201: "gap", 300: "hash_mismatch"}
    # two swapped rows: both positions (and the link after them) break; the others still show
    await tamper(
        f"UPDATE {T} SET seq = -1 WHERE seq = 100",
        f"UPDATE {T} SET seq = 100 WHERE seq = 101",
        f"UPDATE {T} SET seq = 101 WHERE seq = -1",
    )
    verdict = await audit.verify_chain()
    assert (verdict.ok, verdict.first_broken) == (False, 100)
    found = broken(verdict)
    assert {100, 101, 201, 300} <= set(found) <= {100, 101, 102, 201, 300}
    assert verdict.checked == 2 * N - 1
