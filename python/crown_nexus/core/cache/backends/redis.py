"""Redis cache backend (redis-py asyncio with hiredis): one round trip per operation.

- Single-key operations are one command; many-key operations (``get_many``, ``set_many``,
  ``delete_many``, a ``set`` with tags, ``incr`` with a TTL) are one pipeline; tag invalidation
  and lock release are one Lua script each. Patterns are walked with ``SCAN``, never ``KEYS``.
- Tags are Redis sets ``cache:tag:<tag>`` holding the tagged keys. Each set is given the TTL of
  its entry when it has none (``PEXPIRE NX``) and extended when an entry outlives it
  (``PEXPIRE GT``), so a tag set expires with its last entry (Redis >= 7.0).
- Time is bounded without redis-py's per-command socket timeout (which wraps every write in
  ``asyncio.wait_for``, a task per command): the pool has ``socket_timeout=None``, a connect
  timeout, no retries and keepalive; a stalled server is detected and cut off by
  :class:`~crown_nexus.core.cache.backends.fallback.FallbackCacheBackend`, which calls
  :meth:`RedisCacheBackend.reset`.
- Failures raise :class:`~crown_nexus.core.cache.exceptions.CacheOperationException`;
  ``unavailable=True`` when Redis could not be reached (refused, reset, closed), so the fallback
  wrapper can switch to memory.

This module imports redis; it is imported only when a Redis backend is created.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar, NoReturn, TypeVar

from crown_nexus.core._redis import missing_redis_extra, open_redis
from crown_nexus.core.cache import serialization
from crown_nexus.core.cache.backends.base import TAG_PREFIX, CacheBackend, check_ttl
from crown_nexus.core.cache.exceptions import (
    CacheConfigurationException,
    CacheKeyException,
    CacheOperationException,
    CacheSerializationException,
)

try:
    from redis import exceptions as redis_exceptions
except ImportError as exc:  # tested with redis-py hidden (tests/core/test_redis_factory.py)
    raise missing_redis_extra("the Redis cache backend") from exc

__all__ = ["RedisCacheBackend"]

_UNAVAILABLE = (
    redis_exceptions.ConnectionError,
    redis_exceptions.TimeoutError,
    OSError,
    EOFError,
)
_POOL_EXHAUSTED = getattr(redis_exceptions, "MaxConnectionsError", ())
_LOCK_PREFIX = "cache:lock:"
_SCAN_COUNT = 1000
_CHUNK = 500

_INVALIDATE_TAGS_LUA = """
local removed = 0
local prefix = ARGV[1]
for _, tag_key in ipairs(KEYS) do
  local members = redis.call('SMEMBERS', tag_key)
  local batch = {}
  for _, m in ipairs(members) do
    batch[#batch + 1] = prefix .. m
    if #batch == 500 then
      removed = removed + redis.call('UNLINK', unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then
    removed = removed + redis.call('UNLINK', unpack(batch))
  end
  redis.call('UNLINK', tag_key)
end
return removed
"""

_RELEASE_LOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _slotted(method: F) -> F:
    """Run the operation in one of the backend's ``max_connections`` slots (waiting if none)."""

    @functools.wraps(method)
    async def wrapper(self: RedisCacheBackend, *args: Any, **kwargs: Any) -> Any:
        if self._busy < self._max:
            self._busy += 1
        else:
            await self._wait_slot()
        try:
            return await method(self, *args, **kwargs)
        finally:
            if self._waiters:
                self._release_slot()
            else:
                self._busy -= 1

    return wrapper  # type: ignore[return-value]


def _ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


class RedisCacheBackend(CacheBackend):
    """The cache on a Redis server.

    Build it from a URL (``redis://host:port/db``) or pass a ready ``redis.asyncio.Redis``
    ``client``. The pool keeps its connections open (warm). At most ``max_connections``
    operations run at once; a burst beyond that waits for a free slot (first come, first
    served) instead of failing, at the cost of one integer test on the fast path. ``key_prefix`` namespaces every key (and makes :meth:`clear` delete only the
    prefixed keys; without a prefix :meth:`clear` empties the Redis database).
    """

    name: ClassVar[str] = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        key_prefix: str = "",
        connect_timeout: float = 1.0,
        max_connections: int = 64,
    ) -> None:
        if client is None:
            if not url:
                raise CacheConfigurationException(
                    "the Redis cache backend needs a URL (REDIS_URI) or a client"
                )
            try:
                client = open_redis(
                    url,
                    what="the Redis cache backend",
                    connect_timeout=connect_timeout,
                    socket_timeout=None,  # FallbackCacheBackend bounds each operation
                    keepalive=True,
                    retries=0,
                    max_connections=2 * max_connections,
                    decode_responses=False,
                )
            except (ValueError, TypeError) as exc:
                raise CacheConfigurationException(
                    "invalid Redis URL for the cache", backend=self.name
                ) from exc
        self._client = client
        self._pool = client.connection_pool
        self._free: list[Any] = []  # warm connections kept out of the pool for GET/SET
        self._p = key_prefix
        self._max = max_connections
        self._busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._execute = client.execute_command
        self._invalidate_tags_script = client.register_script(_INVALIDATE_TAGS_LUA)
        self._release_lock_script = client.register_script(_RELEASE_LOCK_LUA)

    @property
    def client(self) -> Any:
        """The underlying ``redis.asyncio.Redis`` client."""
        return self._client

    # --- internals -------------------------------------------------------------------------

    def _fail(self, exc: BaseException, operation: str) -> NoReturn:
        if isinstance(exc, CacheOperationException):
            raise exc
        if isinstance(exc, _POOL_EXHAUSTED):
            raise CacheOperationException(
                "Redis connection pool exhausted",
                backend=self.name,
                operation=operation,
                original_exception=exc,
            ) from exc
        if isinstance(exc, _UNAVAILABLE):
            raise CacheOperationException(
                "Redis is unavailable",
                backend=self.name,
                operation=operation,
                original_exception=exc,
                unavailable=True,
            ) from exc
        if isinstance(exc, redis_exceptions.DataError):
            raise CacheKeyException(
                "invalid key or argument for Redis", backend=self.name, operation=operation
            ) from exc
        message = f"Redis {operation} failed"
        if isinstance(exc, redis_exceptions.ResponseError) and "not an integer" in str(exc):
            message = "value is not an integer"
        raise CacheOperationException(
            message, backend=self.name, operation=operation, original_exception=exc
        ) from exc

    async def _wait_slot(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release_slot()  # a slot was handed over just as we were cancelled
            raise

    def _release_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # hand the slot over: _busy stays the same
                return
        self._busy -= 1

    async def _command(self, *args: Any) -> Any:
        """One command on a warm connection of our own (no pool lock, no per-call bookkeeping).

        A connection that fails or is interrupted mid-command is disconnected and handed back to
        redis-py's pool, so it is never reused with a reply pending.
        """
        free = self._free
        conn = free.pop() if free else await self._pool.get_connection()
        try:
            await conn.send_command(*args)
            data = await conn.read_response()
        except BaseException as exc:
            try:
                await conn.disconnect(nowait=True)
            finally:
                await self._pool.release(conn)
            if isinstance(exc, _UNAVAILABLE):
                # the server went away: the other warm connections are dead too
                stale, free[:] = list(free), []
                for other in stale:
                    await other.disconnect(nowait=True)
                    await self._pool.release(other)
            raise
        free.append(conn)
        return data

    def forget_connections(self) -> None:
        """Drop every connection without awaiting (the event loop they belong to is gone)."""
        self._free.clear()
        self._pool.reset()
        self._busy = 0
        self._waiters.clear()

    def _k(self, key: str) -> str:
        return self._p + key if self._p else key

    def _decode(self, data: bytes, default: Any) -> Any:
        try:
            return serialization.loads(data)
        except CacheSerializationException:
            # a foreign or corrupt entry is a miss, never an error for the reader
            return default

    def _queue_set(self, pipe: Any, key: str, data: bytes, ttl: float | None, tags: Any) -> None:
        k = self._k(key)
        if ttl:
            pipe.execute_command("SET", k, data, "PX", _ms(ttl))
        else:
            pipe.execute_command("SET", k, data)
        for tag in tags or ():
            tk = self._k(TAG_PREFIX + tag)
            pipe.execute_command("SADD", tk, key)
            if ttl:
                pipe.execute_command("PEXPIRE", tk, _ms(ttl), "NX")
                pipe.execute_command("PEXPIRE", tk, _ms(ttl), "GT")
            else:
                pipe.execute_command("PERSIST", tk)

    async def _scan_unlink(self, match: str) -> int:
        removed = 0
        cursor: Any = 0
        while True:
            cursor, keys = await self._execute("SCAN", cursor, "MATCH", match, "COUNT", _SCAN_COUNT)
            if keys:
                removed += await self._execute("UNLINK", *keys)
            if int(cursor) == 0:
                return removed

    # --- operations ------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """``GET`` + decode; a missing (or undecodable) entry returns ``default``."""
        if self._busy < self._max:
            self._busy += 1
        else:
            await self._wait_slot()
        try:
            data = await self._command("GET", self._p + key if self._p else key)
        except Exception as exc:
            self._fail(exc, "get")
        finally:
            if self._waiters:
                self._release_slot()
            else:
                self._busy -= 1
        if data is None:
            return default
        try:
            return serialization.loads(data)
        except CacheSerializationException:
            return default

    @_slotted
    async def set(
        self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] | None = None
    ) -> None:
        """``SET [PX]`` (one command), or one transaction with the tag sets."""
        ttl = check_ttl(ttl)
        data = serialization.dumps(value)
        try:
            if not tags:
                if ttl:
                    await self._command("SET", self._k(key), data, "PX", _ms(ttl))
                else:
                    await self._command("SET", self._k(key), data)
                return
            async with self._client.pipeline(transaction=True) as pipe:
                self._queue_set(pipe, key, data, ttl, tuple(tags))
                await pipe.execute()
        except Exception as exc:
            self._fail(exc, "set")

    @_slotted
    async def delete(self, key: str) -> bool:
        """``UNLINK`` one key (an entry or a tag set)."""
        try:
            return bool(await self._execute("UNLINK", self._k(key)))
        except Exception as exc:
            self._fail(exc, "delete")

    @_slotted
    async def delete_many(self, keys: Iterable[str]) -> int:
        """``UNLINK`` the keys in batches of 500, one pipeline."""
        ks = [self._k(k if isinstance(k, str) else k.decode()) for k in keys]
        if not ks:
            return 0
        try:
            if len(ks) <= _CHUNK:
                return int(await self._execute("UNLINK", *ks))
            async with self._client.pipeline(transaction=False) as pipe:
                for i in range(0, len(ks), _CHUNK):
                    pipe.execute_command("UNLINK", *ks[i : i + _CHUNK])
                return sum(int(n) for n in await pipe.execute())
        except Exception as exc:
            self._fail(exc, "delete_many")

    @_slotted
    async def exists(self, key: str) -> bool:
        """``EXISTS``."""
        try:
            return bool(await self._execute("EXISTS", self._k(key)))
        except Exception as exc:
            self._fail(exc, "exists")

    @_slotted
    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``MGET`` (one command); misses are left out."""
        ks = list(keys)
        if not ks:
            return {}
        try:
            values = await self._execute("MGET", *[self._k(k) for k in ks])
        except Exception as exc:
            self._fail(exc, "get_many")
        missing: Any = _MISS
        found: dict[str, Any] = {}
        for k, data in zip(ks, values, strict=True):
            if data is not None:
                value = self._decode(data, missing)
                if value is not missing:
                    found[k] = value
        return found

    @_slotted
    async def set_many(
        self,
        mapping: Mapping[str, Any],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """One pipeline of ``SET``s (and tag updates)."""
        ttl = check_ttl(ttl)
        if not mapping:
            return
        encoded = [(k, serialization.dumps(v)) for k, v in mapping.items()]
        tag_tuple = tuple(tags) if tags else ()
        try:
            async with self._client.pipeline(transaction=bool(tag_tuple)) as pipe:
                for k, data in encoded:
                    self._queue_set(pipe, k, data, ttl, tag_tuple)
                await pipe.execute()
        except Exception as exc:
            self._fail(exc, "set_many")

    @_slotted
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """``INCRBY`` (atomic), with ``PEXPIRE NX`` in the same round trip when ``ttl`` is given."""
        if type(amount) is not int:
            raise CacheOperationException(
                "incr amount must be an integer", backend=self.name, operation="incr"
            )
        ttl = check_ttl(ttl)
        try:
            if not ttl:
                return int(await self._execute("INCRBY", self._k(key), amount))
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.execute_command("INCRBY", self._k(key), amount)
                pipe.execute_command("PEXPIRE", self._k(key), _ms(ttl), "NX")
                result, _ = await pipe.execute()
            return int(result)
        except Exception as exc:
            self._fail(exc, "incr")

    @_slotted
    async def invalidate_pattern(self, pattern: str) -> int:
        """``SCAN MATCH`` + ``UNLINK`` every matching key; return how many were removed."""
        try:
            return await self._scan_unlink(_glob_escape(self._p) + pattern)
        except Exception as exc:
            self._fail(exc, "invalidate_pattern")

    @_slotted
    async def invalidate_tags(self, tags: Iterable[str]) -> int:
        """One Lua script: unlink the members of every tag set, then the sets."""
        tag_keys = [self._k(TAG_PREFIX + t) for t in tags]
        if not tag_keys:
            return 0
        try:
            return int(await self._invalidate_tags_script(keys=tag_keys, args=[self._p]))
        except Exception as exc:
            self._fail(exc, "invalidate_tags")

    @_slotted
    async def get_set_members(self, set_key: str) -> list[str]:
        """``SMEMBERS`` of ``set_key`` (e.g. ``cache:tag:products``), decoded to ``str``."""
        try:
            members = await self._execute("SMEMBERS", self._k(set_key))
        except Exception as exc:
            self._fail(exc, "get_set_members")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    @_slotted
    async def clear(self) -> None:
        """Delete every key under ``key_prefix``; without a prefix, ``FLUSHDB ASYNC``."""
        try:
            if self._p:
                await self._scan_unlink(_glob_escape(self._p) + "*")
            else:
                await self._execute("FLUSHDB", "ASYNC")
        except Exception as exc:
            self._fail(exc, "clear")

    @_slotted
    async def acquire_lock(self, name: str, ttl: float) -> str | None:
        """``SET cache:lock:<name> <token> NX PX``: the token when taken, else ``None``."""
        token = secrets.token_hex(16)
        try:
            ok = await self._execute(
                "SET", self._k(_LOCK_PREFIX + name), token, "NX", "PX", _ms(ttl)
            )
        except Exception as exc:
            self._fail(exc, "acquire_lock")
        return token if ok else None

    @_slotted
    async def release_lock(self, name: str, token: str) -> bool:
        """Delete the lock only if ``token`` still owns it (compare-and-delete script)."""
        try:
            return bool(
                await self._release_lock_script(keys=[self._k(_LOCK_PREFIX + name)], args=[token])
            )
        except Exception as exc:
            self._fail(exc, "release_lock")

    @_slotted
    async def ping(self) -> bool:
        """``PING``; ``True`` when Redis answers (raises when it cannot be reached)."""
        try:
            return bool(await self._execute("PING"))
        except Exception as exc:
            self._fail(exc, "ping")

    async def initialize(self) -> None:
        """Open (warm) a pooled connection with a ``PING``."""
        await self.ping()

    async def reset(self) -> None:
        """Drop every pooled connection, in use or not (cuts off commands stuck on a stalled server)."""
        await self._pool.disconnect(inuse_connections=True)

    async def close(self) -> None:
        """Close the client and its pool (our warm connections included)."""
        for conn in self._free:
            await self._pool.release(conn)
        self._free.clear()
        await self._client.aclose()


_MISS: Any = object()


def _glob_escape(text: str) -> str:
    """Escape the glob metacharacters of a literal prefix."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
