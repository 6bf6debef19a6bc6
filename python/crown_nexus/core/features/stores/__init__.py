"""Flag stores: memory (default), SQL and Redis, behind :class:`FeatureStore`.

``SQLFeatureStore`` and ``RedisFeatureStore`` are imported on first access (PEP 562): the
Redis one needs the ``redis`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crown_nexus.core.features.stores.base import FeatureStore
from crown_nexus.core.features.stores.memory import MemoryFeatureStore

if TYPE_CHECKING:
    from crown_nexus.core.features.stores.redis import RedisFeatureStore
    from crown_nexus.core.features.stores.sql import SQLFeatureStore

__all__ = ["FeatureStore", "MemoryFeatureStore", "RedisFeatureStore", "SQLFeatureStore"]

_LAZY = {
    "RedisFeatureStore": "crown_nexus.core.features.stores.redis",
    "SQLFeatureStore": "crown_nexus.core.features.stores.sql",
}


def __getattr__(name: str) -> Any:
    """Import the SQL / Redis store modules on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
