"""Caching decorators (guide §9): ``cached``, ``cache_aside``, ``invalidate_cache``, ``memoize``.

``cached`` and ``cache_aside`` go through ``cache_service`` (so they follow its backend, its
Redis->memory fallback and its metrics); ``memoize`` keeps results in this process only and works
on sync functions too.

Guarantees of ``cached`` / ``cache_aside`` (async functions):

- **Keys** are ``crown_nexus.core.cache.keys.generate_cache_key(func, args, kwargs,
  prefix=key_prefix)`` (the compiled key hashing when installed): the same in every process.
  ``cache_aside`` uses ``key_func(*args, **kwargs)`` instead.
- **Methods** (first parameter named ``self``): the instance is part of the key, so two instances
  never share an entry unless they say they are the same. The instance names itself with
  ``__cache_key__`` -- a method taking no arguments, a property or an attribute -- whose value
  (hashable like any argument: str, int, tuple, dataclass...) goes into the key together with the
  instance's class name. Without ``__cache_key__`` a dataclass or pydantic instance is keyed by
  its field values; any other instance raises
  :class:`~crown_nexus.core.cache.exceptions.CacheConfigurationException` at call time (define
  ``__cache_key__``, or use ``cache_aside(key_func=...)``, which gets ``self`` and decides).
  A first parameter named ``cls`` (a ``classmethod``) keys on the class's qualified name;
  a ``staticmethod`` is keyed like a plain function. ``memoize`` follows the same rules.
- **Stampede protection**: concurrent misses of one key in a process run the function once (the
  others await the same future). When entries are shared between processes (Redis up), the
  computing task holds a short Redis lease (``SET NX PX``, ``lock_timeout`` seconds); other
  workers poll for the value instead of recomputing, and compute themselves only if the lease
  expires without a value.
- **Stale-while-revalidate** (``stale_ttl``): after ``ttl`` the entry is stale but kept for
  ``stale_ttl`` more seconds; a stale hit returns at once while one task refreshes it in the
  background; if that refresh fails the stale value keeps being served (the error is logged).
- A cache failure never fails the call: the function runs uncached (logged). A result that cannot
  be stored (e.g. not serializable for Redis) is returned and logged.
- ``tags`` (and ``invalidate_cache`` patterns/keys/tags) may contain ``{name}`` placeholders,
  filled from the call's arguments: ``tags=["product:{product_id}"]``.

The wrapper exposes ``key_for(*args, **kwargs)`` and ``await invalidate(*args, **kwargs)``.

This module owns the decorators' signatures and wiring; the rules they share live beside it:
:mod:`~crown_nexus.core.cache.call_keys` (call digests, methods, ``{arg}`` templates),
:mod:`~crown_nexus.core.cache.readthrough` (single flight, leases, stale-while-revalidate) and
:mod:`~crown_nexus.core.cache.memo` (``memoize``, re-exported here).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from crown_nexus import accel
from crown_nexus.core.cache.call_keys import Templates, bound_kind, digester, key_error
from crown_nexus.core.cache.exceptions import CacheException, CacheKeyException
from crown_nexus.core.cache.keys import qualified_name
from crown_nexus.core.cache.memo import memoize
from crown_nexus.core.cache.readthrough import MISS, ReadThrough
from crown_nexus.core.cache.serialization import StaleEnvelope
from crown_nexus.core.cache.service import _active, current_cache_service
from crown_nexus.core.dependency_manager import get_service
from crown_nexus.logging import get_logger

__all__ = ["cache_aside", "cached", "invalidate_cache", "memoize"]

logger = get_logger("crown_nexus.core.cache")

F = TypeVar("F", bound=Callable[..., Any])

#: the call digest ``cached`` uses (the ``cache_keys`` hot path; tests swap implementations)
_make_key = accel.get("cache_keys").make_key
_time = time.time

TagsArg = Iterable[str] | Callable[..., Iterable[str]] | None


def _require_async(func: Callable[..., Any], decorator: str) -> None:
    if not inspect.iscoroutinefunction(func):
        raise TypeError(
            f"@{decorator} needs an async function ({qualified_name(func)} is sync); "
            "use @memoize for sync functions"
        )


def _attach(wrapper: Any, key_for: Callable[..., str], state: ReadThrough | None) -> None:
    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        """Remove the cached result of this call."""
        result: bool = await current_cache_service().delete(key_for(*args, **kwargs))
        return result

    wrapper.key_for = key_for
    wrapper.invalidate = invalidate
    wrapper.cache_state = state


def cached(
    ttl: float | Callable[..., Any] | None = None,
    key_prefix: str | None = None,
    tags: TagsArg = None,
    stale_ttl: float | None = None,
    *,
    lock_timeout: float = 5.0,
) -> Any:
    """Cache an async function's results in ``cache_service`` for ``ttl`` seconds.

    ``ttl=None`` uses ``CACHE_DEFAULT_TTL``. Keys are ``[<key_prefix>:]<module.qualname>:<digest
    of the arguments>``. See the module docstring for stampede protection, ``stale_ttl`` and
    ``tags``. Usable bare (``@cached``) or called (``@cached(ttl=300)``). On a method the
    instance is part of the key (``__cache_key__``, see the module docstring); an instance that
    cannot be identified raises :class:`CacheConfigurationException` instead of sharing entries.
    """
    if callable(ttl):
        return cached()(ttl)
    if stale_ttl is not None and stale_ttl < 0:
        raise ValueError("stale_ttl must be >= 0")

    def decorate(func: F) -> F:
        _require_async(func, "cached")
        name = qualified_name(func)
        base = f"{key_prefix}:{name}:" if key_prefix else f"{name}:"
        bound = bound_kind(func)
        digest = digester(name, bound, _make_key)
        state = ReadThrough(func, name, ttl, Templates(func, tags), stale_ttl, lock_timeout)
        make_key = _make_key

        def key_for(*args: Any, **kwargs: Any) -> str:
            return base + digest(args, kwargs)

        active = _active
        fill = state.fill

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if bound:
                key = base + digest(args, kwargs)
            else:
                try:
                    key = base + make_key(name, args, kwargs)
                except TypeError as exc:
                    raise key_error(exc) from exc
            service = active.service or get_service("cache_service")
            try:
                if getattr(service, "in_process", False):  # memory: no coroutine on the hit path
                    value = service.get_nowait(key, MISS)
                else:
                    value = await service.get(key, MISS)
            except CacheException as exc:
                state.warn("cache read failed; calling the function uncached", exc)
                return await func(*args, **kwargs)
            if value is MISS:
                return await fill(service, key, args, kwargs)
            if type(value) is StaleEnvelope:
                if value.fresh_until <= _time():
                    state.refresh(service, key, args, kwargs)
                return value.value
            return value

        _attach(wrapper, key_for, state)
        return wrapper  # type: ignore[return-value]

    return decorate


def cache_aside(
    key_func: Callable[..., str],
    ttl: float | None = None,
    tags: TagsArg = None,
    stale_ttl: float | None = None,
    *,
    lock_timeout: float = 5.0,
) -> Callable[[F], F]:
    """Cache-aside with your own key: ``key_func(*args, **kwargs)`` names the entry.

    Reads ``cache_service``; on a miss runs the function (once per key, as ``cached`` does),
    stores the result for ``ttl`` seconds with ``tags``, and returns it. On a method
    ``key_func`` receives ``self`` too: the key it returns must tell instances apart.
    """
    if not callable(key_func):
        raise TypeError("cache_aside needs key_func, a callable returning the cache key")

    def decorate(func: F) -> F:
        _require_async(func, "cache_aside")
        name = qualified_name(func)
        state = ReadThrough(func, name, ttl, Templates(func, tags), stale_ttl, lock_timeout)

        def key_for(*args: Any, **kwargs: Any) -> str:
            key = key_func(*args, **kwargs)
            if not isinstance(key, str) or not key:
                raise CacheKeyException("key_func must return a non-empty str")
            return key

        call = state.call

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await call(key_for(*args, **kwargs), args, kwargs)

        _attach(wrapper, key_for, state)
        return wrapper  # type: ignore[return-value]

    return decorate


def invalidate_cache(
    pattern: str | Callable[..., str] | None = None,
    *,
    keys: Iterable[str] | Callable[..., Iterable[str]] | None = None,
    tags: TagsArg = None,
) -> Callable[[F], F]:
    """After the async function returns, invalidate ``pattern`` (glob), ``keys`` and ``tags``.

    Each may hold ``{arg}`` placeholders filled from the call, or be a callable of the call's
    arguments. Nothing is invalidated when the function raises. A failing invalidation is logged,
    never raised (the function's work is done; with Redis down, the fallback replays it later).
    """
    if pattern is None and keys is None and tags is None:
        raise TypeError("invalidate_cache needs pattern=, keys= or tags=")

    def decorate(func: F) -> F:
        _require_async(func, "invalidate_cache")
        patterns_t = Templates(func, pattern)
        keys_t = Templates(func, keys)
        tags_t = Templates(func, tags)
        name = qualified_name(func)

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = await func(*args, **kwargs)
            try:
                service = current_cache_service()
                for p in patterns_t.resolve(args, kwargs):
                    await service.invalidate_pattern(p)
                ks = keys_t.resolve(args, kwargs)
                if ks:
                    await service.delete_many(ks)
                ts = tags_t.resolve(args, kwargs)
                if ts:
                    await service.invalidate_tags(ts)
            except CacheException as exc:
                logger.error("cache invalidation failed", function=name, error=repr(exc))
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
