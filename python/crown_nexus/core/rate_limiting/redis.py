"""Redis rate-limit backend: one atomic round trip per check.

Each algorithm is a Lua script (``lua/*.lua``, shipped as package data) loaded once with
``SCRIPT LOAD`` and run with ``EVALSHA``; a ``NOSCRIPT`` reply (server restarted or flushed)
reloads it and retries once. Scripts read the server's clock (``TIME``), so every process and
host shares one clock, and every key gets a ``PEXPIRE`` so idle clients vanish on their own.

The client is redis-py asyncio (hiredis parser when installed), imported only here. redis-py's
per-command socket timeout is switched off on the hot path (it costs a third of a ``GET``);
time is bounded instead by one ``asyncio.timeout`` around the whole call, and connecting by
``socket_connect_timeout``.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from crown_nexus.core.rate_limiting.base import (
    RateLimitBackend,
    RateLimitBackendError,
    check_cost,
    make_result,
)
from crown_nexus.core.rate_limiting.models import (
    RateLimitAlgorithm,
    RateLimitResult,
    RateLimitRule,
)

try:
    import redis.asyncio as aioredis
    from redis.exceptions import NoScriptError, RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the Redis rate-limit backend needs redis-py: pip install 'crown-nexus[redis]'"
    ) from exc

__all__ = ["RedisRateLimitBackend", "load_script"]

_SCRIPT_FILES = {
    RateLimitAlgorithm.SLIDING_WINDOW: "sliding_window.lua",
    RateLimitAlgorithm.SLIDING_LOG: "sliding_log.lua",
    RateLimitAlgorithm.TOKEN_BUCKET: "token_bucket.lua",
}


def load_script(algorithm: RateLimitAlgorithm) -> str:
    """Return the Lua source of the script for ``algorithm``."""
    name = _SCRIPT_FILES[RateLimitAlgorithm(algorithm)]
    return (
        resources.files("crown_nexus.core.rate_limiting")
        .joinpath("lua").joinpath(name)
        .read_text(encoding="utf-8")
    )


class RedisRateLimitBackend(RateLimitBackend):
    """Rate limits kept in Redis, shared by every process that uses the same server.

    Give either ``url`` (a client is created and owned) or an existing redis-py asyncio
    ``client`` (not closed by :meth:`close`). ``timeout`` bounds each check in seconds; a check
    that fails or times out raises :class:`RateLimitBackendError`.
    """

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any | None = None,
        prefix: str = "crown_nexus:rl:",
        timeout: float = 0.5,
        max_connections: int | None = 64,
    ) -> None:
        if client is None and url is None:
            raise ValueError("RedisRateLimitBackend needs a url or a client")
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        self._owns_client = client is None
        if client is None:
            client = aioredis.Redis.from_url(
                url,  # type: ignore[arg-type]
                socket_timeout=None,
                socket_connect_timeout=timeout,
                max_connections=max_connections,
                retry_on_timeout=False,
            )
        self._client = client
        self._prefix = prefix
        self._timeout = float(timeout)
        self._sources = {algo: load_script(algo) for algo in _SCRIPT_FILES}
        self._shas: dict[RateLimitAlgorithm, str] = {}
        self._lock = asyncio.Lock()

    @property
    def client(self) -> Any:
        """The redis-py asyncio client in use."""
        return self._client

    def storage_key(self, key: str, rule: RateLimitRule) -> str:
        """The Redis key holding ``key``'s state under ``rule``."""
        return f"{self._prefix}{rule.signature}:{key}"

    async def _load(self, algo: RateLimitAlgorithm) -> str:
        async with self._lock:
            sha = str(await self._client.script_load(self._sources[algo]))
            if isinstance(sha, bytes):  # pragma: no cover - decode_responses=False clients
                sha = sha.decode()
            self._shas[algo] = sha
            return sha

    async def _run(self, algo: RateLimitAlgorithm, rkey: str, args: tuple[Any, ...]) -> Any:
        execute = self._client.execute_command
        sha = self._shas.get(algo) or await self._load(algo)
        try:
            return await execute("EVALSHA", sha, 1, rkey, *args)
        except NoScriptError:
            sha = await self._load(algo)
            return await execute("EVALSHA", sha, 1, rkey, *args)

    async def hit(self, key: str, rule: RateLimitRule, cost: int = 1) -> RateLimitResult:
        """Run the rule's script once for ``key`` (one round trip, atomic on the server)."""
        check_cost(rule, cost)
        algo = rule.effective_algorithm
        if algo is RateLimitAlgorithm.TOKEN_BUCKET:
            args: tuple[Any, ...] = (
                rule.requests_per_window, rule.window_seconds * 1_000_000, cost, rule.burst
            )
        else:
            args = (rule.requests_per_window, rule.window_seconds * 1_000_000, cost)
        rkey = f"{self._prefix}{rule.signature}:{key}"
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._run(algo, rkey, args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise RateLimitBackendError(
                f"Redis rate limit check failed: {type(exc).__name__}"
            ) from exc
        allowed, count, reset_us = reply
        return make_result(rule, allowed == 1, int(count), int(reset_us) / 1e6)

    async def reset(self, key: str, rule: RateLimitRule) -> None:
        """Delete ``key``'s state under ``rule``."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.delete(self.storage_key(key, rule))
        except (RedisError, OSError, TimeoutError) as exc:
            raise RateLimitBackendError(f"Redis reset failed: {type(exc).__name__}") from exc

    async def ping(self) -> bool:
        """True when the server answers ``PING`` within the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        """Close the client when this backend created it."""
        if self._owns_client:
            await self._client.aclose()
