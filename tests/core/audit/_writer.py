"""A worker process for the concurrency test: appends N audit records as fast as it can."""

from __future__ import annotations

import asyncio
import sys

from crown_nexus.core.audit import AuditService, close_audit


async def main(url: str, name: str, count: int) -> None:
    """Wait for the start line on stdin, then append ``count`` records (half awaited one by one)."""
    audit = AuditService(database_url=url)
    await audit.verify_chain()  # connect and create tables before the race starts
    print("READY", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for i in range(count):
        if i % 2:
            audit.log_action(name, "write", resource_id=str(i), details={"i": i})
        else:
            await audit.log_action(name, "write", resource_id=str(i), details={"i": i})
    await audit.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    close_audit()
