"""Idempotency keys (IETF httpapi ``Idempotency-Key`` draft): the stores behind
:class:`~crown_nexus.middleware.idempotency.IdempotencyMiddleware`.

:class:`MemoryIdempotencyStore` keeps keys in one process; :class:`RedisIdempotencyStore` shares
them between workers. Both implement :class:`IdempotencyStore`: an atomic claim, completion with
the stored response and a TTL, and release of a failed request's claim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crown_nexus.core.idempotency._base import (
    Claim,
    ClaimState,
    IdempotencyStore,
    StoredResponse,
)
from crown_nexus.core.idempotency.memory import MemoryIdempotencyStore

if TYPE_CHECKING:
    from crown_nexus.core.idempotency.redis import RedisIdempotencyStore

__all__ = [
    "Claim",
    "ClaimState",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "RedisIdempotencyStore",
    "StoredResponse",
    "create_idempotency_store",
]


def __getattr__(name: str) -> object:
    if name == "RedisIdempotencyStore":  # redis-py is an optional dependency
        from crown_nexus.core.idempotency.redis import RedisIdempotencyStore

        return RedisIdempotencyStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_idempotency_store(redis_url: str | None = None) -> IdempotencyStore:
    """A Redis store for ``redis_url`` (shared by workers), else a memory store."""
    if redis_url:
        from crown_nexus.core.idempotency.redis import RedisIdempotencyStore

        return RedisIdempotencyStore(redis_url)
    return MemoryIdempotencyStore()
