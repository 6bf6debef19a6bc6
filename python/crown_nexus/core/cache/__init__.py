"""The cache system (guide §9): one service over memory, Redis and null backends.

Public names (``from crown_nexus.core.cache import ...``):

- :class:`CacheService`, :func:`get_cache_service` — the service registered as ``"cache_service"``;
  :func:`configure_cache` points it at an app's settings (``setup_app`` calls it).
- :func:`cached`, :func:`invalidate_cache`, :func:`cache_aside`, :func:`memoize` — decorators.
- :class:`CacheBackend` and :class:`MemoryCacheBackend`, :class:`NullCacheBackend`,
  ``RedisCacheBackend`` (imported on first use: it needs the ``redis`` extra).
- The exceptions of :mod:`crown_nexus.core.cache.exceptions`.

Importing the package registers ``cache_service`` and never imports redis (the Redis backend
module is imported when a Redis backend is built); ``crown_nexus.core.cache.keys`` holds the key
helpers and ``crown_nexus.core.cache.etags`` the ETag / ``If-None-Match`` helpers.

Where each job lives: ``service`` (the service, its backends and metrics), ``backends/`` (memory,
Redis, the Redis->memory fallback, null), ``lru`` (the one in-process LRU: the memory backend's
entries and ``memoize``'s), ``serialization`` (values on the wire), ``keys`` (key shapes and
digests), ``decorators`` (``cached``, ``cache_aside``, ``invalidate_cache``) over
``call_keys`` (a call's digest, methods, ``{arg}`` templates) and ``readthrough`` (single flight,
leases, stale-while-revalidate), ``memo`` (``memoize``), ``etags``, ``exceptions``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crown_nexus.core.cache.backends import (
    CacheBackend,
    FallbackCacheBackend,
    MemoryCacheBackend,
    NullCacheBackend,
)
from crown_nexus.core.cache.decorators import cache_aside, cached, invalidate_cache, memoize
from crown_nexus.core.cache.exceptions import (
    CacheConfigurationException,
    CacheErrorCode,
    CacheException,
    CacheKeyException,
    CacheOperationException,
    CacheSerializationException,
)
from crown_nexus.core.cache.keys import (
    content_hash,
    generate_cache_key,
    generate_list_key,
    generate_model_key,
)
from crown_nexus.core.cache.service import CacheService, configure_cache, get_cache_service

if TYPE_CHECKING:
    from crown_nexus.core.cache.backends.redis import RedisCacheBackend

__all__ = [
    "CacheBackend",
    "CacheConfigurationException",
    "CacheErrorCode",
    "CacheException",
    "CacheKeyException",
    "CacheOperationException",
    "CacheSerializationException",
    "CacheService",
    "FallbackCacheBackend",
    "MemoryCacheBackend",
    "NullCacheBackend",
    "RedisCacheBackend",
    "cache_aside",
    "cached",
    "configure_cache",
    "content_hash",
    "generate_cache_key",
    "generate_list_key",
    "generate_model_key",
    "get_cache_service",
    "invalidate_cache",
    "memoize",
]


def __getattr__(name: str) -> Any:
    """Import ``RedisCacheBackend`` (it needs the ``redis`` extra) on first access (PEP 562)."""
    if name == "RedisCacheBackend":
        value = importlib.import_module("crown_nexus.core.cache.backends.redis").RedisCacheBackend
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
