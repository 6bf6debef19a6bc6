"""Export of the audit trail as JSON lines (one record per line, ``seq`` order).

Owns the line format: each line is the record dict (``seq``, ``timestamp``, ``actor_id``,
``action``, ``resource_type``, ``resource_id``, ``target_id``, ``details``, ``request_id``,
``client_ip``, ``prev_hash``, ``hash``) as compact JSON with sorted keys, so an export can be
re-verified offline with :func:`crown_nexus.core.audit.chain.record_hash`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import IO, Any

from crown_nexus.core.audit.models import AuditRecord
from crown_nexus.core.audit.store import AuditStore

__all__ = ["jsonl_lines", "record_line", "write_jsonl"]

_PAGE = 500


def record_line(record: dict[str, Any]) -> str:
    """One record dict as a JSON line (with the trailing newline)."""
    out = dict(record)
    out.pop("user_id", None)  # same as actor_id
    return json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


async def jsonl_lines(
    store: AuditStore,
    stmt: Any,
    run: Callable[[Coroutine[Any, Any, list[dict[str, Any]]]], Awaitable[list[dict[str, Any]]]],
) -> AsyncIterator[str]:
    """The records ``stmt`` selects, in ``seq`` order, as JSON lines (keyset pages via ``run``)."""

    async def page(after: int) -> list[dict[str, Any]]:
        await store.ensure_schema()
        async with store.read_sessions() as session:
            q = stmt.where(AuditRecord.seq > after).order_by(AuditRecord.seq).limit(_PAGE)
            return [r.to_dict() for r in (await session.execute(q)).scalars()]

    after = 0
    while True:
        rows = await run(page(after))
        for row in rows:
            yield record_line(row)
        if len(rows) < _PAGE:
            return
        after = int(rows[-1]["seq"])


async def write_jsonl(lines: AsyncIterator[str], target: str | Path | IO[str]) -> int:
    """Write ``lines`` to a path (created/overwritten) or an open text file; return the count.

    File writes happen in a worker thread, a page of lines at a time, so the loop never blocks.
    """
    if isinstance(target, str | Path):
        fh: IO[str] = await asyncio.to_thread(Path(target).open, "w", encoding="utf-8")
        try:
            return await _write_all(lines, fh)
        finally:
            await asyncio.to_thread(fh.close)
    return await _write_all(lines, target)


async def _write_all(lines: AsyncIterator[str], fh: IO[str]) -> int:
    count = 0
    buffer: list[str] = []
    async for line in lines:
        buffer.append(line)
        count += 1
        if len(buffer) >= _PAGE:
            await asyncio.to_thread(fh.write, "".join(buffer))
            buffer.clear()
    if buffer:
        await asyncio.to_thread(fh.write, "".join(buffer))
    return count
