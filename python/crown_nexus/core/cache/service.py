"""``CacheService``: the guide's ``cache_service``, routing to memory, Redis or null.

The service is registered as ``"cache_service"`` (``get_service("cache_service")``, or
:func:`get_cache_service`). It reads ``CACHE_DEFAULT_BACKEND``, ``CACHE_DEFAULT_TTL`` and the
``REDIS_*`` settings from ``crown_nexus.core.config.settings`` (or the ``Settings`` passed in);
:func:`configure_cache` (called by ``setup_app``) points the shared one at an app's ``Settings``.

Backends, by name (``_get_backend(name)``):

- ``"memory"``: a bounded LRU + TTL cache in this process;
- ``"null"``: stores nothing;
- ``"redis"`` (when ``REDIS_URI`` is set or the default backend is ``redis``): Redis behind a
  :class:`~crown_nexus.core.cache.backends.fallback.FallbackCacheBackend`: when Redis is down or
  stalls, operations are served by an in-process memory cache (logged once, counted in
  ``cache_fallback_total``) and return to Redis when it is back. Without Redis configured,
  ``_get_backend("redis")`` returns the default backend, so the guide's tag code runs anywhere.

Every operation is ``async``; ``ttl=None`` means ``CACHE_DEFAULT_TTL`` and ``ttl=0`` no expiry.
"""

from __future__ import annotations

import asyncio
import copy
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from crown_nexus.container import current_container
from crown_nexus.core.cache._metrics import _BATCH as _METRICS_BATCH
from crown_nexus.core.cache._metrics import CacheMetrics
from crown_nexus.core.cache.backends.base import CacheBackend
from crown_nexus.core.cache.backends.fallback import FallbackCacheBackend
from crown_nexus.core.cache.backends.memory import MemoryCacheBackend
from crown_nexus.core.cache.backends.null import NullCacheBackend
from crown_nexus.core.cache.exceptions import CacheConfigurationException
from crown_nexus.core.dependency_manager import get_service, register_service
from crown_nexus.core.tracing import Span, end_span, start_span, tracing_enabled
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings

__all__ = ["CacheService", "configure_cache", "current_cache_service", "get_cache_service"]

logger = get_logger("crown_nexus.core.cache")

_MISS: Any = object()
_perf = time.perf_counter


def _span(operation: str, backend: CacheBackend) -> Span | None:
    """A ``cache.<operation>`` span (tracer ``crown_nexus.cache``) when tracing is on; keys are
    not recorded (they may hold user data)."""
    if not tracing_enabled():
        return None
    return start_span(
        f"cache.{operation}",
        tracer="crown_nexus.cache",
        attributes={"cache.operation": operation, "cache.backend": backend.active_name},
    )

BACKEND_NAMES = ("memory", "redis", "null")


class CacheService:
    """The cache API the application uses (guide §9); see the module docstring.

    ``default_backend``/``default_ttl``/``redis_url`` override the settings; ``component`` labels
    the metrics; ``memory_max_size`` bounds the memory backends; ``key_prefix`` namespaces Redis
    keys; ``op_timeout`` bounds how long a stalled Redis holds an operation before it falls back.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        default_backend: str | None = None,
        default_ttl: float | None = None,
        redis_url: str | None = None,
        key_prefix: str = "",
        memory_max_size: int = 10_000,
        component: str = "cache",
        op_timeout: float = 1.0,
        retry_interval: float = 1.0,
        metrics: bool | None = None,
    ) -> None:
        if settings is None:
            from crown_nexus.core.config import settings as loaded

            settings = loaded
        self._options: dict[str, Any] = {
            "key_prefix": key_prefix,
            "memory_max_size": memory_max_size,
            "op_timeout": op_timeout,
            "retry_interval": retry_interval,
        }
        self._component = component
        self._metrics_override = metrics
        self._retired: list[CacheBackend] = []
        self._views: weakref.WeakSet[CacheService] = weakref.WeakSet()
        self._build(settings, default_backend, default_ttl, redis_url)
        enabled = settings.metrics_enabled if metrics is None else metrics
        self.metrics = CacheMetrics(component, enabled=enabled)
        self._parent: CacheService | None = None
        self.initialized = False

    def _build(
        self,
        settings: Settings,
        default_backend: str | None = None,
        default_ttl: float | None = None,
        redis_url: str | None = None,
    ) -> None:
        """Validate the configuration and create (unconnected) backends for it."""
        name = default_backend or settings.CACHE_DEFAULT_BACKEND
        if name not in BACKEND_NAMES:
            raise CacheConfigurationException(
                f"unknown cache backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}"
            )
        ttl = settings.CACHE_DEFAULT_TTL if default_ttl is None else default_ttl
        if ttl < 0:
            raise CacheConfigurationException("CACHE_DEFAULT_TTL must be >= 0")
        memory_max_size: int = self._options["memory_max_size"]
        backends: dict[str, CacheBackend] = {
            "memory": MemoryCacheBackend(memory_max_size),
            "null": NullCacheBackend(),
        }
        url = redis_url or settings.REDIS_URI or (settings.redis_url if name == "redis" else None)
        if url:
            from crown_nexus.core.cache.backends.redis import RedisCacheBackend

            backends["redis"] = FallbackCacheBackend(
                RedisCacheBackend(url, key_prefix=self._options["key_prefix"]),
                MemoryCacheBackend(memory_max_size),
                op_timeout=self._options["op_timeout"],
                retry_interval=self._options["retry_interval"],
                on_state_change=self._on_redis_state,
            )
        elif name == "redis":  # pragma: no cover - settings.redis_url always gives a URL here
            raise CacheConfigurationException("CACHE_DEFAULT_BACKEND is redis but no Redis URL")
        self.settings = settings
        self.default_ttl: float = ttl
        self.default_backend_name = name
        self._redis_url: str | None = url or None
        self._backends = backends
        self._default: CacheBackend = backends[name]
        self._nowait = getattr(self._default, "get_nowait", None)
        #: True when the default backend answers without I/O (memory, null): see get_nowait
        self.in_process: bool = self._nowait is not None
        # metric keys of the in-process read path, built once (no tuple per call)
        name_ = self._default.name
        self._get_hit_key = ("get", name_, "hit")
        self._get_miss_key = ("get", name_, "miss")

    def configuration(self) -> tuple[str, float, str | None]:
        """``(default backend, default TTL, Redis URL or None)``: what this service uses now."""
        return (self.default_backend_name, self.default_ttl, self._redis_url)

    @staticmethod
    def configuration_for(settings: Settings) -> tuple[str, float, str | None]:
        """What :meth:`configure` would make :meth:`configuration` for ``settings``."""
        name = settings.CACHE_DEFAULT_BACKEND
        url = settings.REDIS_URI or (settings.redis_url if name == "redis" else None)
        return (name, float(settings.CACHE_DEFAULT_TTL), url or None)

    def configure(self, settings: Settings) -> bool:
        """Follow ``settings`` (an app's): its ``CACHE_DEFAULT_BACKEND``, ``CACHE_DEFAULT_TTL``
        and Redis URL. Returns whether anything changed.

        Nothing happens when ``settings`` give the configuration in use. Otherwise new backends
        are created (without connecting: Redis connects on the loop that first uses it) and the
        old ones are retired: closed by the next :meth:`initialize` or :meth:`shutdown`, on the
        loop that runs it. Views from :meth:`for_component` follow. The service is process-wide:
        reconfigure it when an app is set up, not while another app is serving on it. Raises
        ``CacheConfigurationException`` for a bad configuration (the service is left unchanged).
        """
        if self._parent is not None:
            return self._parent.configure(settings)
        enabled = settings.metrics_enabled if self._metrics_override is None else (
            self._metrics_override
        )
        if self.configuration() == self.configuration_for(settings):
            self.settings = settings
            self._set_metrics_enabled(enabled)
            return False
        old = list(self._backends.values())
        self._build(settings)
        if self.initialized:
            self._retired.extend(old)  # opened: close them on the loop of the next start/stop
        self.initialized = False
        self._set_metrics_enabled(enabled)
        for view in list(self._views):
            view._adopt(self)
        logger.info(
            "cache service configured",
            backend=self.default_backend_name,
            redis="configured" if self._redis_url else "not configured",
        )
        return True

    def _set_metrics_enabled(self, enabled: bool) -> None:
        if self.metrics.enabled != enabled:
            self.metrics.flush()
            self.metrics = CacheMetrics(self._component, enabled=enabled)

    def _adopt(self, parent: CacheService) -> None:
        """Take ``parent``'s (new) configuration and backends (a view after ``configure``)."""
        for attr in (
            "settings", "default_ttl", "default_backend_name", "_redis_url", "_backends",
            "_default", "_nowait", "in_process", "_get_hit_key", "_get_miss_key",
        ):
            setattr(self, attr, getattr(parent, attr))

    async def _close_retired(self) -> None:
        """Close the backends a :meth:`configure` replaced (never raises)."""
        retired, self._retired = self._retired, []
        for backend in retired:
            await _close_backend(backend)

    # --- backends --------------------------------------------------------------------------

    def _on_redis_state(self, up: bool) -> None:
        self.metrics.backend_state("redis", up)

    def _get_backend(self, name: str | None = None) -> CacheBackend:
        """The backend called ``name`` (default: the configured default backend).

        ``"redis"`` without Redis configured returns the default backend (every backend has
        ``get_set_members`` and ``delete``). Unknown names raise ``CacheConfigurationException``.
        """
        if name is None:
            return self._default
        backend = self._backends.get(name)
        if backend is not None:
            return backend
        if name == "redis":
            return self._default
        raise CacheConfigurationException(
            f"unknown cache backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}"
        )

    @property
    def backend(self) -> CacheBackend:
        """The default backend."""
        return self._default

    @property
    def active_backend_name(self) -> str:
        """Which backend serves operations now (``"memory"`` while Redis is replaced by memory)."""
        return self._default.active_name

    @property
    def shared(self) -> bool:
        """True when entries are shared between processes right now (Redis up)."""
        return self.active_backend_name == "redis"

    def _ttl(self, ttl: float | None) -> float | None:
        return self.default_ttl if ttl is None else ttl

    # --- operations ------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value cached at ``key``, or ``default`` (``None``) on a miss."""
        backend = self._default
        metrics = self.metrics
        sp = _span("get", backend)
        try:
            if len(metrics.samples) < metrics.max_samples:
                t0 = _perf()
                value = await backend.get(key, _MISS)
                metrics.samples.append(("get", backend.active_name, _perf() - t0))
            else:
                value = await backend.get(key, _MISS)
        except BaseException as exc:
            end_span(sp, exc)
            raise
        if value is _MISS:
            metrics.count(("get", backend.active_name, "miss"))
            if sp is not None:
                sp.set_attribute("cache.hit", False)
                sp.end()
            return default
        metrics.count(("get", backend.active_name, "hit"))
        if sp is not None:
            sp.set_attribute("cache.hit", True)
            sp.end()
        return value

    def get_nowait(self, key: str, default: Any = None) -> Any:
        """:meth:`get` without awaiting, for in-process default backends (:attr:`in_process`).

        Raises ``RuntimeError`` when the default backend is out of process (Redis): use ``get``.
        """
        get = self._nowait
        if get is None:
            raise RuntimeError(f"the {self._default.name} backend must be awaited: use get()")
        metrics = self.metrics
        if len(metrics.samples) < metrics.max_samples:
            t0 = _perf()
            value = get(key, _MISS)
            metrics.samples.append(("get", self._default.name, _perf() - t0))
        else:
            value = get(key, _MISS)
        if value is _MISS:
            metrics.count(self._get_miss_key)
            return default
        # metrics.count(self._get_hit_key), inlined: this is the whole cost of a memory hit
        counts = metrics.counts
        key_ = self._get_hit_key
        counts[key_] = counts.get(key_, 0) + 1
        metrics.pending += 1
        if not metrics._scheduled:
            metrics._schedule()
        elif metrics.pending >= _METRICS_BATCH:
            metrics.flush()
        return value

    async def set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Cache ``value`` at ``key`` for ``ttl`` seconds (default ``CACHE_DEFAULT_TTL``; 0 = no
        expiry), adding ``key`` to each tag's set ``cache:tag:<tag>``.

        Raises ``CacheSerializationException`` (a ``CacheOperationException``) when Redis cannot
        store the value.
        """
        backend = self._default
        if isinstance(tags, str):
            tags = (tags,)
        metrics = self.metrics
        sp = _span("set", backend)
        try:
            if len(metrics.samples) < metrics.max_samples:
                t0 = _perf()
                await backend.set(key, value, self.default_ttl if ttl is None else ttl, tags)
                metrics.samples.append(("set", backend.active_name, _perf() - t0))
            else:
                await backend.set(key, value, self.default_ttl if ttl is None else ttl, tags)
        except BaseException as exc:
            end_span(sp, exc)
            raise
        end_span(sp)
        metrics.count(("set", backend.active_name, ""))

    async def _op(self, operation: str, *args: Any) -> Any:
        backend = self._default
        sp = _span(operation, backend)
        t0 = _perf()
        try:
            result = await getattr(backend, operation)(*args)
        except BaseException as exc:
            end_span(sp, exc)
            raise
        end_span(sp)
        name = backend.active_name
        if len(self.metrics.samples) < self.metrics.max_samples:
            self.metrics.samples.append((operation, name, _perf() - t0))
        self.metrics.count((operation, name, ""))
        return result

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it existed."""
        result: bool = await self._op("delete", key)
        return result

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove every key in ``keys`` (one round trip on Redis); return how many existed."""
        result: int = await self._op("delete_many", list(keys))
        return result

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live entry."""
        result: bool = await self._op("exists", key)
        return result

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return ``{key: value}`` for the keys that are cached (one ``MGET`` on Redis)."""
        ks = list(keys)
        backend = self._default
        sp = _span("get_many", backend)
        t0 = _perf()
        try:
            found: dict[str, Any] = await backend.get_many(ks)
        except BaseException as exc:
            end_span(sp, exc)
            raise
        if sp is not None:
            sp.set_attribute("cache.keys", len(ks))
            sp.set_attribute("cache.hits", len(found))
            sp.end()
        name = backend.active_name
        if len(self.metrics.samples) < self.metrics.max_samples:
            self.metrics.samples.append(("get_many", name, _perf() - t0))
        counts = self.metrics.counts
        for outcome, n in (("hit", len(found)), ("miss", len(ks) - len(found))):
            if n:
                k = ("get_many", name, outcome)
                counts[k] = counts.get(k, 0) + n
        self.metrics.count(("get_many", name, ""))
        return found

    async def set_many(
        self,
        mapping: Mapping[str, Any],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Cache every item of ``mapping`` with the same ``ttl`` and ``tags`` (one pipeline)."""
        if isinstance(tags, str):
            tags = (tags,)
        await self._op("set_many", mapping, self._ttl(ttl), tags)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount`` to the integer at ``key`` (created at 0; ``ttl`` applies only
        when it is created; ``None`` = no expiry). Raises ``CacheOperationException`` when the
        value is not an integer."""
        result: int = await self._op("incr", key, amount, ttl)
        return result

    async def invalidate_pattern(self, pattern: str) -> int:
        """Remove every entry whose key matches the glob ``pattern`` (``SCAN`` on Redis)."""
        result: int = await self._op("invalidate_pattern", pattern)
        return result

    async def invalidate_tags(self, tags: Iterable[str] | str) -> int:
        """Remove every entry tagged with one of ``tags`` and the tag sets; return how many."""
        tag_list = [tags] if isinstance(tags, str) else list(tags)
        result: int = await self._op("invalidate_tags", tag_list)
        return result

    async def clear(self) -> None:
        """Remove every entry of the default backend."""
        await self._op("clear")

    async def acquire_lock(self, name: str, ttl: float = 5.0) -> str | None:
        """Take the short lease ``name`` (``SET NX PX`` on Redis); its token, or ``None``."""
        result: str | None = await self._default.acquire_lock(name, ttl)
        return result

    async def release_lock(self, name: str, token: str) -> bool:
        """Release the lease ``name`` if ``token`` still owns it."""
        result: bool = await self._default.release_lock(name, token)
        return result

    def for_component(self, component: str) -> CacheService:
        """A view of this service (same backends, same entries) whose metrics are labelled
        ``component`` (e.g. ``get_service("cache_service").for_component("product_service")``).

        The view needs no start-up of its own; its ``shutdown()`` only flushes its metrics.
        """
        view = copy.copy(self)
        view.metrics = CacheMetrics(component, enabled=self.metrics.enabled)
        view._parent = self._parent or self
        view._parent._views.add(view)
        return view

    # --- lifecycle -------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Connect and warm the backends (Redis down at start-up: start on the fallback)."""
        if self._parent is not None:
            self.initialized = True
            return
        await self._close_retired()
        for backend in self._backends.values():
            await backend.initialize()
        redis = self._backends.get("redis")
        if isinstance(redis, FallbackCacheBackend):  # cache_backend_up exists from the start
            self.metrics.backend_state("redis", redis.up, count_fallback=False)
        else:  # no Redis: the in-process default backend is up
            self.metrics.backend_state(self.default_backend_name, True, count_fallback=False)
        self.initialized = True
        if get_service("cache_service") is self:
            _active.service = self

    async def shutdown(self) -> None:
        """Flush metrics and close every backend."""
        if _active.service is self:
            _active.service = None
        self.metrics.flush()
        if self._parent is not None:
            self.initialized = False
            return
        await self._close_retired()
        for backend in self._backends.values():
            await _close_backend(backend)
        self.initialized = False

    def flush_metrics(self) -> None:
        """Hand pending metric counts to ``metrics_service`` now (they are otherwise handed over
        at the end of the event-loop iteration)."""
        self.metrics.flush()

    def __repr__(self) -> str:
        return f"<CacheService default={self.default_backend_name!r} backends={sorted(self._backends)}>"


async def _close_backend(backend: CacheBackend) -> None:
    """Close ``backend`` on the running loop; connections opened on another loop are dropped
    first (redis-py asyncio connections belong to the loop that opened them). Never raises."""
    loop = getattr(backend, "_loop", None)
    if loop is not None and loop is not asyncio.get_running_loop():
        forget = getattr(getattr(backend, "primary", None), "forget_connections", None)
        if forget is not None:
            forget()
    try:
        await backend.close()
    except Exception as exc:
        logger.warning("cache backend did not close cleanly", backend=backend.name, error=repr(exc))


class _Active:
    """The current app's started ``cache_service`` (kept in its container), so decorators skip
    the registry lookup on the hot path: one ``ContextVar`` read and one dict lookup."""

    __slots__ = ()

    @property
    def service(self) -> CacheService | None:
        found: CacheService | None = current_container().state.get("cache.active")
        return found

    @service.setter
    def service(self, value: CacheService | None) -> None:
        state = current_container().state
        if value is None:
            state.pop("cache.active", None)
        else:
            state["cache.active"] = value


_active = _Active()


def current_cache_service() -> CacheService:
    """The cache service decorators use: the started shared one, else ``get_service``.

    ``initialize()`` of the service that ``get_service("cache_service")`` returns makes it the
    started one; its ``shutdown()`` clears that, so overrides installed afterwards are honoured.
    """
    service = _active.service
    if service is None:
        service = get_service("cache_service")
    return service


def _build_cache_service() -> CacheService:
    """Factory of ``cache_service``: one per app container, from that app's settings."""
    return CacheService()


register_service(_build_cache_service, name="cache_service")


def configure_cache(settings: Settings) -> CacheService:
    """Point the current app's ``cache_service`` (the default container's outside an app) at
    ``settings`` and return it.

    ``setup_app`` does not need it: each app's cache is built from its own settings. The service
    is rebuilt only when its backend, TTL or Redis URL differ (see :meth:`CacheService.configure`);
    an override installed with ``override_service`` that is not a ``CacheService`` is left alone.
    """
    service = get_service("cache_service")
    if isinstance(service, CacheService):
        service.configure(settings)
    return service  # type: ignore[no-any-return]


def get_cache_service() -> CacheService:
    """The current app's ``cache_service`` (the same object as ``get_service("cache_service")``)."""
    service: CacheService = get_service("cache_service")
    return service
