"""The one in-process LRU (``crown_nexus.core.cache.lru``) behind the memory backend and memoize."""

from __future__ import annotations

from typing import Any

import pytest

from crown_nexus.core.cache import MemoryCacheBackend, memoize
from crown_nexus.core.cache.lru import SWEEP_INTERVAL, LRUCache


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bound_evicts_least_recently_used() -> None:
    """At most max_size entries; a get marks an entry used, so the other one is evicted."""
    lru = LRUCache(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1
    lru.put("c", 3)
    assert lru.keys() == ["a", "c"]
    assert lru.evictions == 1
    assert len(lru) == 2


def test_ttl_expiry_and_stats() -> None:
    """An entry past its TTL is a miss and leaves; hits and misses are counted."""
    clock = Clock()
    lru = LRUCache(10, clock=clock)
    lru.put("a", "x", ttl=5)
    lru.put("b", "y")
    assert lru.get("a") == "x"
    clock.now += 5
    assert lru.get("a", "gone") == "gone"
    assert "a" not in lru
    assert lru.get("b") == "y"
    assert lru.get("zzz") is None
    assert (lru.hits, lru.misses) == (2, 2)


def test_full_cache_sweeps_expired_before_evicting_live() -> None:
    """When full, expired entries go first (no eviction counted) before a live LRU entry."""
    clock = Clock()
    lru = LRUCache(2, clock=clock)
    lru.put("live", 1)
    lru.put("short", 2, ttl=1)
    clock.now += SWEEP_INTERVAL + 1
    lru.put("new", 3)
    assert sorted(lru.keys()) == ["live", "new"]
    assert lru.evictions == 0


def test_on_remove_sees_meta_of_every_leaving_entry() -> None:
    """on_remove(key, meta) runs for entries with meta on expiry, eviction, replacement, pop."""
    clock = Clock()
    removed: list[tuple[str, Any]] = []
    lru = LRUCache(2, clock=clock, on_remove=lambda k, m: removed.append((k, m)))
    lru.put("a", 1, meta=("t",))
    lru.put("a", 2, meta=("u",))  # replaced
    lru.put("b", 1, ttl=1, meta=("v",))
    lru.put("plain", 1)  # evicts "a" (least recently used)
    clock.now += 2
    assert lru.live("b") is None  # expired
    assert lru.pop("plain") is True
    assert lru.pop("plain") is False
    assert removed == [("a", ("t",)), ("a", ("u",)), ("b", ("v",))]


def test_pop_reports_whether_the_entry_was_live() -> None:
    """pop() is True only for an entry that had not expired."""
    clock = Clock()
    lru = LRUCache(5, clock=clock)
    lru.put("a", 1, ttl=1)
    clock.now += 1
    assert lru.pop("a") is False


def test_max_size_must_be_positive() -> None:
    """A bound below 1 is refused."""
    with pytest.raises(ValueError):
        LRUCache(0)


async def test_memory_backend_and_memoize_use_the_same_lru() -> None:
    """The memory backend keeps its entries in an LRUCache; memoize's bound and stats come from one."""
    mem = MemoryCacheBackend(max_size=2)
    assert isinstance(mem.lru, LRUCache)
    await mem.set("a", 1)
    await mem.set("b", 2)
    await mem.set("c", 3)
    assert mem.evictions == mem.lru.evictions == 1

    calls = 0

    @memoize(maxsize=2)
    def double(x: int) -> int:
        nonlocal calls
        calls += 1
        return 2 * x

    assert [double(1), double(2), double(1), double(3), double(2)] == [2, 4, 2, 6, 4]
    assert calls == 4  # 2 was evicted by 3 (1 had been used more recently)
    assert double.cache_info() == {"hits": 1, "misses": 4, "size": 2, "maxsize": 2}
