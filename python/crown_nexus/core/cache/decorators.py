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
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from crown_nexus import accel
from crown_nexus.core.cache.exceptions import (
    CacheConfigurationException,
    CacheException,
    CacheKeyException,
)
from crown_nexus.core.cache.keys import qualified_name
from crown_nexus.core.cache.serialization import StaleEnvelope
from crown_nexus.core.cache.service import _active
from crown_nexus.core.dependency_manager import get_service
from crown_nexus.logging import get_logger

__all__ = ["cache_aside", "cached", "invalidate_cache", "memoize"]

logger = get_logger("crown_nexus.core.cache")

F = TypeVar("F", bound=Callable[..., Any])

_MISS: Any = object()
_make_key = accel.get("cache_keys").make_key
_hash_value = accel.get("cache_keys").hash_value
_time = time.time
_monotonic = time.monotonic

TagsArg = Iterable[str] | Callable[..., Iterable[str]] | None


def _service() -> Any:
    service = _active.service
    if service is None:
        service = get_service("cache_service")
    return service


_SELF, _CLS = 1, 2
_NO_HOOK: Any = object()


def _bound_kind(func: Callable[..., Any]) -> int:
    """``_SELF`` / ``_CLS`` when the first parameter is named ``self`` / ``cls``, else 0."""
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return 0
    if not params:
        return 0
    return {"self": _SELF, "cls": _CLS}.get(params[0], 0)


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _owner_part(first: Any) -> Any:
    """What identifies a method's instance (or a classmethod's class) inside its cache key.

    A class: its qualified name. An instance with ``__cache_key__``: ``(class name, value)``
    (called when it is a method). Otherwise the instance itself, hashed by value (dataclass,
    pydantic model); :func:`_owner_error` explains when that is impossible.
    """
    if isinstance(first, type):
        return ("cls", _class_name(first))
    hook = getattr(first, "__cache_key__", _NO_HOOK)
    if hook is _NO_HOOK:
        return first
    value = hook() if callable(hook) else hook
    return ("self", _class_name(type(first)), value)


def _owner_error(name: str, first: Any, owner: Any, exc: TypeError) -> CacheException | None:
    """A CacheConfigurationException when ``owner`` (not an argument) is what cannot be hashed."""
    try:
        _hash_value(owner)
    except TypeError:
        cls = first if isinstance(first, type) else type(first)
        if owner is first:
            message = (
                f"{name} is cached per instance, but a {_class_name(cls)} has no "
                "__cache_key__ and is not hashable by value: define __cache_key__ (a method, "
                "property or attribute naming the instance, e.g. its tenant) or use "
                "cache_aside(key_func=...)"
            )
        else:
            message = (
                f"{_class_name(cls)}.__cache_key__ returned a value that cannot be hashed "
                f"for a cache key ({exc})"
            )
        return CacheConfigurationException(
            message, details={"function": name, "class": _class_name(cls)}
        )
    return None


def _digester(name: str, bound: int) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
    """``digest(args, kwargs)``: the stable digest of a call, with typed errors.

    For a method (``bound``) the first argument is replaced by :func:`_owner_part`. Raises
    :class:`CacheKeyException` for an argument that cannot be hashed and
    :class:`CacheConfigurationException` when the instance cannot be identified.
    """
    make_key = _make_key

    def digest(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if not (bound and args):
            try:
                plain: str = make_key(name, args, kwargs)
            except TypeError as exc:
                raise _key_error(exc) from exc
            return plain
        first = args[0]
        owner = _owner_part(first)
        try:
            keyed: str = make_key(name, (owner, *args[1:]), kwargs)
        except TypeError as exc:
            error = _owner_error(name, first, owner, exc)
            if error is not None:
                raise error from exc
            raise _key_error(exc) from exc
        return keyed

    return digest


def _key_error(exc: TypeError) -> CacheKeyException:
    return CacheKeyException(str(exc), original_exception=exc)


class _Templates:
    """Strings with ``{arg}`` placeholders filled from a call's bound arguments."""

    def __init__(self, func: Callable[..., Any], spec: Any) -> None:
        self.func = func
        self.spec = spec
        self.sig: inspect.Signature | None = None
        if spec is None or callable(spec):
            self.static: tuple[str, ...] | None = None
        else:
            items = (spec,) if isinstance(spec, str) else tuple(spec)
            self.static = None if any("{" in s for s in items) else items
            self.items = items

    def resolve(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        if self.spec is None:
            return ()
        if callable(self.spec):
            out = self.spec(*args, **kwargs)
            return (out,) if isinstance(out, str) else tuple(out or ())
        if self.static is not None:
            return self.static
        if self.sig is None:
            self.sig = inspect.signature(self.func)
        bound = self.sig.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        return tuple(s.format(**bound.arguments) for s in self.items)


class _CacheState:
    """Per-decorated-function state: in-flight computations and background refreshes."""

    def __init__(
        self,
        func: Callable[..., Awaitable[Any]],
        name: str,
        ttl: float | None,
        tags: _Templates,
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
        service = _service()
        try:
            value = await service.get(key, _MISS)
        except CacheException as exc:
            self.warn("cache read failed; calling the function uncached", exc)
            return await self.func(*args, **kwargs)
        if value is not _MISS:
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
                if value is not _MISS:
                    return value
            if token is not None:
                value = await self._peek(service, key)  # filled while we waited for the lease
                if value is not _MISS:
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
            value = await service.get(key, _MISS)
        except CacheException:
            return _MISS
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


def _require_async(func: Callable[..., Any], decorator: str) -> None:
    if not inspect.iscoroutinefunction(func):
        raise TypeError(
            f"@{decorator} needs an async function ({qualified_name(func)} is sync); "
            "use @memoize for sync functions"
        )


def _attach(wrapper: Any, key_for: Callable[..., str], state: _CacheState | None) -> None:
    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        """Remove the cached result of this call."""
        result: bool = await _service().delete(key_for(*args, **kwargs))
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
        bound = _bound_kind(func)
        digest = _digester(name, bound)
        state = _CacheState(func, name, ttl, _Templates(func, tags), stale_ttl, lock_timeout)
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
                    raise _key_error(exc) from exc
            service = active.service or get_service("cache_service")
            try:
                if getattr(service, "in_process", False):  # memory: no coroutine on the hit path
                    value = service.get_nowait(key, _MISS)
                else:
                    value = await service.get(key, _MISS)
            except CacheException as exc:
                state.warn("cache read failed; calling the function uncached", exc)
                return await func(*args, **kwargs)
            if value is _MISS:
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
        state = _CacheState(func, name, ttl, _Templates(func, tags), stale_ttl, lock_timeout)

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
        patterns_t = _Templates(func, pattern)
        keys_t = _Templates(func, keys)
        tags_t = _Templates(func, tags)
        name = qualified_name(func)

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = await func(*args, **kwargs)
            try:
                service = _service()
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


class _LRU:
    """A small thread-safe LRU with per-entry expiry, for ``memoize``."""

    def __init__(self, maxsize: int, ttl: float | None) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self.data: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any:
        with self.lock:
            entry = self.data.get(key)
            if entry is None:
                self.misses += 1
                return _MISS
            if entry[1] and entry[1] <= _monotonic():
                del self.data[key]
                self.misses += 1
                return _MISS
            self.data.move_to_end(key)
            self.hits += 1
            return entry[0]

    def set(self, key: str, value: Any) -> None:
        with self.lock:
            self.data[key] = (value, _monotonic() + self.ttl if self.ttl else 0.0)
            self.data.move_to_end(key)
            while len(self.data) > self.maxsize:
                self.data.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.data.clear()


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
        store = _LRU(maxsize, ttl or None)
        key_of = _digester(name, _bound_kind(func))

        wrapper: Any
        if inspect.iscoroutinefunction(func):
            inflight: dict[str, asyncio.Future[Any]] = {}

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = key_of(args, kwargs)
                value = store.get(key)
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
                    store.set(key, value)
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
                value = store.get(key)
                if value is not _MISS:
                    return value
                value = func(*args, **kwargs)
                store.set(key, value)
                return value

            wrapper = sync_wrapper

        def cache_info() -> dict[str, int]:
            """Hits, misses and current size of this function's memo."""
            return {
                "hits": store.hits,
                "misses": store.misses,
                "size": len(store.data),
                "maxsize": maxsize,
            }

        wrapper.cache_clear = store.clear
        wrapper.cache_info = cache_info
        return wrapper  # type: ignore[no-any-return]

    return decorate
