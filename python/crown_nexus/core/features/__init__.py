"""Feature flags (guide §14): ``Flag``, ``FeatureTarget`` and the ``feature_service``.

Public names (``from crown_nexus.core.features import ...``):

- :class:`Flag` (the shipped flags), :func:`register_flag` (the application's own),
  :class:`FeatureTarget` (``USER``, ``GROUP``, ``TENANT``, ``GLOBAL``), :class:`FlagRule`;
- :class:`FeatureService`, registered as ``"feature_service"`` and ``"feature_flag_service"``
  (:func:`get_feature_service`); :func:`configure_features` points it at an app's settings;
- stores: :class:`MemoryFeatureStore` (default), ``SQLFeatureStore``, ``RedisFeatureStore``
  (imported on first access; Redis needs the ``redis`` extra);
- ``CrownNexusProvider`` in :mod:`crown_nexus.core.features.openfeature` (``openfeature`` extra).

Importing the package registers the service and imports neither redis nor openfeature.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crown_nexus.core.features._bucket import BUCKETS, bucket, bucketer
from crown_nexus.core.features.models import (
    FeatureStoreException,
    FeatureTarget,
    Flag,
    FlagDefinition,
    FlagRegistry,
    FlagRule,
    UnknownFlagException,
    flag_name,
    get_flag_registry,
    register_flag,
    reset_flag_registry,
)
from crown_nexus.core.features.service import (
    FeatureService,
    FlagEvaluation,
    configure_features,
    get_feature_service,
    store_for_settings,
)
from crown_nexus.core.features.stores import FeatureStore, MemoryFeatureStore

if TYPE_CHECKING:
    from crown_nexus.core.features.stores.redis import RedisFeatureStore
    from crown_nexus.core.features.stores.sql import SQLFeatureStore

__all__ = [
    "BUCKETS",
    "FeatureService",
    "FeatureStore",
    "FeatureStoreException",
    "FeatureTarget",
    "Flag",
    "FlagDefinition",
    "FlagEvaluation",
    "FlagRegistry",
    "FlagRule",
    "MemoryFeatureStore",
    "RedisFeatureStore",
    "SQLFeatureStore",
    "UnknownFlagException",
    "bucket",
    "bucketer",
    "configure_features",
    "flag_name",
    "get_feature_service",
    "get_flag_registry",
    "register_flag",
    "reset_flag_registry",
    "store_for_settings",
]

_LAZY = {
    "RedisFeatureStore": "crown_nexus.core.features.stores.redis",
    "SQLFeatureStore": "crown_nexus.core.features.stores.sql",
}


def __getattr__(name: str) -> Any:
    """Import the SQL / Redis stores on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
