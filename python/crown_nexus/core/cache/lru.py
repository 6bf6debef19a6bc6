"""The one in-process LRU of the cache package: bounded, per-entry expiry, hit/miss/eviction stats.

Owns how entries are kept in this process: the size bound, least-recently-used eviction, expiry
on a monotonic clock, and the counters (``hits``, ``misses``, ``evictions``). Used by
:class:`~crown_nexus.core.cache.backends.memory.MemoryCacheBackend` (which adds tags, locks and
the async backend API on top) and by :func:`~crown_nexus.core.cache.memo.memoize`.

Not thread-safe by itself: every operation runs without awaiting, so it is atomic for asyncio
tasks on one loop; callers shared between threads (``memoize`` on a sync function) hold a lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["SWEEP_INTERVAL", "LRUCache"]

#: when the cache is full, expired entries are swept at most this often (seconds) before the
#: least recently used live entry is evicted
SWEEP_INTERVAL = 1.0


class LRUCache:
    """At most ``max_size`` entries; storing one more drops expired entries, then the least
    recently used (counted in :attr:`evictions`).

    An entry is ``[value, expires_at (0.0: never), meta]``; ``meta`` is the owner's (the memory
    backend keeps an entry's tags there) and ``on_remove(key, meta)`` is called whenever an entry
    with a ``meta`` leaves the cache (expired, evicted, replaced or dropped; not on
    :meth:`clear`). ``clock`` (monotonic seconds) is injectable for tests. :meth:`get` counts
    :attr:`hits` and :attr:`misses` (an expired entry is a miss).

    :attr:`data` may be read directly by a hot path (the memory backend's hit): an entry whose
    ``expires_at`` is set and not after ``clock()`` is expired and must be dropped with
    :meth:`pop`; a live one is marked used with ``data.move_to_end(key)``. Every write goes
    through the methods.
    """

    __slots__ = ("_clock", "_last_sweep", "_on_remove", "data", "evictions", "hits", "max_size",
                 "misses")

    def __init__(
        self,
        max_size: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_remove: Callable[[str, Any], None] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self._clock = clock
        self._on_remove = on_remove
        #: key -> [value, expires_at (0.0 = never), meta]; least recently used first
        self.data: OrderedDict[str, list[Any]] = OrderedDict()
        self._last_sweep = 0.0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: str, default: Any = None) -> Any:
        """The live value at ``key`` (marked most recently used), else ``default``."""
        data = self.data
        entry = data.get(key)
        if entry is None:
            self.misses += 1
            return default
        exp = entry[1]
        if exp and exp <= self._clock():
            del data[key]
            if entry[2] is not None and self._on_remove is not None:
                self._on_remove(key, entry[2])
            self.misses += 1
            return default
        data.move_to_end(key)
        self.hits += 1
        return entry[0]

    def live(self, key: str) -> list[Any] | None:
        """The live entry at ``key`` (dropping it when expired), without marking it used."""
        entry = self.data.get(key)
        if entry is None:
            return None
        exp = entry[1]
        if exp and exp <= self._clock():
            del self.data[key]
            if entry[2] is not None and self._on_remove is not None:
                self._on_remove(key, entry[2])
            return None
        return entry

    def touch(self, key: str) -> None:
        """Mark ``key`` most recently used."""
        self.data.move_to_end(key)

    def put(self, key: str, value: Any, ttl: float | None = None, meta: Any = None) -> None:
        """Store ``value`` at ``key`` for ``ttl`` seconds (``None``/0: until evicted)."""
        data = self.data
        now = self._clock()
        old = data.pop(key, None)
        if old is not None and old[2] is not None and self._on_remove is not None:
            self._on_remove(key, old[2])
        if len(data) >= self.max_size:
            if now - self._last_sweep >= SWEEP_INTERVAL:
                self._sweep(now)
            on_remove = self._on_remove
            while len(data) >= self.max_size:
                k, e = data.popitem(last=False)
                if e[2] is not None and on_remove is not None:
                    on_remove(k, e[2])
                self.evictions += 1
        data[key] = [value, now + ttl if ttl else 0.0, meta]

    def pop(self, key: str) -> bool:
        """Remove ``key``; True when it held a live entry."""
        entry = self.data.pop(key, None)
        if entry is None:
            return False
        if entry[2] is not None and self._on_remove is not None:
            self._on_remove(key, entry[2])
        return entry[1] == 0.0 or entry[1] > self._clock()

    def _sweep(self, now: float) -> None:
        data = self.data
        on_remove = self._on_remove
        for k in [k for k, e in data.items() if e[1] and e[1] <= now]:
            e = data.pop(k)
            if e[2] is not None and on_remove is not None:
                on_remove(k, e[2])
        self._last_sweep = now

    def clear(self) -> None:
        """Remove every entry (``on_remove`` is not called; the counters are kept)."""
        self.data.clear()

    def keys(self) -> list[str]:
        """A snapshot of the keys, expired ones included, least recently used first."""
        return list(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
