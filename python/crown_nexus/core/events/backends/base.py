"""The interface every event backend implements."""

from __future__ import annotations

import abc
from typing import Any

__all__ = ["EventBackend"]


class EventBackend(abc.ABC):
    """Delivers published events (SPEC §6 dicts) to handlers, here or elsewhere."""

    #: short name used in metrics and logs
    name: str = "backend"

    @abc.abstractmethod
    async def publish(self, event: dict[str, Any], encoded: bytes) -> None:
        """Hand ``event`` (already validated; ``encoded`` is its JSON) to the handlers.

        Returns once the backend has accepted it (memory: handler tasks scheduled; Celery: the
        broker has the message). Raises :class:`EventPublishException` when it cannot.
        """

    async def wait_for_pending(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until in-process handler runs finished; True when none is left (default: none)."""
        return True

    def pending_count(self) -> int:
        """How many in-process handler runs are scheduled or running."""
        return 0

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop accepting events and release resources (drains in-process work first)."""
        await self.wait_for_pending(timeout)
