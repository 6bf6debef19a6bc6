"""The read-through engine behind ``cached`` and ``cache_aside``: one computation per key.

Owns what happens between a cache lookup and the decorated function: concurrent misses of one
key in a process share one computation (the others await its future); when the cache is shared
between processes (Redis) the computing task holds a short lease (``acquire_lock``) that other
workers wait on instead of recomputing; stale-while-revalidate (a stale hit is served while one
background task refreshes it); and the rule that a cache failure never fails the call (the
function runs uncached and the failure is logged once per function).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from crown_nexus.core.cache.call_keys import Templates
from crown_nexus.core.cache.exceptions import CacheException
from crown_nexus.core.cache.serialization import StaleEnvelope
from crown_nexus.core.cache.service import current_cache_service
from crown_nexus.logging import get_logger

__all__ = ["MISS", "ReadThrough"]

logger = get_logger("crown_nexus.core.cache")

#: the "no entry" sentinel passed to ``service.get`` as its default
MISS: Any = object()
_time = time.time
_monotonic = time.monotonic


class ReadThrough:
    """Per-decorated-function state: in-flight computations and background refreshes."""

    def __init__(
        self,
        func: Callable[..., Awaitable[Any]],
        name: str,
        ttl: float | None,
        tags: Templates,
        stale_ttl: float | None,
        lock_timeout: float,
    ) -> None:
        self.func = func
        self.name = name
        self.ttl = ttl
        self.tags = tags
        self.stale_ttl = stale_ttl
        self.lock_timeout = lock_timeout
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        self.refreshing: dict[str, asyncio.Task[None]] = {}
        self._warned = False

    def warn(self, what: str, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(what, function=self.name, error=type(exc).__name__)

    # --- read path ---------------------------------------------------------------------------

    async def call(self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        service = current_cache_service()
        try:
            value = await service.get(key, MISS)
        except CacheException as exc:
            self.warn("cache read failed; calling the function uncached", exc)
            return await self.func(*args, **kwargs)
        if value is not MISS:
            if type(value) is not StaleEnvelope:
                return value
            if value.fresh_until <= _time():
                self.refresh(service, key, args, kwargs)
            return value.value
        return await self.fill(service, key, args, kwargs)

    # --- miss path ---------------------------------------------------------------------------

    async def fill(
        self, service: Any, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Compute the value once per key in this process; others await the same future."""
        fut = self.inflight.get(key)
        if fut is not None:
            try:
                return await asyncio.shield(fut)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if fut.cancelled() and task is not None and not task.cancelling():
                    return await self.fill(service, key, args, kwargs)
                raise
        fut = asyncio.get_running_loop().create_future()
        self.inflight[key] = fut
        try:
            value = await self.compute(service, key, args, kwargs)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        else:
            fut.set_result(value)
            return value
        finally:
            if self.inflight.get(key) is fut:
                del self.inflight[key]

    async def compute(
        self, service: Any, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run the function under a cross-process lease when entries are shared."""
        token: str | None = None
        if service.shared:
            deadline = _monotonic() + self.lock_timeout
            delay = 0.005
            while True:
                try:
                    token = await service.acquire_lock(key, self.lock_timeout)
                except CacheException:
                    token = None
                    break
                if token is not None or _monotonic() >= deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
                value = await self._peek(service, key)
                if value is not MISS:
                    return value
            if token is not None:
                value = await self._peek(service, key)  # filled while we waited for the lease
                if value is not MISS:
                    await self._release(service, key, token)
                    return value
        try:
            value = await self.func(*args, **kwargs)
            await self.store(service, key, value, args, kwargs)
            return value
        finally:
            if token is not None:
                await self._release(service, key, token)

    async def _peek(self, service: Any, key: str) -> Any:
        try:
            value = await service.get(key, MISS)
        except CacheException:
            return MISS
        return value.value if type(value) is StaleEnvelope else value

    async def _release(self, service: Any, key: str, token: str) -> None:
        try:
            await service.release_lock(key, token)
        except CacheException as exc:
            logger.debug("cache lease release failed", function=self.name, error=repr(exc))

    async def store(
        self, service: Any, key: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        ttl = service.default_ttl if self.ttl is None else self.ttl
        try:
            tags = self.tags.resolve(args, kwargs) or None
            if self.stale_ttl and ttl:
                await service.set(
                    key, StaleEnvelope(value, _time() + ttl), ttl=ttl + self.stale_ttl, tags=tags
                )
            else:
                await service.set(key, value, ttl=ttl, tags=tags)
        except CacheException as exc:
            self.warn("result could not be cached", exc)

    # --- stale-while-revalidate -----------------------------------------------------------

    def refresh(
        self, service: Any, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        if key in self.refreshing:
            return
        task = asyncio.get_running_loop().create_task(self._refresh(service, key, args, kwargs))
        self.refreshing[key] = task

        def done(t: asyncio.Task[None]) -> None:
            if self.refreshing.get(key) is t:
                del self.refreshing[key]

        task.add_done_callback(done)

    async def _refresh(
        self, service: Any, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        token: str | None = None
        try:
            if service.shared:
                token = await service.acquire_lock(key, self.lock_timeout)
                if token is None:
                    return  # another worker is refreshing it
            value = await self.func(*args, **kwargs)
            await self.store(service, key, value, args, kwargs)
        except Exception as exc:
            logger.warning(
                "background refresh failed; serving the stale value",
                function=self.name,
                error=repr(exc),
            )
        finally:
            if token is not None:
                await self._release(service, key, token)
