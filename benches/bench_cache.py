"""Cache: crown_nexus against cashews and aiocache on the same stores, and bare redis-py.

Groups (compare rows within a group; each row times ``BATCH`` sequential awaits per round):

* ``cache-get-memory`` / ``cache-set-memory`` -- ``CacheService`` on the memory backend (public
  API, metrics on) and the bare backend; ``cashews`` (``mem://``) and aiocache
  ``SimpleMemoryCache``.
* ``cache-get-redis`` / ``cache-set-redis`` -- the same value on one redis-server started here:
  ``CacheService`` (Redis backend behind its memory fallback, msgpack decode included),
  ``cashews`` (``redis://``), aiocache ``RedisCache`` and two bare redis-py asyncio ``GET``/
  ``SET`` rows: the default client (``socket_timeout`` 5 s, as most apps create it) and one with
  ``socket_timeout=None`` (the floor: no timeout machinery at all).
* ``cache-cached-hit`` -- a ``@cached`` hit on the memory backend with each available key
  implementation (native/pure), the undecorated function, and the peers' decorators
  (cashews ``@cache``, aiocache ``@cached``).

Every row records ``extra_info["correct"]`` (did it return the stored value) and
``accel.implementations()``. Run:
``python -m pytest benches/bench_cache.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from tests._servers import RedisServer

from crown_nexus import accel
from crown_nexus.core.cache import CacheService, MemoryCacheBackend
from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.settings import Settings

BATCH = 200
ROUNDS = 30
VALUE = {"id": 123, "name": "widget", "price": 9.99, "tags": ["a", "b"], "stock": True}
KEY = "bench:product:123"


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every row of this module."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private redis-server for the Redis rows (every client talks to the same one)."""
    server = RedisServer()
    try:
        server.start()
    except FileNotFoundError as exc:
        pytest.skip(f"no redis-server: {exc}")
    yield server.url
    server.stop()


def _info(benchmark: Any, row: str, correct: bool, batch: int = BATCH) -> None:
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["row"] = row
    benchmark.extra_info["ops_per_round"] = batch
    benchmark.extra_info["correct"] = correct
    assert correct, f"{row} did not return the stored value"


def _run(
    benchmark: Any,
    loop: asyncio.AbstractEventLoop,
    op: Callable[[], Awaitable[Any]],
    batch: int = BATCH,
) -> None:
    async def go() -> None:
        for _ in range(batch):
            await op()

    benchmark.pedantic(
        lambda: loop.run_until_complete(go()), rounds=ROUNDS, warmup_rounds=3, iterations=1
    )


# ------------------------------------------------------------------------------- clients
def _crown(loop: asyncio.AbstractEventLoop, backend: str, redis_url: str | None) -> CacheService:
    svc = CacheService(Settings(), default_backend=backend, redis_url=redis_url)
    loop.run_until_complete(svc.initialize())
    return svc


def _cashews(url: str) -> Any:
    from cashews import Cache

    cache = Cache()
    cache.setup(url)
    return cache


def _aiocache(kind: str, redis_url: str | None = None) -> Any:
    if kind == "memory":
        from aiocache import SimpleMemoryCache

        return SimpleMemoryCache()
    from urllib.parse import urlparse

    from aiocache import RedisCache

    u = urlparse(redis_url)
    return RedisCache(endpoint=u.hostname, port=u.port, db=0)


def _peer_ops(
    loop: asyncio.AbstractEventLoop, row: str, redis_url: str | None
) -> tuple[Any, Any, Any]:
    """(get, set, close) coroutine factories of one peer row."""
    if row.startswith("cashews"):
        cache = _cashews("mem://" if redis_url is None else redis_url)
        return (lambda: cache.get(KEY), lambda: cache.set(KEY, VALUE, expire=60), cache.close)
    if row.startswith("aiocache"):
        cache = _aiocache("memory" if redis_url is None else "redis", redis_url)
        return (lambda: cache.get(KEY), lambda: cache.set(KEY, VALUE, ttl=60), cache.close)
    raise AssertionError(row)


# ------------------------------------------------------------------------------- memory
MEMORY_ROWS = ["crown_nexus-service", "crown_nexus-backend", "cashews-mem", "aiocache-memory"]


def _memory_ops(loop: asyncio.AbstractEventLoop, row: str) -> tuple[Any, Any, Any]:
    if row == "crown_nexus-service":
        svc = _crown(loop, "memory", None)
        return (lambda: svc.get(KEY), lambda: svc.set(KEY, VALUE, ttl=60), svc.shutdown)
    if row == "crown_nexus-backend":
        mem = MemoryCacheBackend()
        return (lambda: mem.get(KEY), lambda: mem.set(KEY, VALUE, ttl=60), mem.close)
    return _peer_ops(loop, row, None)


@pytest.mark.benchmark(group="cache-get-memory")
@pytest.mark.parametrize("row", MEMORY_ROWS)
def test_get_memory(benchmark: Any, loop: asyncio.AbstractEventLoop, row: str) -> None:
    """One hit through each in-process cache."""
    get, set_, close = _memory_ops(loop, row)
    loop.run_until_complete(set_())
    _info(benchmark, row, loop.run_until_complete(get()) == VALUE)
    _run(benchmark, loop, get)
    loop.run_until_complete(close())


@pytest.mark.benchmark(group="cache-set-memory")
@pytest.mark.parametrize("row", MEMORY_ROWS)
def test_set_memory(benchmark: Any, loop: asyncio.AbstractEventLoop, row: str) -> None:
    """One write (60 s TTL) through each in-process cache."""
    get, set_, close = _memory_ops(loop, row)
    loop.run_until_complete(set_())
    _info(benchmark, row, loop.run_until_complete(get()) == VALUE)
    _run(benchmark, loop, set_)
    loop.run_until_complete(close())


# ------------------------------------------------------------------------------- Redis
REDIS_ROWS = [
    "crown_nexus-service",
    "cashews-redis",
    "aiocache-redis",
    "redis-py-default",
    "redis-py-no-socket-timeout",
]
REDIS_BATCH = 50


def _redis_ops(
    loop: asyncio.AbstractEventLoop, row: str, url: str, key: str = KEY
) -> tuple[Any, Any, Any, Any]:
    """(get, set, close, decode) of one Redis row; ``decode`` turns its get result into VALUE."""
    if row == "crown_nexus-service":
        svc = _crown(loop, "redis", url)
        return (lambda: svc.get(key), lambda: svc.set(key, VALUE, ttl=60), svc.shutdown, None)
    if row.startswith("redis-py"):
        import orjson
        import redis.asyncio as aioredis

        if row == "redis-py-default":
            client = aioredis.Redis.from_url(url)
        else:
            client = aioredis.Redis.from_url(url, socket_timeout=None)
        payload = orjson.dumps(VALUE)
        return (
            lambda: client.get(key),
            lambda: client.set(key, payload, ex=60),
            client.aclose,
            orjson.loads,
        )
    get, set_, close = _peer_ops(loop, row, url)
    return get, set_, close, None


@pytest.mark.benchmark(group="cache-get-redis")
@pytest.mark.parametrize("row", REDIS_ROWS)
def test_get_redis(
    benchmark: Any, loop: asyncio.AbstractEventLoop, redis_url: str, row: str
) -> None:
    """One GET of the same small dict from the same redis-server (decoding included for caches)."""
    get, set_, close, decode = _redis_ops(loop, row, redis_url)
    loop.run_until_complete(set_())
    got = loop.run_until_complete(get())
    _info(benchmark, row, (decode(got) if decode else got) == VALUE, REDIS_BATCH)
    _run(benchmark, loop, get, REDIS_BATCH)
    loop.run_until_complete(close())


@pytest.mark.benchmark(group="cache-set-redis")
@pytest.mark.parametrize("row", REDIS_ROWS)
def test_set_redis(
    benchmark: Any, loop: asyncio.AbstractEventLoop, redis_url: str, row: str
) -> None:
    """One SET (60 s TTL) of the same small dict on the same redis-server (encoding included)."""
    get, set_, close, decode = _redis_ops(loop, row, redis_url)
    loop.run_until_complete(set_())
    got = loop.run_until_complete(get())
    _info(benchmark, row, (decode(got) if decode else got) == VALUE, REDIS_BATCH)
    _run(benchmark, loop, set_, REDIS_BATCH)
    loop.run_until_complete(close())


# ------------------------------------------------------------------------------- @cached hit
CACHED_ROWS = [f"crown_nexus-cached-{k}" for k in sorted(accel.available("cache_keys"))] + [
    "undecorated-call",
    "cashews-cache",
    "aiocache-cached",
]


@pytest.mark.benchmark(group="cache-cached-hit")
@pytest.mark.parametrize("row", CACHED_ROWS)
def test_cached_hit(
    benchmark: Any, loop: asyncio.AbstractEventLoop, row: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decorated function's cache hit (memory backend) against calling the function itself."""

    async def product(product_id: int, lang: str = "en") -> dict[str, Any]:
        return {**VALUE, "id": product_id, "lang": lang}

    close: Any = None
    if row.startswith("crown_nexus-cached-"):
        from crown_nexus.core.cache import cached, decorators

        kind = row.rsplit("-", 1)[1]
        monkeypatch.setattr(decorators, "_make_key", accel.available("cache_keys")[kind].make_key)
        svc = CacheService(Settings(), default_backend="memory")
        registry = get_registry()
        registry.set_override("cache_service", svc)
        loop.run_until_complete(svc.initialize())
        fn = cached(ttl=60)(product)
        close = svc.shutdown
    elif row == "undecorated-call":
        fn = product
    elif row == "cashews-cache":
        from cashews import Cache

        cache = Cache()
        cache.setup("mem://")
        fn = cache(ttl=60)(product)
        close = cache.close
    else:
        from aiocache import cached as aio_cached

        fn = aio_cached(ttl=60)(product)
    try:
        expected = {**VALUE, "id": 7, "lang": "de"}
        loop.run_until_complete(fn(7, lang="de"))
        _info(benchmark, row, loop.run_until_complete(fn(7, lang="de")) == expected)
        _run(benchmark, loop, lambda: fn(7, lang="de"))
    finally:
        if close is not None:
            loop.run_until_complete(close())
        get_registry().clear_override("cache_service")


# ------------------------------------------------------------------------------- interleaved ratio
@pytest.mark.benchmark(group="cache-get-redis-interleaved")
def test_get_redis_interleaved_ratio(
    benchmark: Any, loop: asyncio.AbstractEventLoop, redis_url: str
) -> None:
    """CacheService.get vs bare redis-py GET, alternating batches in one run (robust to load drift).

    Each round runs one batch of every row back to back; ``extra_info`` holds each row's best and
    median per-operation time and the ratios of the service to both bare clients.
    """
    import statistics
    import time

    rows = {
        name: _redis_ops(loop, name, redis_url, key=f"{KEY}:{name}")
        for name in ("crown_nexus-service", "redis-py-default", "redis-py-no-socket-timeout")
    }
    for get, set_, _close, _decode in rows.values():
        loop.run_until_complete(set_())
    times: dict[str, list[float]] = {name: [] for name in rows}

    async def one_round() -> None:
        for name, (get, _set, _close, _decode) in rows.items():
            t0 = time.perf_counter()
            for _ in range(REDIS_BATCH):
                await get()
            times[name].append((time.perf_counter() - t0) / REDIS_BATCH * 1e6)

    benchmark.pedantic(
        lambda: loop.run_until_complete(one_round()), rounds=ROUNDS, warmup_rounds=3, iterations=1
    )
    best = {name: min(v) for name, v in times.items()}
    median = {name: statistics.median(v) for name, v in times.items()}
    svc = "crown_nexus-service"
    benchmark.extra_info["best_us"] = best
    benchmark.extra_info["median_us"] = median
    benchmark.extra_info["ratio_vs_default_best"] = best[svc] / best["redis-py-default"]
    benchmark.extra_info["ratio_vs_default_median"] = median[svc] / median["redis-py-default"]
    benchmark.extra_info["ratio_vs_no_timeout_best"] = (
        best[svc] / best["redis-py-no-socket-timeout"]
    )
    benchmark.extra_info["ratio_vs_no_timeout_median"] = (
        median[svc] / median["redis-py-no-socket-timeout"]
    )
    got = loop.run_until_complete(rows[svc][0]())
    _info(benchmark, "interleaved", got == VALUE, REDIS_BATCH)
    for _get, _set, close, _decode in rows.values():
        loop.run_until_complete(close())
