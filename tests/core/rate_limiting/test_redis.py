"""Redis backend on real servers: Lua = pure arithmetic, EVALSHA/NOSCRIPT, expiry, processes,
outages (server killed, server frozen) and recovery."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crown_nexus import accel
from crown_nexus.core.rate_limiting import (
    RateLimitAlgorithm,
    RateLimiterUnavailableException,
    RateLimitingService,
    RateLimitRule,
)
from crown_nexus.core.rate_limiting.base import RateLimitBackendError
from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend, load_script
from crown_nexus.settings import Settings

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
async def rbackend(redis_url: str):  # type: ignore[no-untyped-def]
    """A Redis backend on the shared server with a private key prefix."""
    prefix = f"t{time.monotonic_ns()}:"
    be = RedisRateLimitBackend(redis_url, prefix=prefix, timeout=5.0)
    try:
        yield be
    finally:
        keys = [k async for k in be.client.scan_iter(match=prefix + "*")]
        if keys:
            await be.client.delete(*keys)
        await be.close()


def _pure_window(algo: RateLimitAlgorithm, limit: int, window: int, burst: int):  # type: ignore[no-untyped-def]
    mod = accel.available("rate_window")["pure"]
    if algo is RateLimitAlgorithm.TOKEN_BUCKET:
        return mod.GCRA(limit, window, burst=burst)
    if algo is RateLimitAlgorithm.SLIDING_LOG:
        return mod.SlidingLog(limit, window)
    return mod.SlidingWindowCounter(limit, window)


_LOOP = asyncio.new_event_loop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    algo=st.sampled_from(list(RateLimitAlgorithm)),
    limit=st.integers(1, 8),
    window=st.integers(10, 100),
    burst_extra=st.integers(0, 4),
    steps=st.lists(
        st.tuples(st.integers(0, 40_000_000), st.integers(1, 3)), min_size=1, max_size=25
    ),
)
def test_lua_scripts_match_the_pure_reference(
    redis_url: str, algo, limit, window, burst_extra, steps
) -> None:  # type: ignore[no-untyped-def]
    """With the clock pinned, every script returns exactly what crown_nexus._pure.rate_window does."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_url)
    burst = limit + (burst_extra if algo is RateLimitAlgorithm.TOKEN_BUCKET else 0)
    ref = _pure_window(algo, limit, window, burst)
    key = f"lua-eq:{time.monotonic_ns()}"
    script = client.register_script(load_script(algo))
    now_us = 1_700_000_000_000_000
    try:
        for delta, cost in steps:
            now_us += delta
            capacity = burst if algo is RateLimitAlgorithm.TOKEN_BUCKET else limit
            if cost > capacity:
                continue
            args = [limit, window * 1_000_000, cost]
            if algo is RateLimitAlgorithm.TOKEN_BUCKET:
                args.append(burst)
            args.append(now_us)
            allowed, count, reset_us = script(keys=[key], args=args)
            expected = ref.hit("k", now_us / 1e6, cost)
            assert (bool(allowed), int(count)) == expected[:2]
            assert int(reset_us) / 1e6 == pytest.approx(expected[2], abs=2e-6)
    finally:
        client.delete(key)
        client.close()


async def test_keys_expire_on_their_own(rbackend: RedisRateLimitBackend) -> None:
    """Every key written by a check carries a TTL no longer than needed."""
    for algo in RateLimitAlgorithm:
        rule = RateLimitRule(requests_per_window=5, window_seconds=30, algorithm=algo)
        for _ in range(3):  # later writes keep (or renew) the expiry
            await rbackend.hit("ttl", rule)
        pttl = await rbackend.client.pttl(rbackend.storage_key("ttl", rule))
        assert 0 < pttl <= 60_000


async def test_noscript_reloads_the_script(rbackend: RedisRateLimitBackend) -> None:
    """After SCRIPT FLUSH (e.g. a restarted server) the next check reloads and succeeds."""
    rule = RateLimitRule(requests_per_window=3, window_seconds=60, algorithm=RateLimitAlgorithm.SLIDING_LOG)
    assert (await rbackend.hit("ns", rule)).count == 1
    await rbackend.client.script_flush()
    assert (await rbackend.hit("ns", rule)).count == 2


async def test_one_round_trip_per_check(rbackend: RedisRateLimitBackend) -> None:
    """A check sends exactly one command (EVALSHA) once the script is loaded, counted by the server."""
    rule = RateLimitRule(requests_per_window=3, window_seconds=60)
    await rbackend.hit("rt", rule)

    async def calls() -> dict[str, int]:
        stats = await rbackend.client.info("commandstats")
        return {name: v["calls"] for name, v in stats.items()}

    before = await calls()
    result = await rbackend.hit("rt", rule)
    after = await calls()
    delta = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    assert result.allowed and result.count == 2
    assert delta["cmdstat_evalsha"] == 1
    # besides the script's own calls (TIME/GET/SET) only our INFO (and its connection's HELLO)
    assert set(delta) <= {"cmdstat_evalsha", "cmdstat_info", "cmdstat_hello",
                          "cmdstat_time", "cmdstat_get", "cmdstat_set"}


async def test_fast_path_survives_a_dropped_connection(rbackend: RedisRateLimitBackend) -> None:
    """A pooled connection killed by the server (CLIENT KILL) is replaced; the check still counts once."""
    rule = RateLimitRule(requests_per_window=10, window_seconds=60)
    assert (await rbackend.hit("drop", rule)).count == 1
    await rbackend.client.client_kill_filter(_type="normal", skipme=True)
    assert (await rbackend.hit("drop", rule)).count == 2
    assert (await rbackend.hit("drop", rule)).count == 3


async def test_key_bytes_are_utf8_on_the_fast_path(rbackend: RedisRateLimitBackend) -> None:
    """Non-ASCII client keys are sent with their UTF-8 byte length and stored under that key."""
    rule = RateLimitRule(requests_per_window=10, window_seconds=60)
    key = "usér:ключ:🔑"
    assert (await rbackend.hit(key, rule)).count == 1
    assert (await rbackend.hit(key, rule)).count == 2
    assert await rbackend.client.exists(rbackend.storage_key(key, rule))
    two = await rbackend.hit(key, rule, cost=2)
    assert two.count == 4


_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from crown_nexus.core.rate_limiting import RateLimitRule, RateLimitAlgorithm
    from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend

    async def main():
        url, prefix, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
        be = RedisRateLimitBackend(url, prefix=prefix, timeout=5.0)
        await be.ping()
        await asyncio.sleep(max(0.0, start_at - time.time()))  # both processes fire together
        admitted = {}
        for algo in RateLimitAlgorithm:
            rule = RateLimitRule(requests_per_window=60, window_seconds=3600, algorithm=algo)
            results = await asyncio.gather(*(be.hit("proc", rule) for _ in range(100)))
            admitted[algo.value] = sum(r.allowed for r in results)
        await be.close()
        print(json.dumps(admitted))

    asyncio.run(main())
    """
)


async def test_exact_across_two_processes(redis_url: str, redis_client) -> None:  # type: ignore[no-untyped-def]
    """Two processes, 100 concurrent checks each, limit 60: exactly 60 admitted in total
    (each algorithm)."""
    from tests.core.rate_limiting.conftest import wait_away_from_boundary

    await wait_away_from_boundary(3600, margin=10.0, redis_client=redis_client)
    prefix = f"procs{time.monotonic_ns()}:"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start_at = str(time.time() + 3.0)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER, redis_url, prefix, start_at,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        for _ in range(2)
    ]
    outs = [await p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()
    admitted = [json.loads(out) for out, _ in outs]
    for algo in RateLimitAlgorithm:
        assert admitted[0][algo.value] + admitted[1][algo.value] == 60, algo


def _service(url: str, **kw) -> RateLimitingService:  # type: ignore[no-untyped-def]
    backend = RedisRateLimitBackend(url, timeout=0.3)
    return RateLimitingService(backend, settings=Settings(), recheck_interval=0.05, **kw)


async def test_redis_killed_fails_open_then_recovers(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Server killed: checks go on (memory limits, no exception); restarted: back to Redis."""
    from crown_nexus.core.dependency_manager import get_service

    metrics = get_service("metrics_service")
    errors = metrics.get_counter_sum("rate_limiting_backend_errors_total", {"backend": "redis"})
    svc = _service(redis_server.url)
    rule = RateLimitRule(requests_per_window=3, window_seconds=60, algorithm=RateLimitAlgorithm.SLIDING_LOG)
    assert (await svc.check("k", rule)).count == 1
    redis_server.stop()
    during = [await svc.check("k", rule) for _ in range(4)]
    assert svc.degraded
    # one failed attempt; the next checks skip Redis until recheck_interval has passed
    assert metrics.get_counter_sum(
        "rate_limiting_backend_errors_total", {"backend": "redis"}
    ) == errors + 1
    assert [r.allowed for r in during] == [True, True, True, False]  # per-process limits
    redis_server.start()
    await asyncio.sleep(0.1)
    after = await svc.check("k", rule)
    assert not svc.degraded
    assert after.allowed and after.count == 1  # a fresh server: the count lives in Redis again
    assert await svc.backend.client.exists(svc.backend.storage_key("k", rule))
    await svc.close()


async def test_redis_killed_fail_closed_raises_503(redis_server) -> None:  # type: ignore[no-untyped-def]
    """With fail_open=False an outage raises RateLimiterUnavailableException (503)."""
    svc = _service(redis_server.url, fail_open=False)
    rule = RateLimitRule(requests_per_window=3, window_seconds=60)
    assert (await svc.check("k", rule)).allowed
    redis_server.stop()
    with pytest.raises(RateLimiterUnavailableException) as info:
        await svc.check("k", rule)
    assert info.value.status_code == 503
    redis_server.start()
    await asyncio.sleep(0.1)
    assert (await svc.check("k", rule)).allowed
    await svc.close()


async def test_frozen_server_is_bounded_by_the_timeout(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A server that stops answering (SIGSTOP) fails the check within the timeout."""
    backend = RedisRateLimitBackend(redis_server.url, timeout=0.3)
    rule = RateLimitRule(requests_per_window=3, window_seconds=60)
    await backend.hit("f", rule)
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(RateLimitBackendError):
            await backend.hit("f", rule)
        assert time.monotonic() - started < 1.5
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    await backend.close()


def test_backend_needs_url_or_client() -> None:
    """Constructing without a url or client is a clear ValueError."""
    with pytest.raises(ValueError, match="url or a client"):
        RedisRateLimitBackend()


def test_client_reused_on_another_event_loop_never_raises(redis_url: str) -> None:
    """A service first used on one event loop and then on another still answers (no exception)."""
    svc = RateLimitingService(RedisRateLimitBackend(redis_url, timeout=2.0), settings=Settings())
    rule = RateLimitRule(requests_per_window=5, window_seconds=60, name=f"loops{time.monotonic_ns()}")
    first = asyncio.run(svc.check("loop", rule))
    second = asyncio.run(svc.check("loop", rule))
    assert first.allowed and second.allowed


async def test_more_concurrent_checks_than_connections(redis_url: str) -> None:
    """With 2 connection slots, 80 concurrent checks all complete, exactly the limit admitted."""
    backend = RedisRateLimitBackend(redis_url, max_connections=2, timeout=5.0,
                                    prefix=f"slots{time.monotonic_ns()}:")
    rule = RateLimitRule(requests_per_window=30, window_seconds=3600,
                         algorithm=RateLimitAlgorithm.SLIDING_LOG)
    results = await asyncio.gather(*(backend.hit("s", rule) for _ in range(80)))
    assert sum(r.allowed for r in results) == 30
    assert backend._slots.busy == 0 and not backend._slots.waiters
    await backend.close()


def test_max_connections_must_be_positive() -> None:
    """max_connections below 1 is a clear ValueError."""
    with pytest.raises(ValueError, match="max_connections"):
        RedisRateLimitBackend("redis://127.0.0.1:1/0", max_connections=0)


async def test_outside_cancellation_is_not_a_timeout(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A check cancelled from outside (client gone) raises CancelledError and frees its slot."""
    backend = RedisRateLimitBackend(redis_server.url, timeout=5.0, max_connections=1)
    rule = RateLimitRule(requests_per_window=3, window_seconds=60)
    await backend.hit("c", rule)
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        task = asyncio.create_task(backend.hit("c", rule))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert backend._slots.busy == 0 and not backend._deadlines.inflight
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert (await backend.hit("c", rule)).allowed
    await backend.close()
