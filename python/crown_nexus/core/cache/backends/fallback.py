"""A primary backend (Redis) with an in-process fallback (memory): SPEC §8 resilience.

While the primary answers, every operation goes to it. When it cannot be reached (refused, reset,
closed) or stalls, the wrapper *trips*: it logs once, calls ``on_state_change(False)`` (the
service counts it in metrics) and serves every operation from the fallback, without raising.
A probe (``PING`` under a timeout) runs every ``retry_interval`` seconds; when the primary
answers again, the invalidations made during the outage (keys written or deleted, patterns,
tags, ``clear``) are replayed on it, the fallback is emptied, and operations return to the primary.

Bounding time without a per-command timeout: the wrapper counts operations in flight and
operations completed; a timer checks every ``check_interval`` seconds, and if operations have
been in flight with none completing for ``op_timeout`` seconds it trips and drops the primary's
connections (:meth:`RedisCacheBackend.reset`), so stuck commands fail and fall back. The hot path
pays three integer updates instead of a timer per command. Bulk operations that may legitimately
run long (``invalidate_pattern``'s SCAN walk, ``invalidate_tags``, ``clear``) are not watched; each
runs under its own ``bulk_timeout`` instead (rare calls, so a timer each costs nothing).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from crown_nexus.core._tasks import cancel_and_wait
from crown_nexus.core.cache.backends.base import CacheBackend
from crown_nexus.core.cache.exceptions import CacheException, CacheOperationException
from crown_nexus.logging import get_logger

__all__ = ["FallbackCacheBackend"]

logger = get_logger("crown_nexus.core.cache")

_monotonic = time.monotonic
_running_loop = asyncio.get_running_loop


class FallbackCacheBackend(CacheBackend):
    """Route to ``primary`` while it is up, to ``fallback`` while it is down.

    ``name`` is the primary's name (``_get_backend("redis")`` returns this wrapper);
    :attr:`active_name` says which backend is serving right now.
    """

    name: ClassVar[str] = "redis"

    def __init__(
        self,
        primary: CacheBackend,
        fallback: CacheBackend,
        *,
        op_timeout: float = 1.0,
        check_interval: float = 0.1,
        retry_interval: float = 1.0,
        max_pending_invalidations: int = 10_000,
        bulk_timeout: float = 30.0,
        on_state_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.op_timeout = op_timeout
        self.check_interval = check_interval
        self.retry_interval = retry_interval
        self.on_state_change = on_state_change
        self.max_pending_invalidations = max_pending_invalidations
        self.bulk_timeout = bulk_timeout
        self.up = True
        self.fallback_count = 0
        self.recovery_count = 0
        self._inflight = 0
        self._completed = 0
        self._seen_completed = -1
        self._stalled_since = 0.0
        self.active_name = primary.name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._reset_task: asyncio.Task[None] | None = None
        self._next_probe = 0.0
        self._pending: deque[tuple[str, Any]] = deque()
        self._pending_overflow = False
        self._closed = False

    #: The name of the backend serving operations now (``"redis"`` or ``"memory"``).
    active_name: str = "redis"  # type: ignore[assignment]

    # --- state -----------------------------------------------------------------------------

    def _bind(self) -> None:
        """Attach to the running loop (again, when the loop changed: drop the old connections)."""
        loop = _running_loop()
        if self._loop is not None and self._timer is not None:
            self._timer.cancel()
            forget = getattr(self.primary, "forget_connections", None)
            if forget is not None:
                forget()
        self._loop = loop
        self._closed = False
        self._timer = loop.call_later(self.check_interval, self._tick)

    def _tick(self) -> None:
        loop = self._loop
        if loop is None or self._closed or loop.is_closed():
            return
        now = _monotonic()
        if self.up:
            # stalled = operations in flight and none completed for op_timeout seconds
            if not self._inflight or self._completed != self._seen_completed:
                self._seen_completed = self._completed
                self._stalled_since = now
            elif now - self._stalled_since > self.op_timeout:
                self._trip(None, "stalled")
                if self._reset_task is None or self._reset_task.done():
                    self._reset_task = loop.create_task(self._reset_primary())
        elif (self._probe_task is None or self._probe_task.done()) and now >= self._next_probe:
            self._probe_task = loop.create_task(self._probe())
        self._timer = loop.call_later(self.check_interval, self._tick)

    async def _reset_primary(self) -> None:
        reset = getattr(self.primary, "reset", None)
        if reset is None:
            return
        try:
            async with asyncio.timeout(self.op_timeout):
                await reset()
        except Exception as exc:  # a failed reset is retried by the next probe
            logger.debug("cache primary reset failed", backend=self.primary.name, error=repr(exc))

    def _trip(self, exc: BaseException | None, operation: str) -> None:
        if not self.up:
            return
        self.up = False
        self.active_name = self.fallback.name
        self.fallback_count += 1
        self._next_probe = _monotonic() + self.retry_interval
        logger.warning(
            "cache backend unavailable; serving from fallback until it recovers",
            backend=self.primary.name,
            fallback=self.fallback.name,
            operation=operation,
            error=_describe(exc),
        )
        if self.on_state_change is not None:
            self.on_state_change(False)

    def _record(self, kind: str, value: Any) -> None:
        if len(self._pending) >= self.max_pending_invalidations:
            self._pending_overflow = True
            return
        self._pending.append((kind, value))

    async def _replay(self) -> None:
        """Apply the outage's invalidations to the primary, oldest first."""
        pending = self._pending
        while pending:
            batch: list[str] = []
            for kind, value in pending:
                if kind != "key" or len(batch) >= 500:
                    break
                batch.append(value)
            if batch:
                await self.primary.delete_many(batch)
                for _ in batch:  # removed only once applied: a failed replay resumes here
                    pending.popleft()
                continue
            kind, value = pending[0]
            if kind == "pattern":
                await self.primary.invalidate_pattern(value)
            elif kind == "tags":
                await self.primary.invalidate_tags(value)
            elif kind == "clear":
                await self.primary.clear()
            pending.popleft()

    async def _probe(self) -> None:
        try:
            await self._reset_primary()
            async with asyncio.timeout(self.op_timeout):
                await self.primary.ping()
            async with asyncio.timeout(max(self.op_timeout, 5.0)):
                await self._replay()
        except Exception as exc:
            self._next_probe = _monotonic() + self.retry_interval
            logger.debug(
                "cache primary still unavailable", backend=self.primary.name, error=repr(exc)
            )
            return
        if self._pending_overflow:
            logger.warning(
                "cache outage outlasted the invalidation log; the primary may serve stale "
                "entries until they expire",
                backend=self.primary.name,
                limit=self.max_pending_invalidations,
            )
            self._pending_overflow = False
        # no await from here on: nothing can slip into the fallback between the checks and the flip
        await self.fallback.clear()
        self._pending.clear()
        self.up = True
        self.active_name = self.primary.name
        self.recovery_count += 1
        self._seen_completed = -1
        logger.info("cache backend recovered", backend=self.primary.name)
        if self.on_state_change is not None:
            self.on_state_change(True)

    async def _bulk_call(self, op: str, args: tuple[Any, ...]) -> Any:
        """A long-running operation (SCAN walk, tag script, clear): not seen by the stall
        watchdog (it may legitimately run for long), bounded by its own generous timeout."""
        try:
            async with asyncio.timeout(self.bulk_timeout):
                return await getattr(self.primary, op)(*args)
        except TimeoutError as exc:
            self._trip(exc, op)
            if self._reset_task is None or self._reset_task.done():
                self._reset_task = asyncio.get_running_loop().create_task(self._reset_primary())
            return _DOWN
        except CacheException as exc:
            if not self.up:
                return _DOWN
            if not exc.unavailable:
                raise
            self._trip(exc, op)
            return _DOWN
        except (ValueError, TypeError):
            raise
        except Exception as exc:
            if not self.up:
                return _DOWN
            raise CacheOperationException(
                f"cache {op} failed",
                backend=self.primary.name,
                operation=op,
                original_exception=exc,
            ) from exc

    async def _primary_call(self, op: str, args: tuple[Any, ...], retry: bool) -> Any:
        """Run ``op`` on the primary; return ``_DOWN`` when it is (or just went) unavailable."""
        attempts = 2 if retry else 1
        while attempts:
            attempts -= 1
            self._inflight += 1
            try:
                return await getattr(self.primary, op)(*args)
            except CacheException as exc:
                if not self.up:
                    return _DOWN
                if not exc.unavailable:
                    raise
                if not attempts:
                    self._trip(exc, op)
                    return _DOWN
            except (ValueError, TypeError):
                raise  # the caller's mistake (a bad ttl, amount or value), on every backend
            except Exception as exc:
                if not self.up:
                    return _DOWN
                raise CacheOperationException(
                    f"cache {op} failed",
                    backend=self.primary.name,
                    operation=op,
                    original_exception=exc,
                ) from exc
            finally:
                self._inflight -= 1
                self._completed += 1
        return _DOWN  # pragma: no cover - the loop always returns

    async def _call(
        self, op: str, *args: Any, retry: bool = True, record: Any = None, bulk: bool = False
    ) -> Any:
        if self._loop is not _running_loop():
            self._bind()
        if self.up:
            if bulk:
                result = await self._bulk_call(op, args)
            else:
                result = await self._primary_call(op, args, retry)
            if result is not _DOWN:
                return result
        if record is not None:
            kind, value = record
            if kind == "keys":
                for k in value:
                    self._record("key", k)
            else:
                self._record(kind, value)
        return await getattr(self.fallback, op)(*args)

    # --- operations ------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """Read from the primary, or from the fallback while the primary is down."""
        if self._loop is not _running_loop():
            self._bind()
        if self.up:
            self._inflight += 1
            try:
                return await self.primary.get(key, default)
            except CacheException as exc:
                if self.up and not exc.unavailable:
                    raise
            except (ValueError, TypeError):
                raise
            except Exception as exc:
                if self.up:
                    raise CacheOperationException(
                        "cache get failed",
                        backend=self.primary.name,
                        operation="get",
                        original_exception=exc,
                    ) from exc
            finally:
                self._inflight -= 1
                self._completed += 1
            if self.up:  # unavailable: one retry on a fresh connection, then trip
                result = await self._primary_call("get", (key, default), False)
                if result is not _DOWN:
                    return result
        return await self.fallback.get(key, default)

    async def set(
        self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] | None = None
    ) -> None:
        """Write to the primary (or to the fallback, remembering the key for the replay)."""
        await self._call("set", key, value, ttl, tags, record=("key", key))

    async def delete(self, key: str) -> bool:
        """Delete on the primary (or on the fallback, remembered for the replay)."""
        result: bool = await self._call("delete", key, record=("key", key))
        return result

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete many keys (one round trip on Redis)."""
        ks = list(keys)
        result: int = await self._call("delete_many", ks, record=("keys", ks))
        return result

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live entry on the serving backend."""
        result: bool = await self._call("exists", key)
        return result

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Read many keys from the serving backend."""
        result: dict[str, Any] = await self._call("get_many", list(keys))
        return result

    async def set_many(
        self,
        mapping: Mapping[str, Any],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Write many keys to the serving backend."""
        await self._call("set_many", mapping, ttl, tags, record=("keys", list(mapping)))

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomic increment on the serving backend (never retried: it is not idempotent)."""
        result: int = await self._call("incr", key, amount, ttl, retry=False, record=("key", key))
        return result

    async def invalidate_pattern(self, pattern: str) -> int:
        """Invalidate by glob pattern on the serving backend (replayed after an outage)."""
        result: int = await self._call(
            "invalidate_pattern", pattern, record=("pattern", pattern), bulk=True
        )
        return result

    async def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Invalidate by tags on the serving backend (replayed after an outage)."""
        tag_list = list(tags)
        result: int = await self._call(
            "invalidate_tags", tag_list, record=("tags", tag_list), bulk=True
        )
        return result

    async def get_set_members(self, set_key: str) -> list[str]:
        """Members of the set ``set_key`` on the serving backend."""
        result: list[str] = await self._call("get_set_members", set_key)
        return result

    async def clear(self) -> None:
        """Clear the serving backend (replayed on the primary after an outage)."""
        await self._call("clear", record=("clear", None), bulk=True)

    async def acquire_lock(self, name: str, ttl: float) -> str | None:
        """Take a lease on the serving backend."""
        result: str | None = await self._call("acquire_lock", name, ttl, retry=False)
        return result

    async def release_lock(self, name: str, token: str) -> bool:
        """Release a lease on the serving backend."""
        result: bool = await self._call("release_lock", name, token)
        return result

    async def ping(self) -> bool:
        """Whether the primary answers now (never raises)."""
        try:
            return bool(await self.primary.ping())
        except Exception:
            return False

    async def initialize(self) -> None:
        """Bind to the loop and warm the primary; start on the fallback if it is down."""
        self._bind()
        try:
            async with asyncio.timeout(self.op_timeout + 1.0):
                await self.primary.initialize()
        except Exception as exc:
            self._trip(exc, "initialize")
        await self.fallback.initialize()

    async def close(self) -> None:
        """Stop the timer and probe, and close both backends."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in (self._probe_task, self._reset_task):
            await cancel_and_wait(task, 2.0, what="cache fallback probe")
        self._loop = None
        await self.primary.close()
        await self.fallback.close()


_DOWN: Any = object()


def _describe(exc: BaseException | None) -> str:
    """The name of the underlying error (never its message: it may hold addresses or keys)."""
    if exc is None:
        return "stalled"
    cause = getattr(exc, "original_exception", None) or exc
    return type(cause).__name__
