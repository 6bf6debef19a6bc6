"""The audit trail stores typed, redacted records durably and answers queries (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from crown_nexus.core.audit import (
    AuditService,
    close_audit,
    configure_audit,
    record_hash,
)
from crown_nexus.core.audit.chain import GENESIS_HASH
from crown_nexus.core.exceptions import ValidationException
from crown_nexus.core.pagination import CursorPaginationParams, InvalidCursorException
from crown_nexus.logging import request_context


async def test_log_action_stores_typed_redacted_record(audit: AuditService) -> None:
    """§14's call shape: every column is stored, secrets in details are redacted, the chain starts at genesis."""
    with request_context(request_id="req-1"):
        stored = await audit.log_action(
            user_id=7,
            action="document_share",
            resource_type="Document",
            resource_id="d1",
            target_id="u9",
            details={"permissions": ["read"], "password": "hunter2", "token": "abc"},
            client_ip="203.0.113.5",
        )
    assert stored["seq"] == 1 and stored["prev_hash"] == GENESIS_HASH
    assert stored["actor_id"] == "7" and stored["action"] == "document_share"
    assert (stored["resource_type"], stored["resource_id"], stored["target_id"]) == (
        "Document",
        "d1",
        "u9",
    )
    assert stored["details"]["permissions"] == ["read"]
    assert stored["details"]["password"] == "[REDACTED]"
    assert stored["details"]["token"] == "[REDACTED]"
    assert stored["request_id"] == "req-1" and stored["client_ip"] == "203.0.113.5"
    assert stored["timestamp"].endswith("Z") and len(stored["timestamp"]) == 27
    [again] = await audit.recent(1)
    assert again == stored


async def test_records_survive_a_restart(audit_url: str) -> None:
    """A record written before the I/O thread and engines are closed is read back by a new service."""
    await AuditService(database_url=audit_url).log_action("u1", "login")
    close_audit()
    [row] = await AuditService(database_url=audit_url).recent(5)
    assert (row["actor_id"], row["action"]) == ("u1", "login")
    assert (await AuditService(database_url=audit_url).verify_chain()).ok


async def test_unawaited_and_sync_calls_are_written(audit: AuditService) -> None:
    """§4 calls log_action without awaiting (also from a thread with no loop): the record is still written."""
    audit.log_action("u1", "order_processed", order_id="o-7")
    done = threading.Event()
    results: list[dict] = []

    def from_plain_thread() -> None:
        results.append(audit.log_action("u2", "sync_action").result(timeout=30))
        done.set()

    threading.Thread(target=from_plain_thread).start()
    assert done.wait(30)
    rows = await audit.recent(10)
    assert [(r["actor_id"], r["action"]) for r in rows] == [
        ("u1", "order_processed"),
        ("u2", "sync_action"),
    ]
    assert rows[0]["details"] == {"order_id": "o-7"}
    assert results[0]["seq"] == 2


async def test_bad_input_is_a_validation_error(audit: AuditService) -> None:
    """An empty action or an over-long field is refused with a typed 422 error before anything is written."""
    with pytest.raises(ValidationException) as empty:
        audit.log_action("u1", "")
    assert empty.value.status_code == 422
    with pytest.raises(ValidationException):
        audit.log_action("u1", "x" * 256)
    with pytest.raises(ValidationException):
        audit.log_action("u1", "ok", resource_id="r" * 300)
    assert await audit.recent(5) == []


async def test_details_that_are_not_json_are_normalised(audit: AuditService) -> None:
    """Datetimes, sets, tuples, NaN and objects in details become JSON and still verify."""
    when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    stored = await audit.log_action(
        "u1",
        "odd",
        details={"when": when, "tags": {"b", "a"}, "pair": (1, 2), "nan": float("nan"), "obj": object},
    )
    assert stored["details"]["when"] == when.isoformat()
    assert stored["details"]["tags"] == ["a", "b"]
    assert stored["details"]["pair"] == [1, 2] and stored["details"]["nan"] == "nan"
    assert (await audit.verify_chain()).ok


async def test_query_filters_and_cursor_pagination(audit: AuditService) -> None:
    """Query by actor, resource, action and time range; pages follow the library's signed cursors."""
    base = datetime(2026, 3, 1, tzinfo=UTC)
    for i in range(12):
        audit.log_action(
            f"user{i % 3}",
            "product_update" if i % 2 else "login",
            resource_type="Product" if i % 2 else None,
            resource_id=f"p{i % 4}" if i % 2 else None,
            timestamp=base + timedelta(hours=i),
        )
    await audit.flush()
    by_actor = await audit.query(actor_id="user1")
    assert [r["seq"] for r in by_actor.items] == [2, 5, 8, 11] and by_actor.total == 4
    by_action = await audit.query(action="product_update", resource_type="Product", resource_id="p1")
    assert [r["seq"] for r in by_action.items] == [2, 6, 10]
    window = await audit.query(since=base + timedelta(hours=3), until=base + timedelta(hours=6))
    assert [r["seq"] for r in window.items] == [4, 5, 6]

    first = await audit.query(params=CursorPaginationParams(limit=5), newest_first=True)
    assert [r["seq"] for r in first.items] == [12, 11, 10, 9, 8] and first.has_next
    second = await audit.query(
        params=CursorPaginationParams(limit=5, cursor=first.next_cursor), newest_first=True
    )
    assert [r["seq"] for r in second.items] == [7, 6, 5, 4, 3]
    with pytest.raises(InvalidCursorException):
        await audit.query(params=CursorPaginationParams(cursor="bogus"))


async def test_export_jsonl_reverifies_offline(audit: AuditService, tmp_path) -> None:
    """The JSON-lines export holds every record; re-hashing the lines reproduces each hash and link."""
    for i in range(7):
        audit.log_action(f"u{i}", "act", details={"i": i, "api_key": "sk-live"})
    lines = [line async for line in audit.export_jsonl()]
    assert len(lines) == 7 and all(line.endswith("\n") for line in lines)
    path = tmp_path / "audit.jsonl"
    assert await audit.export_to(str(path)) == 7
    assert path.read_text().splitlines(keepends=True) == lines
    prev = GENESIS_HASH
    for line in lines:
        rec = json.loads(line)
        assert rec["details"]["api_key"] == "[REDACTED]"
        fields = dict(rec, created_at=datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")))
        assert rec["prev_hash"] == prev and record_hash(fields) == rec["hash"]
        prev = rec["hash"]
    only = [json.loads(x)["actor_id"] async for x in audit.export_jsonl(actor_id="u3")]
    assert only == ["u3"]


async def test_default_service_follows_configure_audit(audit_url: str) -> None:
    """The shared audit_service writes to the URL given by configure_audit (from settings too)."""
    from crown_nexus.core.audit import audit_service
    from crown_nexus.settings import Settings

    configure_audit(Settings(database_url=audit_url))
    assert audit_service.database_url == audit_url
    await audit_service.log_action(user_id="u1", action="configured")
    [row] = await AuditService(database_url=audit_url).recent(1)
    assert row["action"] == "configured"


async def test_service_bound_to_a_session_writes_to_its_database(audit_url: str) -> None:
    """get_service("audit_service", db=session) writes to the session's database (§4)."""
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from crown_nexus.core.dependency_manager import get_service

    engine = create_async_engine(audit_url)
    try:
        async with AsyncSession(engine) as db:
            service = get_service("audit_service", db=db)
            assert service.db is db and service.database_url == audit_url
            await service.log_user_update("u5", {"name": "Eve", "email": "e@example.com"})
    finally:
        await engine.dispose()
    [row] = await AuditService(database_url=audit_url).recent(1)
    assert (row["action"], row["resource_type"], row["resource_id"]) == ("user_update", "User", "u5")
    assert row["details"] == {"fields": ["email", "name"]}


async def test_unreachable_database_is_a_typed_error() -> None:
    """With the database down, awaiting a write or a read raises DatabaseUnavailableException
    (503 + Retry-After: worth retrying), never a raw driver error."""
    from crown_nexus.core.exceptions import ConfigurationException, DatabaseUnavailableException

    down = AuditService(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    pending = down.log_action("u1", "lost")  # queuing itself does not raise
    with pytest.raises(DatabaseUnavailableException) as write:
        await pending
    assert write.value.status_code == 503 and write.value.headers["Retry-After"] == "1"
    with pytest.raises(DatabaseUnavailableException):
        await down.verify_chain()
    with pytest.raises(ConfigurationException):
        AuditService(database_url="nosuchdriver://x").log_action("u1", "x")
    close_audit()


_FORK_SCRIPT = """
import os, sys, time
from crown_nexus.core.audit import AuditService

audit = AuditService(database_url=sys.argv[1])
audit.log_action("parent", "before_fork").result(timeout=30)
pid = os.fork()
if pid == 0:  # the child: write synchronously through a fresh I/O thread, then leave
    code = 1
    try:
        audit.log_action("child", "in_child").result(timeout=30)
        code = 0
    finally:
        os._exit(code)
deadline = time.monotonic() + 60
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        sys.exit("forked child did not finish")
    time.sleep(0.05)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
async def test_forked_child_writes_through_its_own_thread(audit: AuditService, audit_url: str) -> None:
    """A prefork worker forked after the parent wrote still appends to the same chain.

    The fork happens in a fresh single-threaded interpreter, as a prefork server's master is:
    forking pytest itself (threads of earlier tests holding locks) could hang the child.
    """
    import subprocess
    import sys

    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _FORK_SCRIPT, audit_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = await audit.recent(5)
    assert [r["action"] for r in rows] == ["before_fork", "in_child"]
    assert (await audit.verify_chain()).ok


async def test_tables_dropped_under_a_running_process_are_recreated(audit: AuditService, audit_url: str) -> None:
    """If the audit tables vanish while a process runs, one write fails (typed) and the next recreates them."""
    from crown_nexus.core.exceptions import DatabaseException
    from tests.core.audit.conftest import drop_audit_tables

    await audit.log_action("u1", "first")
    await drop_audit_tables(audit_url)
    with pytest.raises(DatabaseException):
        await audit.log_action("u1", "lost")
    stored = await audit.log_action("u1", "again")
    assert stored["seq"] == 1 and (await audit.verify_chain()).ok
