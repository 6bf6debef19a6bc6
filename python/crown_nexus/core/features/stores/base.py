"""The flag store interface: where rules live, and how a service sees others' changes.

A store keeps each flag's rule as JSON data under its name, plus a *version* that changes on
every write. A service loads everything once, then, for a ``shared`` store, polls
:meth:`FeatureStore.version` in the background and reloads when it changed; evaluations only
read the service's local copy, never the store.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

__all__ = ["FeatureStore"]


class FeatureStore(abc.ABC):
    """Abstract flag store (memory, SQL, Redis)."""

    #: short name used in logs and metric labels
    name: ClassVar[str] = "store"
    #: True when other processes may change it (the service then polls :meth:`version`)
    shared: ClassVar[bool] = False
    #: how often a service polls a shared store by default (seconds)
    default_poll_interval: ClassVar[float] = 1.0

    async def initialize(self) -> None:  # noqa: B027 - optional hook, most stores need none
        """Prepare the store (create tables, check the connection). Default: nothing."""

    @abc.abstractmethod
    async def version(self) -> str:
        """An opaque token that changes whenever a flag is written or deleted."""

    @abc.abstractmethod
    async def load(self) -> tuple[str, dict[str, dict[str, Any]]]:
        """Every stored rule as ``(version, {name: json data})``, read consistently."""

    @abc.abstractmethod
    async def save(self, name: str, data: dict[str, Any]) -> None:
        """Store ``data`` (a rule's JSON data) as flag ``name``, replacing what was there."""

    @abc.abstractmethod
    async def delete(self, name: str) -> bool:
        """Remove flag ``name``; return whether it was stored."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Default: nothing."""

    def describe(self) -> str:
        """What this store is, for logs (never a password)."""
        return self.name
