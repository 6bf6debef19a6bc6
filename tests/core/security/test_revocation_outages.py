"""What counts as a Redis outage for the revocation blacklist: a slow reply is not, a dead or
stalled Redis is, and one outage is announced once (stale connections, flaps)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import redis.asyncio as aioredis

from crown_nexus.core.security._redis_blacklist import (
    SLOW_REPLIES_FOR_OUTAGE,
    RedisTokenBlacklist,
)


async def _eventually(predicate: Any, seconds: float = 10.0) -> None:
    """Poll ``predicate()`` until true (a safety bound, not a speed claim)."""
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still false after {seconds} s")


def _blacklist(url: str) -> RedisTokenBlacklist:
    return RedisTokenBlacklist(url, prefix="outage-test:", timeout=0.1, retry_interval=0.2)


async def test_one_slow_reply_is_not_an_outage(redis_server: Any) -> None:
    """Redis stalled for one call (SIGSTOP 0.3 s): that call answers from the replica, Redis
    stays available, nothing is announced; the next calls are Redis's answers again."""
    bl = _blacklist(redis_server.url)
    other = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await bl.is_revoked("warm") is False
        await _eventually(lambda: bl.available)
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            assert await bl.is_revoked("during-stall") is False  # the replica's answer
        finally:
            await asyncio.sleep(0.2)
            redis_server.proc.send_signal(signal.SIGCONT)
        assert bl.available and bl.outages == 0
        assert bl.slow_replies == 1 and bl.fallback_answers == 1
        # revoked by another worker straight in Redis: only Redis can say so
        await other.set("outage-test:jti:elsewhere", b"1", ex=60)
        assert await bl.is_revoked("elsewhere") is True
        assert bl.available and bl.outages == 0 and bl.fallback_answers == 1
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
        await other.aclose()
        await bl.close()


async def test_repeated_slow_replies_are_an_outage(redis_server: Any) -> None:
    """Redis stalled for good: after SLOW_REPLIES_FOR_OUTAGE slow replies it is down (one
    outage), and later checks answer from the replica at once instead of waiting."""
    bl = _blacklist(redis_server.url)
    try:
        assert await bl.is_revoked("warm") is False
        await _eventually(lambda: bl.available)
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            for n in range(1, SLOW_REPLIES_FOR_OUTAGE):
                assert await bl.is_revoked(f"t{n}") is False
                assert bl.available, f"down after {n} slow replies"
            assert await bl.is_revoked("last") is False
            assert not bl.available and bl.outages == 1
            loop = asyncio.get_running_loop()
            started = loop.time()
            for n in range(20):
                assert await bl.is_revoked(f"after{n}") is False
            assert loop.time() - started < 1.0
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        await _eventually(lambda: bl.available)
        assert bl.outages == 1
    finally:
        await bl.close()


async def test_a_killed_redis_is_an_outage_at_once(redis_server: Any) -> None:
    """Redis killed: the first check finds it down (a refused connection is no slow reply)."""
    bl = _blacklist(redis_server.url)
    try:
        assert await bl.is_revoked("warm") is False
        redis_server.stop()
        assert await bl.is_revoked("x") is False
        assert not bl.available and bl.outages == 1 and bl.slow_replies == 0
    finally:
        await bl.close()


async def test_a_restart_is_one_outage_despite_stale_connections(redis_server: Any) -> None:
    """Killed and restarted: after the return every concurrent check is Redis's answer (the
    pool's connections to the old process are not taken for a new outage). Killed again right
    after its return (a flap): still the same outage, announced once."""
    bl = _blacklist(redis_server.url)
    try:
        await asyncio.gather(*(bl.is_revoked(f"warm{n}") for n in range(8)))  # 8 connections
        await _eventually(lambda: bl.available)
        redis_server.stop()
        assert await bl.is_revoked("x") is False
        assert not bl.available and bl.outages == 1
        redis_server.start()
        await _eventually(lambda: bl.available)
        fallbacks = bl.fallback_answers
        await bl.add("revoked-after", 60)
        found = await asyncio.gather(*(bl.is_revoked(f"after{n}") for n in range(8)))
        assert found == [False] * 8
        assert bl.available and bl.outages == 1 and bl.fallback_answers == fallbacks
        redis_server.stop()  # a flap within OUTAGE_MERGE_SECONDS
        assert await bl.is_revoked("again") is False
        assert not bl.available and bl.outages == 1
        assert await bl.is_revoked("revoked-after") is True  # the replica remembers
    finally:
        await bl.close()


async def test_a_slow_background_sync_is_not_an_outage(redis_server: Any, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The replica's first sync timing out (a loaded machine at start-up) is tried again; no
    outage is announced and the replica still loads what Redis holds."""
    other = aioredis.Redis.from_url(redis_server.url)
    await other.set("outage-test:jti:before", b"1", ex=60)
    real = RedisTokenBlacklist.sync
    calls = []

    async def slow_first(self: RedisTokenBlacklist) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError
        await real(self)

    monkeypatch.setattr(RedisTokenBlacklist, "sync", slow_first)
    bl = _blacklist(redis_server.url)
    try:
        assert await bl.is_revoked("warm") is False
        await _eventually(lambda: len(calls) >= 2 and bl.replica.is_revoked_nowait("before", None))
        assert bl.available and bl.outages == 0
    finally:
        await other.aclose()
        await bl.close()
