"""cached / cache_aside / invalidate_cache / memoize on memory and real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from crown_nexus.core.cache import (
    CacheConfigurationException,
    CacheKeyException,
    CacheService,
    cache_aside,
    cached,
    generate_cache_key,
    invalidate_cache,
    memoize,
)
from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.settings import Settings
from tests.conftest import implementations_of


async def test_cached_miss_then_hit(service: CacheService) -> None:
    """The function runs on the first call only; later calls return the cached result."""
    calls: list[str] = []

    @cached(ttl=60)
    async def get_product_details(product_id: str) -> dict[str, str]:
        calls.append(product_id)
        return {"id": product_id}

    assert await get_product_details("p1") == {"id": "p1"}
    assert await get_product_details("p1") == {"id": "p1"}
    assert await get_product_details(product_id="p2") == {"id": "p2"}
    assert calls == ["p1", "p2"]


async def test_cached_keys_come_from_generate_cache_key(service: CacheService) -> None:
    """The entry's key is generate_cache_key(func, args, kwargs, prefix=key_prefix)."""

    @cached(ttl=60, key_prefix="catalog")
    async def lookup(a: int, b: str = "x") -> int:
        return a

    await lookup(1, b="y")
    key = generate_cache_key(lookup.__wrapped__, (1,), {"b": "y"}, prefix="catalog")
    assert lookup.key_for(1, b="y") == key
    assert await service.get(key) == 1
    assert await lookup.invalidate(1, b="y") is True
    assert await service.get(key) is None


async def test_cached_none_result_is_cached(service: CacheService) -> None:
    """A None result is a cached value, not a perpetual miss."""
    calls = 0

    @cached(ttl=60)
    async def nothing() -> None:
        nonlocal calls
        calls += 1

    await nothing()
    await nothing()
    assert calls == 1


async def test_cached_expires_after_ttl(service: CacheService) -> None:
    """After ttl seconds the function runs again."""
    calls = 0

    @cached(ttl=0.2)
    async def tick() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await tick() == 1
    assert await tick() == 1
    await asyncio.sleep(0.35)
    assert await tick() == 2


async def test_stampede_runs_function_once(service: CacheService) -> None:
    """200 concurrent misses of one key run the function once and all get its result."""
    calls = 0

    @cached(ttl=60)
    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return x * 2

    results = await asyncio.gather(*(slow(21) for _ in range(200)))
    assert results == [42] * 200
    assert calls == 1


async def test_stampede_error_reaches_every_waiter(service: CacheService) -> None:
    """When the single computation fails, every concurrent caller gets the error, nothing is cached."""
    calls = 0

    @cached(ttl=60)
    async def boom() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise RuntimeError("db down")

    results = await asyncio.gather(*(boom() for _ in range(10)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls == 1
    with pytest.raises(RuntimeError):
        await boom()
    assert calls == 2


async def test_cancelled_leader_does_not_strand_waiters(service: CacheService) -> None:
    """If the computing task is cancelled, waiting callers compute the value themselves."""
    started = asyncio.Event()
    calls = 0

    @cached(ttl=60)
    async def work() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.1)
        return "done"

    leader = asyncio.create_task(work())
    await started.wait()
    follower = asyncio.create_task(work())
    await asyncio.sleep(0)
    leader.cancel()
    assert await follower == "done"
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_stampede_across_workers_with_redis_lock(redis_url: str) -> None:
    """Two services (two workers) on one Redis: concurrent misses compute once thanks to the lease."""
    prefix = f"w{time.monotonic_ns()}:"
    workers = [
        CacheService(Settings(), default_backend="redis", redis_url=redis_url, key_prefix=prefix)
        for _ in range(2)
    ]
    for w in workers:
        await w.initialize()
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return 7

    # one decorated function per "process": separate in-process future maps, same key
    in_worker = [cached(ttl=60)(compute), cached(ttl=60)(compute)]

    async def call_on(i: int, delay: float) -> int:
        await asyncio.sleep(delay)
        with get_registry().override("cache_service", workers[i]):
            return await in_worker[i]()

    try:
        assert in_worker[0].key_for() == in_worker[1].key_for()
        results = await asyncio.gather(call_on(0, 0), call_on(1, 0.02))
        assert results == [7, 7]
        assert calls == 1
    finally:
        for w in workers:
            await w.clear()
            await w.shutdown()


async def test_stale_while_revalidate(service: CacheService) -> None:
    """A stale hit returns the old value at once while one background task refreshes it."""
    version = 0
    release = asyncio.Event()

    @cached(ttl=0.2, stale_ttl=30)
    async def config() -> int:
        nonlocal version
        version += 1
        if version > 1:
            await release.wait()  # the refresh cannot finish until the test says so
        return version

    assert await config() == 1
    await asyncio.sleep(0.3)  # now stale
    # the five calls complete while the refresh is still held: nobody waited for it
    stale = await asyncio.wait_for(asyncio.gather(*(config() for _ in range(5))), 10)
    assert stale == [1] * 5
    for _ in range(200):  # the background refresh starts...
        if version >= 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert version == 2  # ...once, not five times
    release.set()
    for _ in range(200):
        if await config() == 2:
            break
        await asyncio.sleep(0.01)
    assert await config() == 2 and version == 2  # refreshed once


async def test_stale_is_served_when_refresh_fails(service: CacheService) -> None:
    """If the background refresh raises, the stale value keeps being served."""
    fail = False

    @cached(ttl=0.2, stale_ttl=30)
    async def price() -> int:
        if fail:
            raise ConnectionError("upstream down")
        return 10

    assert await price() == 10
    fail = True
    await asyncio.sleep(0.3)
    assert await price() == 10
    await asyncio.sleep(0.05)
    assert await price() == 10


async def test_cache_aside_with_key_func_and_tags(service: CacheService) -> None:
    """cache_aside stores under key_func's key with the given tags."""
    calls = 0

    @cache_aside(
        key_func=lambda category_id, **kw: f"products:list:{category_id}",
        ttl=60,
        tags=["products", "catalog"],
    )
    async def get_products_by_category(category_id: str) -> list[str]:
        nonlocal calls
        calls += 1
        return [f"{category_id}-1"]

    assert await get_products_by_category("tools") == ["tools-1"]
    assert await get_products_by_category("tools") == ["tools-1"]
    assert calls == 1
    assert await service.get("products:list:tools") == ["tools-1"]
    members = await service._get_backend("redis").get_set_members("cache:tag:catalog")
    assert members == ["products:list:tools"]
    await service.invalidate_tags(["catalog"])
    await get_products_by_category("tools")
    assert calls == 2


async def test_templated_tags(service: CacheService) -> None:
    """Tags with {arg} placeholders are filled from the call's arguments."""

    @cached(ttl=60, tags=["product:{product_id}"])
    async def product(product_id: int, verbose: bool = False) -> int:
        return product_id

    await product(5)
    assert len(await service._get_backend("redis").get_set_members("cache:tag:product:5")) == 1


async def test_invalidate_cache_pattern(service: CacheService) -> None:
    """invalidate_cache removes matching keys after the function succeeds, not when it fails."""
    await service.set_many({"product:1": 1, "product:2": 2, "order:1": 3}, ttl=60)

    @invalidate_cache(pattern="product:*")
    async def update_product(product_id: str, data: dict, fail: bool = False) -> dict:
        if fail:
            raise ValueError("bad update")
        return {"status": "updated"}

    with pytest.raises(ValueError):
        await update_product("1", {}, fail=True)
    assert await service.get("product:1") == 1
    assert await update_product("1", {"name": "x"}) == {"status": "updated"}
    assert await service.get_many(["product:1", "product:2", "order:1"]) == {"order:1": 3}


async def test_invalidate_cache_keys_and_tags_templates(service: CacheService) -> None:
    """invalidate_cache fills {arg} placeholders in keys and tags."""
    await service.set("product:details:9", "d", ttl=60)
    await service.set("x", "tagged", ttl=60, tags=["product:9"])
    await service.set("y", "kept", ttl=60, tags=["product:8"])

    @invalidate_cache(keys=["product:details:{product_id}"], tags=["product:{product_id}"])
    async def touch(product_id: int) -> None:
        return None

    await touch(9)
    assert await service.get_many(["product:details:9", "x", "y"]) == {"y": "kept"}


class TenantOrders:
    """A per-tenant service: the tenant names the instance in cache keys."""

    calls: list[tuple[str, int]] = []

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    def __cache_key__(self) -> str:
        return self.tenant

    @cached(ttl=60)
    async def recent(self, limit: int = 2) -> list[str]:
        TenantOrders.calls.append((self.tenant, limit))
        return [f"{self.tenant}-order-{i}" for i in range(limit)]

    @memoize(ttl=60)
    def count(self) -> int:
        TenantOrders.calls.append((self.tenant, -1))
        return len(self.tenant)


async def test_method_results_are_per_instance(service: CacheService) -> None:
    """Attack: globex's recent orders never come from acme's cached entry (memory and Redis)."""
    TenantOrders.calls = []
    assert await TenantOrders("acme").recent() == ["acme-order-0", "acme-order-1"]
    assert await TenantOrders("globex").recent() == ["globex-order-0", "globex-order-1"]
    # equal __cache_key__ means the same entry; so does the same instance
    assert await TenantOrders("acme").recent() == ["acme-order-0", "acme-order-1"]
    assert TenantOrders.calls == [("acme", 2), ("globex", 2)]
    assert TenantOrders.recent.key_for(TenantOrders("acme")) != TenantOrders.recent.key_for(
        TenantOrders("globex")
    )
    assert await TenantOrders.recent.invalidate(TenantOrders("acme"))
    assert await TenantOrders("acme").recent() == ["acme-order-0", "acme-order-1"]
    assert TenantOrders.calls[-1] == ("acme", 2)


def test_memoize_method_results_are_per_instance() -> None:
    """Attack on memoize: two tenants' instances never share a memoized result."""
    TenantOrders.calls = []
    TenantOrders.count.cache_clear()
    assert TenantOrders("acme").count() == 4
    assert TenantOrders("globex").count() == 6
    assert TenantOrders("acme").count() == 4
    assert TenantOrders.calls == [("acme", -1), ("globex", -1)]


async def test_method_without_cache_key_is_refused(service: CacheService) -> None:
    """A method of an instance that cannot be identified raises instead of sharing entries."""
    calls = 0

    class Repo:
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant

        @cached(ttl=60)
        async def get(self, item_id: int) -> str:
            nonlocal calls
            calls += 1
            return f"{self.tenant}:{item_id}"

        @memoize
        def sync_get(self, item_id: int) -> str:
            nonlocal calls
            calls += 1
            return self.tenant

    with pytest.raises(CacheConfigurationException, match="__cache_key__") as info:
        await Repo("acme").get(1)
    assert info.value.status_code == 500
    with pytest.raises(CacheConfigurationException, match="__cache_key__"):
        Repo("acme").sync_get(1)
    with pytest.raises(CacheConfigurationException):
        Repo.get.key_for(Repo("acme"), 1)
    assert calls == 0


async def test_cache_key_may_be_an_attribute_or_property(service: CacheService) -> None:
    """__cache_key__ may be a plain attribute or a property; class name is part of the key."""

    class ByAttr:
        def __init__(self, tenant: str) -> None:
            self.__cache_key__ = tenant
            self.tenant = tenant

        @cached(ttl=60)
        async def who(self) -> str:
            return self.tenant

    class ByProperty:
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant

        @property
        def __cache_key__(self) -> tuple[str, str]:
            return ("tenant", self.tenant)

        @cached(ttl=60)
        async def who(self) -> str:
            return self.tenant

    class SubOrders(TenantOrders):
        pass

    assert [await ByAttr(t).who() for t in ("a", "b", "a")] == ["a", "b", "a"]
    assert [await ByProperty(t).who() for t in ("a", "b", "a")] == ["a", "b", "a"]
    # an inherited method keys on the instance's own class too
    assert TenantOrders.recent.key_for(SubOrders("acme")) != TenantOrders.recent.key_for(
        TenantOrders("acme")
    )


async def test_unhashable_cache_key_is_a_configuration_error(service: CacheService) -> None:
    """A __cache_key__ value the key encoder cannot hash is a CacheConfigurationException."""

    class Bad:
        def __cache_key__(self) -> object:
            return object()

        @cached(ttl=60)
        async def get(self) -> int:
            return 1

    with pytest.raises(CacheConfigurationException, match="__cache_key__ returned"):
        await Bad().get()


async def test_unhashable_argument_of_a_method_stays_a_key_error(service: CacheService) -> None:
    """With a good __cache_key__, an unhashable argument is still a CacheKeyException (422)."""
    with pytest.raises(CacheKeyException):
        await TenantOrders("acme").recent(object())  # type: ignore[arg-type]


async def test_dataclass_instances_are_keyed_by_their_fields(service: CacheService) -> None:
    """A dataclass (or pydantic) instance without __cache_key__ is keyed by its field values."""
    calls: list[str] = []

    @dataclasses.dataclass(frozen=True)
    class Scoped:
        tenant: str

        @cached(ttl=60)
        async def name(self) -> str:
            calls.append(self.tenant)
            return self.tenant

    assert [await Scoped(t).name() for t in ("a", "b", "a")] == ["a", "b", "a"]
    assert calls == ["a", "b"]


async def test_classmethods_key_on_the_class_and_staticmethods_on_arguments(
    service: CacheService,
) -> None:
    """A classmethod keys on its class's qualified name; subclasses get their own entries."""

    class Base:
        label = "base"

        @classmethod
        @cached(ttl=60)
        async def describe(cls, n: int) -> str:
            return f"{cls.label}:{n}"

        @staticmethod
        @cached(ttl=60)
        async def double(n: int) -> int:
            return 2 * n

    class Child(Base):
        label = "child"

    assert await Base.describe(1) == "base:1"
    assert await Child.describe(1) == "child:1"
    assert await Base().describe(1) == "base:1"
    assert await Base.double(2) == 4 and await Child().double(2) == 4


async def test_unhashable_argument_is_a_typed_error(service: CacheService) -> None:
    """An argument that cannot be hashed stably raises CacheKeyException (a TypeError)."""

    @cached(ttl=60)
    async def f(x: object) -> int:
        return 1

    with pytest.raises(CacheKeyException):
        await f(object())
    with pytest.raises(TypeError):
        await f(object())


def test_cached_refuses_sync_functions() -> None:
    """cached on a sync function fails at decoration time and points at memoize."""
    with pytest.raises(TypeError, match="memoize"):

        @cached(ttl=1)
        def sync() -> int:
            return 1


async def test_cache_failure_never_fails_the_call(service: CacheService) -> None:
    """A result the backend cannot store is still returned (logged, not raised) on Redis."""

    class Opaque:
        pass

    @cached(ttl=60)
    async def make() -> object:
        return Opaque()

    result = await make()
    assert isinstance(result, Opaque)


def test_memoize_sync_with_ttl() -> None:
    """memoize caches a sync function per arguments and forgets after ttl."""
    calls = 0

    @memoize(ttl=0.2)
    def calculate_complex_value(input_value: int) -> int:
        nonlocal calls
        calls += 1
        return input_value * 3

    assert calculate_complex_value(2) == 6
    assert calculate_complex_value(2) == 6
    assert calculate_complex_value(3) == 9
    assert calls == 2
    time.sleep(0.3)
    assert calculate_complex_value(2) == 6
    assert calls == 3
    assert calculate_complex_value.cache_info()["hits"] == 1


def test_memoize_is_bounded() -> None:
    """memoize keeps at most maxsize results, evicting the least recently used."""
    calls: list[int] = []

    @memoize(maxsize=2)
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1), f(2), f(1), f(3)  # 2 is least recently used, evicted
    f(1)
    f(2)
    assert calls == [1, 2, 3, 2]


async def test_memoize_async_runs_concurrent_calls_once() -> None:
    """Concurrent async calls with the same arguments share one execution."""
    calls = 0

    @memoize(ttl=60)
    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return x

    assert await asyncio.gather(*(fetch(1) for _ in range(50))) == [1] * 50
    assert calls == 1
    fetch.cache_clear()
    await fetch(1)
    assert calls == 2


@pytest.mark.parametrize("kind", implementations_of("cache_keys"))
async def test_cached_same_keys_with_every_key_implementation(
    service: CacheService, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """@cached gives the same key and behaviour with the native and the pure key hashing."""
    from crown_nexus import accel
    from crown_nexus.core.cache import decorators

    monkeypatch.setattr(decorators, "_make_key", accel.available("cache_keys")[kind].make_key)
    calls = 0

    async def lookup(item_id: int, *, lang: str = "en") -> str:
        nonlocal calls
        calls += 1
        return f"{item_id}-{lang}"

    fn = cached(ttl=60)(lookup)
    assert fn.key_for(5, lang="de") == generate_cache_key(lookup, (5,), {"lang": "de"}, prefix=None)
    assert await fn(5, lang="de") == "5-de"
    assert await fn(5, lang="de") == "5-de"
    assert calls == 1
    with pytest.raises(CacheKeyException):
        await fn(5, lang=object())
