"""Idempotency keys in Redis: shared by every worker, each operation one atomic Lua script."""

from __future__ import annotations

from typing import Any

from crown_nexus.core._redis import redis_client
from crown_nexus.core.idempotency._base import (
    Claim,
    ClaimState,
    IdempotencyStore,
    StoredResponse,
    decode_record,
    done_record,
    new_owner,
    pending_prefix,
    pending_record,
    ttl_ms,
)

__all__ = ["RedisIdempotencyStore"]

# KEYS[1] key; ARGV[1] pending record, ARGV[2] lock ttl ms -> existing value, or false if claimed
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

# KEYS[1] key; ARGV[1] owner's pending prefix, ARGV[2] done record, ARGV[3] ttl ms -> 1 stored
_COMPLETE = """
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS[1] key; ARGV[1] owner's pending prefix -> 1 released
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class RedisIdempotencyStore(IdempotencyStore):
    """Keys under ``prefix`` in Redis, expiring on their own (``PX``).

    The claim is a script that reads the key and, when it is free, sets it in the same step — the
    ``SET NX`` of a lock, which also returns what holds the key — so two workers never both run
    one key. ``client`` may be given instead of ``url`` (it is then not closed by :meth:`close`).
    """

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "crown_nexus:idempotency:",
        timeout: float = 2.0,
    ) -> None:
        client, self._owns_client = redis_client(
            "the Redis idempotency store", "RedisIdempotencyStore", url, client, timeout
        )
        self.client = client
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)

    async def claim(self, key: str, fingerprint: str, lock_ttl: float) -> Claim:
        """See :meth:`IdempotencyStore.claim`."""
        owner = new_owner()
        found = await self._claim(
            keys=[self.prefix + key], args=[pending_record(owner, fingerprint), ttl_ms(lock_ttl)]
        )
        if found is None:
            return Claim(ClaimState.CLAIMED, owner=owner)
        return decode_record(found)

    async def complete(
        self, key: str, owner: str, fingerprint: str, response: StoredResponse, ttl: float
    ) -> bool:
        """See :meth:`IdempotencyStore.complete`."""
        stored = await self._complete(
            keys=[self.prefix + key],
            args=[pending_prefix(owner), done_record(fingerprint, response), ttl_ms(ttl)],
        )
        return bool(int(stored))

    async def release(self, key: str, owner: str) -> bool:
        """See :meth:`IdempotencyStore.release`."""
        released = await self._release(keys=[self.prefix + key], args=[pending_prefix(owner)])
        return bool(int(released))

    async def close(self) -> None:
        """Close the client this store created."""
        if self._owns_client:
            await self.client.aclose()
