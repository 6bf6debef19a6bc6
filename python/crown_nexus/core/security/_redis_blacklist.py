"""The Redis token blacklist (needs the ``crown-nexus[redis]`` extra: redis-py with hiredis)."""

from __future__ import annotations

import asyncio
from typing import Any

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.security._blacklist_base import TokenBlacklist, _ttl

try:
    import redis.asyncio as aioredis
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the Redis token blacklist needs redis-py: pip install 'crown-nexus[redis]'"
    ) from exc

__all__ = ["RedisTokenBlacklist"]


class RedisTokenBlacklist(TokenBlacklist):
    """Revoked ``jti``s and families as Redis keys with a TTL (``SET key 1 EX ttl NX``).

    Shared by every worker and kept across restarts. Lookups are one ``EXISTS`` round trip
    covering the token id and its family. Redis errors propagate (callers map them); a
    revocation check must never silently pass.

    redis-py's asyncio connections belong to the event loop that opened them. A blacklist built
    from a URL is used by module-level functions from whatever loop runs them (an app, a
    worker, a test), so it keeps one client per loop: used from a new loop, it opens a new
    client there instead of failing on connections of a loop that is gone.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "crown_nexus:revoked:",
    ) -> None:
        self._owns_client = client is None
        if client is None:
            if not redis_url:
                raise ConfigurationException(message="RedisTokenBlacklist needs a URL or a client")
            client = aioredis.Redis.from_url(redis_url)
        self._url = redis_url
        self._client = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prefix = prefix

    def _redis(self) -> Any:
        """The client for the running loop (a fresh one when the loop changed, if we own it)."""
        if not self._owns_client:
            return self._client
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                # the old client's connections belong to another (often closed) loop
                assert self._url is not None  # we own the client, so it was built from a URL
                self._client = aioredis.Redis.from_url(self._url)
            self._loop = loop
        return self._client

    async def add(self, jti: str, ttl_seconds: float) -> bool:
        created = await self._redis().set(
            f"{self._prefix}jti:{jti}", b"1", ex=_ttl(ttl_seconds), nx=True
        )
        return bool(created)

    async def revoke_family(self, family: str, ttl_seconds: float) -> None:
        await self._redis().set(f"{self._prefix}fam:{family}", b"1", ex=_ttl(ttl_seconds))

    async def is_revoked(self, jti: str | None, family: str | None = None) -> bool:
        keys = []
        if jti is not None:
            keys.append(f"{self._prefix}jti:{jti}")
        if family is not None:
            keys.append(f"{self._prefix}fam:{family}")
        if not keys:
            return False
        return int(await self._redis().exists(*keys)) > 0

    async def close(self) -> None:
        if self._owns_client and self._loop in (None, asyncio.get_running_loop()):
            await self._client.aclose()
