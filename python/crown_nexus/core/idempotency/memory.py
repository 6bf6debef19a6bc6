"""Idempotency keys in process memory (one worker; tests, development)."""

from __future__ import annotations

import time
from collections import OrderedDict

from crown_nexus.core.idempotency._base import (
    Claim,
    ClaimState,
    IdempotencyStore,
    StoredResponse,
    decode_record,
    done_record,
    new_owner,
    pending_prefix,
    pending_record,
)

__all__ = ["MemoryIdempotencyStore"]


class MemoryIdempotencyStore(IdempotencyStore):
    """Keys in a dict with per-key expiry; at most ``max_entries`` keys holding at most
    ``max_bytes`` of stored records in all (the oldest dropped first), so replayable responses
    (up to 1 MiB each) cannot grow a worker without bound. The default, 16 MiB, holds thousands
    of ordinary JSON answers or 16 of the largest; a TTL of a day means a busy worker fills it
    and stays there (64 MiB was a bound that looked like a leak).

    Each method runs without awaiting, so it is atomic on the event loop. Not shared between
    processes: with several workers use :class:`~crown_nexus.core.idempotency.RedisIdempotencyStore`.
    """

    name = "memory"

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 16 * 1024 * 1024) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be at least 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._bytes = 0  # len() of every stored record

    def _drop(self, key: str) -> None:
        _, value = self._data.pop(key)
        self._bytes -= len(value)

    def _get(self, key: str) -> str | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._drop(key)
            return None
        return entry[1]

    def _set(self, key: str, value: str, ttl: float) -> None:
        if key in self._data:
            self._drop(key)
        self._data[key] = (time.monotonic() + max(ttl, 0.001), value)
        self._bytes += len(value)
        while len(self._data) > 1 and (
            len(self._data) > self.max_entries or self._bytes > self.max_bytes
        ):
            self._drop(next(iter(self._data)))

    async def claim(self, key: str, fingerprint: str, lock_ttl: float) -> Claim:
        """See :meth:`IdempotencyStore.claim`."""
        current = self._get(key)
        if current is not None:
            return decode_record(current)
        owner = new_owner()
        self._set(key, pending_record(owner, fingerprint), lock_ttl)
        return Claim(ClaimState.CLAIMED, owner=owner)

    async def complete(
        self, key: str, owner: str, fingerprint: str, response: StoredResponse, ttl: float
    ) -> bool:
        """See :meth:`IdempotencyStore.complete`."""
        current = self._get(key)
        if current is not None and not current.startswith(pending_prefix(owner)):
            return False
        self._set(key, done_record(fingerprint, response), ttl)
        return True

    async def release(self, key: str, owner: str) -> bool:
        """See :meth:`IdempotencyStore.release`."""
        current = self._get(key)
        if current is None or not current.startswith(pending_prefix(owner)):
            return False
        self._drop(key)
        return True
