"""Rate limiting: crown-nexus vs the ``limits`` library, in memory and on one real Redis server.

Groups (compare rows within a group; every row first checks it admits exactly the limit):

* ``rate-limit-redis`` -- one allowed check through Redis: ``RateLimitingService.check`` (the
  public API, with metrics) and ``RedisRateLimitBackend.hit`` for each algorithm, ``limits``'
  ``RedisStorage`` (redis-py) with ``MovingWindowRateLimiter`` and
  ``SlidingWindowCounterRateLimiter``, and a bare redis-py asyncio ``GET`` (default client) on
  the same server. Target: the check is one round trip and <= 1.0x the bare ``GET``.
* ``rate-limit-memory`` -- one allowed check through the async service on the in-memory backend
  for each ``rate_window`` implementation, vs ``limits.aio`` memory storage and ``limits``'
  synchronous moving window ``hit``.
* ``rate-window`` -- one allowed hit on the window object itself (cython, pure) vs ``limits``'
  synchronous memory strategies. Target: compiled >= 20x ``limits``' moving window.
* ``rate-limit-guide-call`` -- the guide §8 ``await check_rate_limit(key, max_requests,
  window_seconds)`` on the default memory service (as imported, and with the other
  ``rate_window`` twin) vs ``limits``' synchronous moving window ``hit``. Target: >= 5x.

Async rows time a batch of ``BATCH`` sequential awaits per round (one event-loop entry per
batch), so the per-check time is the row's time / ``BATCH``. The Redis server is started here
(``tests._servers.RedisServer``). Run: ``pytest benches/bench_rate_limit.py --benchmark-enable
--benchmark-group-by=group``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import limits
import pytest
from limits.aio.storage import MemoryStorage as AioMemoryStorage
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AioMoving
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AioSliding
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from tests._servers import RedisServer

from crown_nexus import accel
from crown_nexus.core.rate_limiting import (
    MemoryRateLimitBackend,
    RateLimitAlgorithm,
    RateLimitingService,
    RateLimitRule,
)
from crown_nexus.settings import Settings

BATCH = 200
ROUNDS = 40
KEYS = [f"client-{i}" for i in range(1000)]
LIMIT = 1000
WINDOW = 60
#: the guide-call group: 2,000 sequential awaits per round, so entering the event loop once per
#: round (~60 µs with ``run_until_complete``, which a synchronous peer never pays) is ~0.03 µs per
#: call instead of ~0.3 µs at ``BATCH``; 20,000 keys keep every key's history as short as at
#: ``BATCH`` (``limits``' moving window inserts at the front of a per-key list)
GUIDE_BATCH = 2000
GUIDE_KEYS = [f"guide-{i}" for i in range(20_000)]
IMPLS = accel.available("rate_window")


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every async row of this module."""
    lp = asyncio.new_event_loop()
    yield lp
    pending = asyncio.all_tasks(lp)  # e.g. limits.aio's memory-expiry task
    for task in pending:
        task.cancel()
    if pending:
        lp.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    lp.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private redis-server for the Redis rows."""
    server = RedisServer()
    try:
        server.start()
    except FileNotFoundError as exc:
        pytest.skip(f"no redis-server: {exc}")
    yield server.url
    server.stop()


def _info(benchmark: Any, row: str, correct: bool) -> None:
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["row"] = row
    benchmark.extra_info["ops_per_round"] = BATCH
    benchmark.extra_info["correct"] = correct
    assert correct, f"{row} did not admit exactly the limit"


def _run_async(
    benchmark: Any,
    loop: asyncio.AbstractEventLoop,
    op: Callable[[str], Awaitable[Any]],
    baseline: Callable[[str], Awaitable[Any]] | None = None,
    baseline_name: str = "",
) -> None:
    """Time ``BATCH`` awaits of ``op`` per round. With a ``baseline``, the same batch of it runs
    before each round (untimed) and ``extra_info`` holds the median paired ratio op / baseline
    -- robust on a loaded machine, where rows measured minutes apart are not comparable."""
    counter = iter(range(10**9))
    base_times: list[float] = []
    op_times: list[float] = []

    async def batch(fn: Callable[[str], Awaitable[Any]]) -> None:
        for _ in range(BATCH):
            await fn(KEYS[next(counter) % 1000])

    def setup() -> None:
        started = time.perf_counter()
        loop.run_until_complete(batch(baseline))
        base_times.append(time.perf_counter() - started)

    def target() -> None:
        started = time.perf_counter()
        loop.run_until_complete(batch(op))
        op_times.append(time.perf_counter() - started)

    if baseline is None:
        benchmark.pedantic(target, rounds=ROUNDS, warmup_rounds=3, iterations=1)
        return
    benchmark.pedantic(target, setup=setup, rounds=ROUNDS, warmup_rounds=3, iterations=1)
    ratios = sorted(o / b for o, b in zip(op_times, base_times))
    benchmark.extra_info[f"ratio_vs_{baseline_name}_median"] = round(ratios[len(ratios) // 2], 3)
    benchmark.extra_info[f"ratio_vs_{baseline_name}_best"] = round(min(op_times) / min(base_times), 3)


def _exact_async(loop: asyncio.AbstractEventLoop, op: Callable[[str], Awaitable[bool]], limit: int) -> bool:
    """True when ``limit`` + 3 hits on a fresh key admit exactly ``limit``."""
    key = f"exact-{time.monotonic_ns()}"

    async def go() -> int:
        return sum([bool(await op(key)) for _ in range(limit + 3)])

    return loop.run_until_complete(go()) == limit


# ---------------------------------------------------------------------------- Redis
REDIS_ROWS = [
    "crown_nexus-service-sliding_window",
    "crown_nexus-service-token_bucket",
    "crown_nexus-service-sliding_log",
    "crown_nexus-backend-sliding_window",
    "limits-redispy-moving_window",
    "limits-redispy-sliding_window_counter",
    "redis-py-GET",
]


@pytest.mark.parametrize("row", REDIS_ROWS)
def test_redis_check(benchmark: Any, loop: asyncio.AbstractEventLoop, redis_url: str, row: str) -> None:
    """One allowed check through Redis (or a bare GET) on the same server."""
    benchmark.group = "rate-limit-redis"
    import redis.asyncio as aioredis

    from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend

    cleanup: list[Callable[[], Awaitable[Any]]] = []
    get_client = aioredis.Redis.from_url(redis_url)  # default client: the bare GET baseline
    cleanup.append(get_client.aclose)
    loop.run_until_complete(get_client.set("bench-get", "v"))
    bare_get = lambda key: get_client.get("bench-get")  # noqa: E731
    if row.startswith("crown_nexus"):
        algo = RateLimitAlgorithm(row.rsplit("-", 1)[1])
        rule = RateLimitRule(requests_per_window=LIMIT, window_seconds=WINDOW, algorithm=algo)
        small = RateLimitRule(requests_per_window=5, window_seconds=WINDOW, algorithm=algo)
        backend = RedisRateLimitBackend(redis_url, prefix=f"bench{time.monotonic_ns()}:")
        cleanup.append(backend.close)
        if "-service-" in row:
            service = RateLimitingService(backend, settings=Settings())
            op = lambda key: service.check(key, rule)  # noqa: E731
            probe = lambda key: _allowed(service.check(key, small))  # noqa: E731
        else:
            op = lambda key: backend.hit(key, rule)  # noqa: E731
            probe = lambda key: _allowed(backend.hit(key, small))  # noqa: E731
        correct = _exact_async(loop, probe, 5)
    elif row.startswith("limits"):
        storage = RedisStorage(redis_url, implementation="redispy", key_prefix=f"L{time.monotonic_ns()}")
        strategy = AioMoving(storage) if "moving" in row else AioSliding(storage)
        item = limits.parse(f"{LIMIT}/minute")
        small_item = limits.parse("5/minute")
        op = lambda key: strategy.hit(item, key)  # noqa: E731
        correct = _exact_async(loop, lambda key: strategy.hit(small_item, key), 5)
    else:
        client = aioredis.Redis.from_url(redis_url)
        cleanup.append(client.aclose)
        op = lambda key: client.get("bench-get")  # noqa: E731
        correct = loop.run_until_complete(client.get("bench-get")) == b"v"
    _info(benchmark, row, correct)
    _run_async(benchmark, loop, op, bare_get, "redis_get")
    for close in cleanup:
        loop.run_until_complete(close())


async def _allowed(coro: Awaitable[Any]) -> bool:
    return bool((await coro).allowed)


# ---------------------------------------------------------------------------- memory, async
MEMORY_ROWS = [f"crown_nexus-service-{kind}" for kind in sorted(IMPLS)] + [
    "limits-aio-moving_window",
    "limits-aio-sliding_window_counter",
    "limits-sync-moving_window",
]


@pytest.mark.parametrize("row", MEMORY_ROWS)
def test_memory_check(benchmark: Any, loop: asyncio.AbstractEventLoop, row: str) -> None:
    """One allowed check through the async API on in-process storage."""
    benchmark.group = "rate-limit-memory"
    if row.startswith("crown_nexus"):
        impl = IMPLS[row.rsplit("-", 1)[1]]
        service = RateLimitingService(MemoryRateLimitBackend(impl=impl), settings=Settings())
        rule = RateLimitRule(requests_per_window=LIMIT, window_seconds=WINDOW)
        small = RateLimitRule(requests_per_window=5, window_seconds=WINDOW)
        op = lambda key: service.check(key, rule)  # noqa: E731
        correct = _exact_async(loop, lambda key: _allowed(service.check(key, small)), 5)
    elif row == "limits-sync-moving_window":
        # the synchronous peer (no event loop at all): the service's ratio target
        sync = MovingWindowRateLimiter(MemoryStorage())
        sync_item = limits.parse(f"{LIMIT}/minute")
        correct = sum(sync.hit(limits.parse("5/minute"), "k") for _ in range(8)) == 5
        _info(benchmark, row, correct)
        counter = iter(range(10**9))

        def batch() -> None:
            for _ in range(BATCH):
                sync.hit(sync_item, KEYS[next(counter) % 1000])

        benchmark.pedantic(batch, rounds=ROUNDS, warmup_rounds=3, iterations=1)
        return
    else:
        storage = AioMemoryStorage()
        strategy = AioMoving(storage) if "moving" in row else AioSliding(storage)
        item = limits.parse(f"{LIMIT}/minute")
        op = lambda key: strategy.hit(item, key)  # noqa: E731
        correct = _exact_async(loop, lambda key: strategy.hit(limits.parse("5/minute"), key), 5)
    _info(benchmark, row, correct)
    # no paired baseline here: limits.aio's memory storage expires entries in a background
    # task, whose work would land in whichever batch happens to run it
    _run_async(benchmark, loop, op)


# ---------------------------------------------------------------------------- window, sync
WINDOW_ROWS = [f"rate_window-{kind}" for kind in sorted(IMPLS)] + [
    "limits-moving_window",
    "limits-sliding_window_counter",
]


#: per second per key: every timed hit is allowed, and limits' moving-window log stays as short as
#: its own rate makes it (as in benches/bench_rate_window.py)
WINDOW_LIMIT = 10_000


@pytest.mark.parametrize("row", WINDOW_ROWS)
def test_window_hit(benchmark: Any, row: str) -> None:
    """One allowed hit on an in-memory window (the compiled hot path vs limits' strategies).

    A round is one hit for each of the 1 000 keys in turn, the clock read per hit (ours:
    ``time.monotonic()``; ``limits`` reads its own), so the harness's per-call cost stays out
    of the comparison; per-hit time = the row's time / 1 000.
    """
    benchmark.group = "rate-window"
    keys = KEYS
    if row.startswith("rate_window"):
        impl = IMPLS[row.split("-", 1)[1]]
        window = impl.SlidingWindowCounter(WINDOW_LIMIT, 1)
        small = impl.SlidingWindowCounter(5, WINDOW)
        clock = time.monotonic
        correct = sum(small.hit("k", clock())[0] for _ in range(8)) == 5
        whit = window.hit

        def op() -> int:
            allowed = 0
            for key in keys:
                allowed += whit(key, clock())[0]
            return allowed
    else:
        storage = MemoryStorage()
        strategy = (MovingWindowRateLimiter if "moving" in row else SlidingWindowCounterRateLimiter)(storage)
        item = limits.parse(f"{WINDOW_LIMIT}/second")
        small_item = limits.parse("5/minute")
        correct = sum(strategy.hit(small_item, "k") for _ in range(8)) == 5
        shit = strategy.hit

        def op() -> int:
            allowed = 0
            for key in keys:
                allowed += shit(item, key)
            return allowed
    _info(benchmark, row, correct)
    benchmark.extra_info["ops_per_round"] = len(keys)
    assert benchmark(op) == len(keys)


# ---------------------------------------------------------------------------- the guide's call
GUIDE_ROWS = [
    "crown_nexus-check_rate_limit",
    *[f"crown_nexus-check_rate_limit-{kind}" for kind in sorted(IMPLS) if kind != accel.implementations()["rate_window"]],
    "limits-sync-moving_window",
    "floor-async-def-constant",
]

_ANSWER = (False, 1, 60)


async def _constant(key: str, max_requests: int, window_seconds: int) -> tuple[bool, int, int]:
    """The floor of any ``async def`` check: no work, a constant answer."""
    return _ANSWER


@contextmanager
def _check_rate_limit_on(kind: str) -> Iterator[None]:
    """``check_rate_limit`` with rate_window implementation ``kind`` throughout: its fast path
    (``CheckRateLimit``) and a registered memory service whose windows and checkers are that
    implementation's (``CROWN_NEXUS_IMPL`` is read at import, so the other twin is built here)."""
    from crown_nexus.core.dependency_manager import get_registry, override_service
    from crown_nexus.core.rate_limiting import utils

    impl = IMPLS[kind]
    service = RateLimitingService(MemoryRateLimitBackend(impl=impl), settings=Settings())
    chosen = utils._fast
    spec = get_registry().direct_lookup("rate_limiting_service")
    utils._fast = impl.CheckRateLimit(utils._service, utils._RULES, utils._SLIDING_WINDOW, spec).fast
    try:
        with override_service("rate_limiting_service", service):
            yield
    finally:
        utils._fast = chosen


@pytest.mark.parametrize("row", GUIDE_ROWS)
def test_guide_call(benchmark: Any, loop: asyncio.AbstractEventLoop, row: str) -> None:
    """The guide §8 call exactly as written, on the default (memory) service, vs ``limits``.

    ``is_limited, count, reset = await check_rate_limit(key, max_requests, window_seconds)``:
    a round is ``GUIDE_BATCH`` sequential awaits in one coroutine. The headline row is the public call
    as imported (the implementation ``accel`` chose); ``-pure`` (or ``-cython`` under
    ``CROWN_NEXUS_IMPL=pure``) is the same call with the other ``rate_window`` twin throughout.
    The ``limits`` row is ``MovingWindowRateLimiter.hit`` on its ``MemoryStorage`` (synchronous,
    no event loop). ``floor`` awaits an ``async def`` returning a constant tuple the same way:
    what the coroutine and this loop cost before any checking. Our rows (and the floor) run a
    batch of the ``limits`` row before each timed round and store the median paired ratio
    ``limits / ours`` (issue 11's target: >= 5).
    """
    benchmark.group = "rate-limit-guide-call"
    sync = MovingWindowRateLimiter(MemoryStorage())
    sync_item = limits.parse(f"{LIMIT}/minute")
    counter = iter(range(10**9))

    def peer_batch() -> None:
        for _ in range(GUIDE_BATCH):
            sync.hit(sync_item, GUIDE_KEYS[next(counter) % len(GUIDE_KEYS)])

    if row.startswith("limits"):
        correct = sum(sync.hit(limits.parse("5/minute"), "k") for _ in range(8)) == 5
        _info(benchmark, row, correct)
        benchmark.pedantic(peer_batch, rounds=ROUNDS, warmup_rounds=3, iterations=1)
        return

    from crown_nexus.core.rate_limiting import check_rate_limit

    call: Callable[[str, int, int], Awaitable[tuple[bool, int, int]]] = check_rate_limit
    if row.startswith("floor"):
        call = _constant  # the same loop around no check at all
        kind = "none"
        scope: Any = nullcontext()
    else:
        kind = row.rsplit("-", 1)[1] if row.count("-") > 1 else accel.implementations()["rate_window"]
        scope = _check_rate_limit_on(kind) if row.count("-") > 1 else nullcontext()

    async def exact() -> bool:
        if row.startswith("floor"):
            return await call("k", 5, WINDOW) == _ANSWER
        key = f"guide-exact-{time.monotonic_ns()}"
        answers = [await call(key, 5, WINDOW) for _ in range(8)]
        return [a[0] for a in answers] == [False] * 5 + [True] * 3 and answers[4][1] == 5

    async def batch() -> int:
        limited = 0
        for _ in range(GUIDE_BATCH):
            is_limited, count, reset = await call(GUIDE_KEYS[next(counter) % len(GUIDE_KEYS)], LIMIT, WINDOW)
            limited += is_limited
        return limited

    peer_times: list[float] = []
    our_times: list[float] = []

    def setup() -> None:
        started = time.perf_counter()
        peer_batch()
        peer_times.append(time.perf_counter() - started)

    def target() -> None:
        started = time.perf_counter()
        limited = loop.run_until_complete(batch())
        our_times.append(time.perf_counter() - started)
        assert limited == 0

    with scope:
        _info(benchmark, row, loop.run_until_complete(exact()))
        benchmark.extra_info["rate_window"] = kind
        benchmark.pedantic(target, setup=setup, rounds=ROUNDS, warmup_rounds=3, iterations=1)
    ratios = sorted(p / o for p, o in zip(peer_times, our_times))
    benchmark.extra_info["limits_over_ours_median"] = round(ratios[len(ratios) // 2], 2)
