"""A URL-built Redis revocation list works from every event loop that uses it."""

from __future__ import annotations

import asyncio

from crown_nexus.core.security._redis_blacklist import RedisTokenBlacklist


def test_redis_blacklist_survives_a_new_event_loop(redis_url: str) -> None:
    """Revoked in one loop, still revoked (and queryable) from a later loop: no stale connections."""
    blacklist = RedisTokenBlacklist(redis_url, prefix="test:loops:")

    async def revoke() -> bool:
        added = await blacklist.add("jti-1", 60)
        return added and await blacklist.is_revoked("jti-1")

    async def check() -> tuple[bool, bool]:
        try:
            return await blacklist.is_revoked("jti-1"), await blacklist.is_revoked("jti-2")
        finally:
            await blacklist.close()

    assert asyncio.run(revoke()) is True
    assert asyncio.run(check()) == (True, False)
