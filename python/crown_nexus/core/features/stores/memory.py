"""The in-process flag store (the default): flags live as long as the process."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from crown_nexus.core.features.stores.base import FeatureStore

__all__ = ["MemoryFeatureStore"]


class MemoryFeatureStore(FeatureStore):
    """Flags in a dict of this process; nothing is shared or kept across restarts."""

    name: ClassVar[str] = "memory"
    shared: ClassVar[bool] = False

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self._version = 0

    async def version(self) -> str:
        return str(self._version)

    async def load(self) -> tuple[str, dict[str, dict[str, Any]]]:
        return str(self._version), copy.deepcopy(self._data)

    async def save(self, name: str, data: dict[str, Any]) -> None:
        self._data[name] = copy.deepcopy(data)
        self._version += 1

    async def delete(self, name: str) -> bool:
        existed = self._data.pop(name, None) is not None
        if existed:
            self._version += 1
        return existed
