"""In-process cache: bounded, least-recently-used eviction, per-entry TTL, tags.

Every operation runs without awaiting in between, so it is atomic with respect to other asyncio
tasks on the loop: ``incr`` and ``acquire_lock`` need no lock. Values are stored as given (no copy),
like any in-process cache: do not mutate a value after caching it. Pass ``serialize=True`` to
store encoded bytes instead (isolated copies, the same round-trip rules as Redis).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from crown_nexus.core.cache import serialization
from crown_nexus.core.cache.backends.base import TAG_PREFIX, CacheBackend, check_ttl, glob_to_regex
from crown_nexus.core.cache.exceptions import CacheOperationException
from crown_nexus.core.cache.lru import LRUCache

__all__ = ["MemoryCacheBackend"]


class MemoryCacheBackend(CacheBackend):
    """A bounded LRU + TTL cache in this process.

    ``max_size`` bounds the number of entries: storing one more first drops expired entries,
    then the least recently used. ``clock`` (monotonic seconds) is injectable for tests. The
    entries live in a :class:`~crown_nexus.core.cache.lru.LRUCache` (:attr:`lru`); this class
    adds the tag index, leases and the backend API.
    """

    name: ClassVar[str] = "memory"
    active_name: ClassVar[str] = "memory"  # type: ignore[misc]

    def __init__(
        self,
        max_size: int = 10_000,
        *,
        serialize: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.serialize = serialize
        self._clock = clock
        #: the entries; an entry's ``meta`` is its tags (a tuple) or None
        self.lru = LRUCache(max_size, clock=clock, on_remove=self._unlink)
        self._entries = self.lru.data
        self._tags: dict[str, set[str]] = {}
        self._locks: dict[str, tuple[str, float]] = {}

    @property
    def evictions(self) -> int:
        """Live entries dropped to make room (least recently used first)."""
        return self.lru.evictions

    # --- internals -------------------------------------------------------------------------

    def _unlink(self, key: str, tags: tuple[str, ...]) -> None:
        """Forget ``key`` in the tag sets of ``tags`` (the LRU calls it when an entry leaves)."""
        for tag in tags:
            members = self._tags.get(tag)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._tags[tag]

    def _store(self, key: str, value: Any, ttl: float | None, tags: tuple[str, ...] | None) -> None:
        if self.serialize:
            value = serialization.dumps(value)
        self.lru.put(key, value, ttl, tags)
        if tags:
            for tag in tags:
                self._tags.setdefault(tag, set()).add(key)

    def _out(self, value: Any) -> Any:
        return serialization.loads(value) if self.serialize else value

    # --- operations ------------------------------------------------------------------------

    # get / get_nowait read the LRU's entries directly (LRUCache.get without its hit/miss
    # counters: a method call and the counters would add ~30 % to a memory hit, which is the
    # whole cost of a cached call); an expired entry is dropped through the LRU.

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the live value at ``key`` (marking it recently used), else ``default``."""
        entry = self._entries.get(key)
        if entry is None:
            return default
        exp = entry[1]
        if exp and exp <= self._clock():
            self.lru.pop(key)
            return default
        self._entries.move_to_end(key)
        return serialization.loads(entry[0]) if self.serialize else entry[0]

    def get_nowait(self, key: str, default: Any = None) -> Any:
        """:meth:`get` without the coroutine (the store is in-process, nothing to wait for)."""
        entry = self._entries.get(key)
        if entry is None:
            return default
        exp = entry[1]
        if exp and exp <= self._clock():
            self.lru.pop(key)
            return default
        self._entries.move_to_end(key)
        return serialization.loads(entry[0]) if self.serialize else entry[0]

    async def set(
        self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] | None = None
    ) -> None:
        """Store ``value`` at ``key`` (evicting the least recently used entry when full)."""
        self._store(key, value, check_ttl(ttl), tuple(tags) if tags else None)

    async def delete(self, key: str) -> bool:
        """Remove the entry ``key``, or the tag set ``cache:tag:<tag>``."""
        if key in self.lru:
            return self.lru.pop(key)
        if key.startswith(TAG_PREFIX):
            return self._tags.pop(key[len(TAG_PREFIX) :], None) is not None
        return False

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove every key in ``keys``; return how many were live entries."""
        return sum(1 for k in keys if self.lru.pop(k))

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live entry."""
        return self.lru.live(key) is not None

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return ``{key: value}`` for live keys."""
        found: dict[str, Any] = {}
        for k in keys:
            entry = self.lru.live(k)
            if entry is not None:
                self.lru.touch(k)
                found[k] = self._out(entry[0])
        return found

    async def set_many(
        self,
        mapping: Mapping[str, Any],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Store every item of ``mapping``."""
        ttl = check_ttl(ttl)
        tag_tuple = tuple(tags) if tags else None
        for k, v in mapping.items():
            self._store(k, v, ttl, tag_tuple)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer at ``key`` (0 if missing; ``ttl`` set only on creation)."""
        if type(amount) is not int:
            raise CacheOperationException(
                "incr amount must be an integer", backend=self.name, operation="incr"
            )
        ttl = check_ttl(ttl)
        entry = self.lru.live(key)
        if entry is None:
            self._store(key, amount, ttl, None)
            return amount
        current = self._out(entry[0])
        if type(current) is not int:
            raise CacheOperationException(
                "value is not an integer", backend=self.name, operation="incr"
            )
        entry[0] = serialization.dumps(current + amount) if self.serialize else current + amount
        self.lru.touch(key)
        return current + amount

    async def invalidate_pattern(self, pattern: str) -> int:
        """Remove every live entry whose key matches the Redis glob ``pattern``."""
        match = glob_to_regex(pattern).match
        return sum(1 for k in self.lru.keys() if match(k) and self.lru.pop(k))

    async def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Remove every entry tagged with one of ``tags``, and the tag sets."""
        removed = 0
        for tag in list(tags):
            for k in list(self._tags.pop(tag, ())):
                removed += self.lru.pop(k)
        return removed

    async def get_set_members(self, set_key: str) -> list[str]:
        """Return the live keys of the tag set ``cache:tag:<tag>`` (``[]`` for other names)."""
        if not set_key.startswith(TAG_PREFIX):
            return []
        members = self._tags.get(set_key[len(TAG_PREFIX) :])
        if not members:
            return []
        return [k for k in list(members) if self.lru.live(k) is not None]

    async def clear(self) -> None:
        """Remove every entry, tag set and lock."""
        self.lru.clear()
        self._tags.clear()
        self._locks.clear()

    async def acquire_lock(self, name: str, ttl: float) -> str | None:
        """Take the lease ``name`` for ``ttl`` seconds unless another live holder has it."""
        now = self._clock()
        held = self._locks.get(name)
        if held is not None and held[1] > now:
            return None
        token = secrets.token_hex(8)
        self._locks[name] = (token, now + ttl)
        return token

    async def release_lock(self, name: str, token: str) -> bool:
        """Release ``name`` when ``token`` owns it."""
        held = self._locks.get(name)
        if held is None or held[0] != token:
            return False
        del self._locks[name]
        return True

    def __len__(self) -> int:
        return len(self.lru)
