"""``memoize``: results remembered in this process, for sync and async functions.

Owns the process-local memo: keys are the call digests of
:mod:`~crown_nexus.core.cache.call_keys` (methods included), entries live in one
:class:`~crown_nexus.core.cache.lru.LRUCache` per function (``maxsize``, ``ttl``, hit/miss
counts behind ``cache_info()``), guarded by a lock so sync functions may be called from threads,
and concurrent async calls with the same arguments run the function once. Nothing goes through
``cache_service``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from crown_nexus import accel
from crown_nexus.core.cache.call_keys import bound_kind, digester
from crown_nexus.core.cache.keys import qualified_name
from crown_nexus.core.cache.lru import LRUCache

__all__ = ["memoize"]

F = TypeVar("F", bound=Callable[..., Any])

_MISS: Any = object()
_make_key = accel.get("cache_keys").make_key


def memoize(ttl: float | Callable[..., Any] | None = None, maxsize: int = 1024) -> Any:
    """Remember results in this process for ``ttl`` seconds (``None``: until evicted).

    Works on sync and async functions; at most ``maxsize`` results are kept (least recently used
    go first). Arguments are hashed like ``cached`` keys (``CacheKeyException`` for values that
    cannot be hashed stably). On a method the instance is part of the key as for ``cached``
    (``__cache_key__``, or the instance's fields; else :class:`CacheConfigurationException`).
    Concurrent async calls with the same arguments run the function once.
    The wrapper has ``cache_clear()`` and ``cache_info()``.
    """
    if callable(ttl):
        return memoize()(ttl)
    if ttl is not None and ttl < 0:
        raise ValueError("ttl must be >= 0")
    if maxsize < 1:
        raise ValueError("maxsize must be at least 1")

    def decorate(func: F) -> F:
        name = qualified_name(func)
        store = LRUCache(maxsize)
        lock = threading.Lock()
        lifetime = ttl or None
        key_of = digester(name, bound_kind(func), _make_key)

        wrapper: Any
        if inspect.iscoroutinefunction(func):
            inflight: dict[str, asyncio.Future[Any]] = {}

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = key_of(args, kwargs)
                with lock:
                    value = store.get(key, _MISS)
                if value is not _MISS:
                    return value
                fut = inflight.get(key)
                if fut is not None:
                    return await asyncio.shield(fut)
                fut = asyncio.get_running_loop().create_future()
                inflight[key] = fut
                try:
                    value = await func(*args, **kwargs)
                except asyncio.CancelledError:
                    fut.cancel()
                    raise
                except BaseException as exc:
                    fut.set_exception(exc)
                    fut.exception()
                    raise
                else:
                    with lock:
                        store.put(key, value, lifetime)
                    fut.set_result(value)
                    return value
                finally:
                    if inflight.get(key) is fut:
                        del inflight[key]

            wrapper = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = key_of(args, kwargs)
                with lock:
                    value = store.get(key, _MISS)
                if value is not _MISS:
                    return value
                value = func(*args, **kwargs)
                with lock:
                    store.put(key, value, lifetime)
                return value

            wrapper = sync_wrapper

        def cache_clear() -> None:
            """Forget every remembered result (the hit/miss counts are kept)."""
            with lock:
                store.clear()

        def cache_info() -> dict[str, int]:
            """Hits, misses and current size of this function's memo."""
            return {
                "hits": store.hits,
                "misses": store.misses,
                "size": len(store),
                "maxsize": maxsize,
            }

        wrapper.cache_clear = cache_clear
        wrapper.cache_info = cache_info
        return wrapper  # type: ignore[no-any-return]

    return decorate
