"""Cache backends behind one abstract base: memory, Redis, null, and the Redis->memory fallback.

``RedisCacheBackend`` is imported on first access (it needs the ``redis`` extra), so importing
this package never imports redis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crown_nexus.core.cache.backends.base import TAG_PREFIX, CacheBackend, glob_to_regex
from crown_nexus.core.cache.backends.fallback import FallbackCacheBackend
from crown_nexus.core.cache.backends.memory import MemoryCacheBackend
from crown_nexus.core.cache.backends.null import NullCacheBackend

if TYPE_CHECKING:
    from crown_nexus.core.cache.backends.redis import RedisCacheBackend

__all__ = [
    "TAG_PREFIX",
    "CacheBackend",
    "FallbackCacheBackend",
    "MemoryCacheBackend",
    "NullCacheBackend",
    "RedisCacheBackend",
    "glob_to_regex",
]


def __getattr__(name: str) -> Any:
    """Import ``RedisCacheBackend`` on first access (PEP 562)."""
    if name == "RedisCacheBackend":
        value = importlib.import_module("crown_nexus.core.cache.backends.redis").RedisCacheBackend
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
