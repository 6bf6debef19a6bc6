"""One suite for every cache backend: memory and a real Redis (null where it applies)."""

from __future__ import annotations

import asyncio

import pytest

from crown_nexus.core.cache import CacheOperationException, CacheService


async def test_get_set_and_default(service: CacheService) -> None:
    """A stored value comes back; a missing key gives the default."""
    await service.set("user:profile:1", {"name": "Ada", "roles": ["admin"]}, ttl=60)
    assert await service.get("user:profile:1") == {"name": "Ada", "roles": ["admin"]}
    assert await service.get("user:profile:2") is None
    assert await service.get("user:profile:2", "fallback") == "fallback"


async def test_cached_none_is_not_a_miss(service: CacheService) -> None:
    """A cached None is returned as None, distinguishable from a miss through the default."""
    await service.set("k", None, ttl=60)
    assert await service.get("k", "missing") is None
    assert await service.exists("k")


async def test_ttl_expiry(service: CacheService) -> None:
    """An entry disappears after its TTL; ttl=0 never expires."""
    await service.set("short", 1, ttl=0.2)
    await service.set("forever", 2, ttl=0)
    assert await service.get("short") == 1
    await asyncio.sleep(0.35)
    assert await service.get("short") is None
    assert await service.get("forever") == 2


async def test_default_ttl_applies(request: pytest.FixtureRequest, service: CacheService) -> None:
    """ttl=None uses CACHE_DEFAULT_TTL."""
    service.default_ttl = 0.2
    await service.set("d", "v")
    await asyncio.sleep(0.35)
    assert await service.get("d") is None


async def test_negative_ttl_is_rejected(service: CacheService) -> None:
    """A negative TTL is a clear ValueError, not a silent no-expiry."""
    with pytest.raises(ValueError):
        await service.set("k", 1, ttl=-1)


async def test_delete_and_delete_many(service: CacheService) -> None:
    """delete reports whether the key existed; delete_many counts existing keys."""
    await service.set_many({"a": 1, "b": 2, "c": 3}, ttl=60)
    assert await service.delete("a") is True
    assert await service.delete("a") is False
    assert await service.delete_many(["b", "c", "zz"]) == 2
    assert await service.get_many(["a", "b", "c"]) == {}


async def test_get_many_and_set_many(service: CacheService) -> None:
    """get_many returns only the hits; set_many stores all items."""
    await service.set_many({"x:1": 1, "x:2": [2], "x:3": {"three": 3}}, ttl=60)
    assert await service.get_many(["x:1", "x:2", "x:3", "x:4"]) == {
        "x:1": 1,
        "x:2": [2],
        "x:3": {"three": 3},
    }


async def test_tags_group_invalidation(service: CacheService) -> None:
    """Entries tagged alike are listed by get_set_members and invalidated together."""
    await service.set("product:1", {"id": 1}, ttl=60, tags=["products", "product:1"])
    await service.set("product:2", {"id": 2}, ttl=60, tags=["products"])
    await service.set("order:1", {"id": 9}, ttl=60, tags=["orders"])
    backend = service._get_backend("redis")
    assert sorted(await backend.get_set_members("cache:tag:products")) == [
        "product:1",
        "product:2",
    ]
    assert await service.invalidate_tags(["products"]) == 2
    assert await service.get("product:1") is None
    assert await service.get("order:1") == {"id": 9}
    assert await backend.get_set_members("cache:tag:products") == []


async def test_guide_tag_recipe(service: CacheService) -> None:
    """The guide's recipe: members of cache:tag:<tag>, delete_many, then delete the tag set."""
    await service.set_many({"p:1": 1, "p:2": 2}, ttl=60, tags=["catalog"])
    backend = service._get_backend("redis")
    keys = await backend.get_set_members("cache:tag:catalog")
    assert await service.delete_many(keys) == 2
    await backend.delete("cache:tag:catalog")
    assert await backend.get_set_members("cache:tag:catalog") == []
    assert await service.get_many(["p:1", "p:2"]) == {}


async def test_tag_membership_expires_with_entries(service: CacheService) -> None:
    """When every tagged entry has expired, the tag lists nothing."""
    await service.set("e:1", 1, ttl=0.2, tags=["ephemeral"])
    await asyncio.sleep(0.35)
    assert await service._get_backend("redis").get_set_members("cache:tag:ephemeral") == []


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("products:list:*", {"products:list:a", "products:list:b"}),
        ("products:?:x", {"products:1:x"}),
        ("products:[12]:*", {"products:1:x", "products:2:y"}),
        ("products:[^1]:*", {"products:2:y"}),
        ("products:[a-z]*", {"products:list:a", "products:list:b"}),
        ("products:\\*", {"products:*"}),
        ("nothing:*", set()),
    ],
)
async def test_invalidate_pattern_glob(
    service: CacheService, pattern: str, expected: set[str]
) -> None:
    """Patterns follow Redis glob rules identically on every backend."""
    keys = [
        "products:list:a",
        "products:list:b",
        "products:1:x",
        "products:2:y",
        "products:*",
        "other",
    ]
    await service.set_many({k: k for k in keys}, ttl=60)
    assert await service.invalidate_pattern(pattern) == len(expected)
    left = set(await service.get_many(keys))
    assert left == set(keys) - expected


async def test_incr_is_atomic_under_concurrency(service: CacheService) -> None:
    """100 concurrent increments give exactly 100; the counter reads back as an int."""
    await asyncio.gather(*(service.incr("hits") for _ in range(100)))
    assert await service.get("hits") == 100
    assert await service.incr("hits", 5) == 105


async def test_incr_reads_values_written_by_set(service: CacheService) -> None:
    """An int stored with set can be incremented; incr's ttl applies only on creation."""
    await service.set("n", 41, ttl=60)
    assert await service.incr("n") == 42
    assert await service.incr("fresh", 3, ttl=0.2) == 3
    await asyncio.sleep(0.35)
    assert await service.get("fresh") is None


async def test_incr_on_non_integer_raises(service: CacheService) -> None:
    """Incrementing a non-integer value raises CacheOperationException (the caller must know)."""
    await service.set("s", "text", ttl=60)
    with pytest.raises(CacheOperationException, match="not an integer"):
        await service.incr("s")


async def test_clear_removes_everything(service: CacheService) -> None:
    """clear empties the backend."""
    await service.set_many({"a": 1, "b": 2}, ttl=60, tags=["t"])
    await service.clear()
    assert await service.get_many(["a", "b"]) == {}
    assert await service._get_backend("redis").get_set_members("cache:tag:t") == []


async def test_locks_are_exclusive(service: CacheService) -> None:
    """A lease is exclusive until released by its owner, and a wrong token cannot release it."""
    token = await service.acquire_lock("job", ttl=5)
    assert token is not None
    assert await service.acquire_lock("job", ttl=5) is None
    assert await service.release_lock("job", "not-the-token") is False
    assert await service.release_lock("job", token) is True
    assert await service.acquire_lock("job", ttl=5) is not None


async def test_lock_expires(service: CacheService) -> None:
    """A lease whose holder died frees itself after its TTL."""
    assert await service.acquire_lock("dead", ttl=0.2) is not None
    await asyncio.sleep(0.35)
    assert await service.acquire_lock("dead", ttl=5) is not None


async def test_concurrent_writers_do_not_corrupt(service: CacheService) -> None:
    """Many concurrent set/get tasks on overlapping keys always read a value some writer wrote."""

    async def worker(i: int) -> None:
        for j in range(20):
            await service.set(f"c:{j % 5}", {"writer": i, "j": j}, ttl=60)
            value = await service.get(f"c:{j % 5}")
            assert value is None or set(value) == {"writer", "j"}

    await asyncio.gather(*(worker(i) for i in range(20)))


async def test_null_backend_stores_nothing(any_service: CacheService) -> None:
    """The null backend accepts every call and never returns a value; others store."""
    await any_service.set("k", 1, ttl=60, tags=["t"])
    await any_service.set_many({"a": 1}, ttl=60)
    if any_service.default_backend_name == "null":
        assert await any_service.get("k") is None
        assert await any_service.get_many(["a"]) == {}
        assert await any_service.delete("k") is False
        assert await any_service.invalidate_pattern("*") == 0
        assert await any_service.invalidate_tags(["t"]) == 0
        assert await any_service._get_backend("redis").get_set_members("cache:tag:t") == []
        assert await any_service.incr("n", 2) == 2
        assert await any_service.acquire_lock("l", 1) is not None
    else:
        assert await any_service.get("k") == 1
        assert await any_service.get_many(["a"]) == {"a": 1}
