"""The cache system (guide §9): one service over memory, Redis and null backends.

Public names (``from crown_nexus.core.cache import ...``):

- :class:`CacheService`, :func:`get_cache_service` — the service registered as ``"cache_service"``.
- :func:`cached`, :func:`invalidate_cache`, :func:`cache_aside`, :func:`memoize` — decorators.
- :class:`CacheBackend` and :class:`MemoryCacheBackend`, :class:`NullCacheBackend`,
  ``RedisCacheBackend`` (imported on first use: it needs the ``redis`` extra).
- The exceptions of :mod:`crown_nexus.core.cache.exceptions`.

Submodules are imported on first attribute access, so ``import crown_nexus.core.cache`` stays
cheap and never imports redis; ``crown_nexus.core.cache.keys`` holds the key helpers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crown_nexus.core.cache.exceptions import (
    CacheConfigurationException,
    CacheErrorCode,
    CacheException,
    CacheKeyException,
    CacheOperationException,
    CacheSerializationException,
)

if TYPE_CHECKING:
    from crown_nexus.core.cache.backends import (
        CacheBackend,
        MemoryCacheBackend,
        NullCacheBackend,
        RedisCacheBackend,
    )
    from crown_nexus.core.cache.decorators import cache_aside, cached, invalidate_cache, memoize
    from crown_nexus.core.cache.keys import (
        content_hash,
        generate_cache_key,
        generate_list_key,
        generate_model_key,
    )
    from crown_nexus.core.cache.service import CacheService, get_cache_service

__all__ = [
    "CacheBackend",
    "CacheConfigurationException",
    "CacheErrorCode",
    "CacheException",
    "CacheKeyException",
    "CacheOperationException",
    "CacheSerializationException",
    "CacheService",
    "MemoryCacheBackend",
    "NullCacheBackend",
    "RedisCacheBackend",
    "cache_aside",
    "cached",
    "content_hash",
    "generate_cache_key",
    "generate_list_key",
    "generate_model_key",
    "get_cache_service",
    "invalidate_cache",
    "memoize",
]

_LAZY: dict[str, str] = {
    "CacheBackend": "crown_nexus.core.cache.backends",
    "MemoryCacheBackend": "crown_nexus.core.cache.backends",
    "NullCacheBackend": "crown_nexus.core.cache.backends",
    "RedisCacheBackend": "crown_nexus.core.cache.backends",
    "CacheService": "crown_nexus.core.cache.service",
    "get_cache_service": "crown_nexus.core.cache.service",
    "cached": "crown_nexus.core.cache.decorators",
    "invalidate_cache": "crown_nexus.core.cache.decorators",
    "cache_aside": "crown_nexus.core.cache.decorators",
    "memoize": "crown_nexus.core.cache.decorators",
    "content_hash": "crown_nexus.core.cache.keys",
    "generate_cache_key": "crown_nexus.core.cache.keys",
    "generate_list_key": "crown_nexus.core.cache.keys",
    "generate_model_key": "crown_nexus.core.cache.keys",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access (PEP 562)."""
    modname = _LAZY.get(name)
    if modname is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(modname), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
