"""A worker process of the multi-process tests: ``python -m tests.core.features._worker MODE URL PREFIX``.

``watch``: start a FeatureService on the Redis store, print ``READY``, then evaluate the flag
through ``is_enabled`` only (the hot path) every millisecond and print ``ON <time>`` when it turns
on. ``set``: turn the flag on through the admin API and print ``SET <time>``.
``sql-set`` / ``sql-get``: the same flag on the SQL store at URL (PREFIX unused): set it, or
print ``ON`` / ``OFF`` as a freshly started process evaluates it.
"""

from __future__ import annotations

import asyncio
import sys
import time

from crown_nexus.core.features import (
    FeatureService,
    FeatureStore,
    FeatureTarget,
    RedisFeatureStore,
    SQLFeatureStore,
    register_flag,
)

FLAG = "two_worker_flag"


async def main(mode: str, url: str, prefix: str) -> None:
    register_flag(FLAG)
    store: FeatureStore = (
        SQLFeatureStore(url) if mode.startswith("sql") else RedisFeatureStore(url, prefix=prefix)
    )
    service = FeatureService(store=store, environment="test")
    await service.initialize()
    try:
        if mode == "sql-set":
            await service.set_flag(FLAG, enabled=True, allow_users=["worker-a"], percentage=0)
            return
        if mode == "sql-get":
            for uid in ("worker-a", "worker-b"):
                on = await service.is_enabled(FLAG, target=FeatureTarget.USER, target_id=uid)
                print("ON" if on else "OFF", flush=True)
            return
        if mode == "set":
            await service.set_flag(FLAG, enabled=True, allow_users=["worker-a"])
            print("SET", time.time(), flush=True)
            return
        before = await service.is_enabled(FLAG, target=FeatureTarget.USER, target_id="worker-a")
        print("READY", before, flush=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if await service.is_enabled(FLAG, target=FeatureTarget.USER, target_id="worker-a"):
                print("ON", time.time(), flush=True)
                return
            await asyncio.sleep(0.001)
        print("TIMEOUT", flush=True)
    finally:
        await service.shutdown()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
