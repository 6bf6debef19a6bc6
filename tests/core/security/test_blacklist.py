"""Revocation backends: one suite run against memory and a real Redis server."""

from __future__ import annotations

import asyncio
import signal

import pytest

from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.security import TokenManager
from crown_nexus.core.security.blacklist import (
    MemoryTokenBlacklist,
    TokenBlacklist,
    create_blacklist,
)
from tests.core.security.conftest import make_settings


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def blacklist(request: pytest.FixtureRequest):
    """Each blacklist backend (Redis on the real server, flushed around the test)."""
    if request.param == "memory":
        yield MemoryTokenBlacklist()
        return
    import uuid

    from crown_nexus.core.security.blacklist import RedisTokenBlacklist

    prefix = f"test:{uuid.uuid4().hex}:"  # a fresh key space on the shared server
    backend = RedisTokenBlacklist(request.getfixturevalue("redis_url"), prefix=prefix)
    try:
        yield backend
    finally:
        await backend.close()


async def test_add_is_set_if_absent(blacklist: TokenBlacklist) -> None:
    """add() reports True the first time and False afterwards."""
    assert await blacklist.add("j1", 60) is True
    assert await blacklist.add("j1", 60) is False
    assert await blacklist.is_revoked("j1")
    assert not await blacklist.is_revoked("j2")


async def test_family_revocation(blacklist: TokenBlacklist) -> None:
    """A revoked family revokes any jti that belongs to it."""
    assert not await blacklist.is_revoked("j9", "fam1")
    await blacklist.revoke_family("fam1", 60)
    assert await blacklist.is_revoked("j9", "fam1")
    assert await blacklist.is_revoked(None, "fam1")
    assert not await blacklist.is_revoked("j9", "fam2")
    assert not await blacklist.is_revoked(None, None)


async def test_memory_entries_expire_with_the_token() -> None:
    """Memory entries disappear once their time to live has passed."""
    clock = FakeClock()
    bl = MemoryTokenBlacklist(clock=clock, sweep_every=2)
    await bl.add("j", 10)
    await bl.revoke_family("f", 10)
    assert await bl.is_revoked("j") and await bl.is_revoked(None, "f")
    clock.now += 11
    assert not await bl.is_revoked("j")
    assert not await bl.is_revoked(None, "f")
    assert await bl.add("j", 10) is True
    clock.now += 11
    await bl.add("x", 10)
    await bl.add("y", 10)  # triggers a sweep
    assert len(bl) == 2


async def test_redis_keys_carry_the_token_ttl(redis_url: str, redis_client) -> None:
    """Redis entries are SET with EX equal to the token's remaining lifetime."""
    from crown_nexus.core.security.blacklist import RedisTokenBlacklist

    bl = RedisTokenBlacklist(redis_url, prefix="t:")
    try:
        await bl.add("jj", 42.2)
        ttl = await redis_client.ttl("t:jti:jj")
        assert 40 <= ttl <= 43
    finally:
        await bl.close()


async def test_redis_revocation_survives_restart_and_is_shared(
    redis_url: str, redis_client
) -> None:
    """A token revoked by one worker is refused by another and after a restart (new objects)."""
    settings = make_settings(REDIS_URI=redis_url)
    worker_a = TokenManager(settings, blacklist=create_blacklist(settings.redis_url))
    worker_b = TokenManager(settings, blacklist=create_blacklist(settings.redis_url))
    try:
        pair = worker_a.create_token_pair("u")
        await worker_a.revoke_token(pair.access_token)
        with pytest.raises(AuthenticationException):
            await worker_b.decode_token(pair.access_token)
        second = await worker_a.refresh_tokens(pair.refresh_token)
        with pytest.raises(AuthenticationException) as info:
            await worker_b.refresh_tokens(pair.refresh_token)
        assert info.value.details["reason"] == "reuse_detected"
        with pytest.raises(AuthenticationException):
            await worker_a.decode_token(second.access_token)
    finally:
        await worker_a.close()
        await worker_b.close()
    restarted = TokenManager(settings, blacklist=create_blacklist(settings.redis_url))
    try:
        with pytest.raises(AuthenticationException):
            await restarted.decode_token(pair.access_token)
    finally:
        await restarted.close()


async def _eventually(predicate, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate()`` until true (a safety bound, not a speed claim)."""
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still false after {seconds} s")


async def test_redis_down_serves_valid_tokens_and_refuses_revoked_ones(redis_server) -> None:
    """With Redis killed, a token revoked before stays refused and a valid one is served."""
    settings = make_settings(REDIS_URI=redis_server.url)
    manager = TokenManager(settings, blacklist=create_blacklist(settings.redis_url))
    try:
        revoked = manager.create_token_pair("r")
        valid = manager.create_token_pair("u")
        await manager.revoke_token(revoked.access_token)
        assert (await manager.decode_token(valid.access_token)).sub == "u"
        redis_server.stop()
        for _ in range(3):
            assert (await manager.decode_token(valid.access_token)).sub == "u"
            with pytest.raises(AuthenticationException) as info:
                await manager.decode_token(revoked.access_token)
            assert info.value.details["reason"] == "revoked"
        # refresh keeps working (rotation recorded locally); reuse is still detected here
        again = await manager.refresh_tokens(valid.refresh_token)
        with pytest.raises(AuthenticationException) as info:
            await manager.refresh_tokens(valid.refresh_token)
        assert info.value.details["reason"] == "reuse_detected"
        with pytest.raises(AuthenticationException):
            await manager.decode_token(again.access_token)  # the family went with the reuse
        blacklist = manager.blacklist
        assert not blacklist.available and blacklist.outages == 1
        assert blacklist.fallback_answers >= 3
    finally:
        await manager.close()


async def test_revocations_return_to_redis_when_it_comes_back(redis_server) -> None:
    """After an outage (Redis restarted empty) what was revoked before and during it is back in
    Redis: a new worker with an empty replica refuses both tokens."""
    settings = make_settings(REDIS_URI=redis_server.url)
    manager = TokenManager(settings, blacklist=create_blacklist(settings.redis_url))
    before = manager.create_token("before")
    during = manager.create_token("during")
    valid = manager.create_token("valid")
    try:
        await manager.revoke_token(before)
        redis_server.stop()
        await manager.revoke_token(during)  # recorded in the replica only
        with pytest.raises(AuthenticationException):
            await manager.decode_token(during)
        redis_server.start()  # no persistence: Redis comes back empty
        import redis.asyncio as aioredis

        raw = aioredis.Redis.from_url(redis_server.url)
        try:
            prefix = "crown_nexus:revoked:jti:"
            await _eventually(lambda: manager.blacklist.available, 10)

            async def both_written() -> bool:
                return bool(await raw.exists(prefix + manager.verify(before).jti)) and bool(
                    await raw.exists(prefix + manager.verify(during).jti)
                )

            async with asyncio.timeout(10):
                while not await both_written():
                    await asyncio.sleep(0.05)
                    await manager.decode_token(valid)  # requests probe Redis again
        finally:
            await raw.aclose()
    finally:
        await manager.close()
    fresh = TokenManager(settings, blacklist=create_blacklist(settings.redis_url, replicate=False))
    try:
        for token in (before, during):
            with pytest.raises(AuthenticationException):
                await fresh.decode_token(token)
        assert (await fresh.decode_token(valid)).sub == "valid"
    finally:
        await fresh.close()


async def test_a_stalled_redis_is_waited_on_for_a_bounded_time(redis_server) -> None:
    """With Redis SIGSTOPped, checks answer from the replica instead of hanging (safety bound)."""
    settings = make_settings(REDIS_URI=redis_server.url)
    manager = TokenManager(settings, blacklist=create_blacklist(settings.redis_url, timeout=0.1))
    revoked = manager.create_token("r")
    valid = manager.create_token("u")
    try:
        await manager.revoke_token(revoked)
        assert (await manager.decode_token(valid)).sub == "u"
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            async with asyncio.timeout(2):  # 20 checks; Redis would otherwise hang them all
                for _ in range(10):
                    assert (await manager.decode_token(valid)).sub == "u"
                    with pytest.raises(AuthenticationException):
                        await manager.decode_token(revoked)
            assert not manager.blacklist.available
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        await _eventually(lambda: manager.blacklist.available or False, 10)
    finally:
        await manager.close()


async def test_workers_share_revocations_through_pubsub(redis_server) -> None:
    """A token one worker revokes reaches the other's replica by pub/sub: still refused there
    when Redis dies right after, although that worker never asked Redis about it."""
    from crown_nexus.core.security.blacklist import RedisTokenBlacklist

    settings = make_settings(REDIS_URI=redis_server.url)
    # no periodic sync: only pub/sub can carry the revocation
    a = RedisTokenBlacklist(redis_server.url, sync_interval=3600)
    b = RedisTokenBlacklist(redis_server.url, sync_interval=3600)
    worker_a = TokenManager(settings, blacklist=a)
    worker_b = TokenManager(settings, blacklist=b)
    token = worker_a.create_token("u")
    family = "fam-shared"
    try:
        assert (await worker_b.decode_token(token)).sub == "u"  # starts b's listener
        await _eventually(lambda: not b._needs_sync)  # b subscribed and synced
        await worker_a.revoke_token(token)
        await a.revoke_family(family, 60)
        jti = worker_a.verify(token).jti
        await _eventually(
            lambda: (
                bool(b.replica.is_revoked_nowait(jti))
                and bool(b.replica.is_revoked_nowait(None, family))
            )
        )
        redis_server.stop()
        with pytest.raises(AuthenticationException) as info:
            await worker_b.decode_token(token)
        assert info.value.details["reason"] == "revoked"
        assert await b.is_revoked("any-jti", family)
        assert not await b.is_revoked("another-jti")
    finally:
        await worker_a.close()
        await worker_b.close()


async def test_replica_loads_existing_revocations_at_start(redis_url: str) -> None:
    """A new worker's replica is filled from Redis (SCAN) with each entry's remaining TTL."""
    import uuid

    from crown_nexus.core.security.blacklist import RedisTokenBlacklist

    prefix = f"test:{uuid.uuid4().hex}:"
    writer = RedisTokenBlacklist(redis_url, prefix=prefix, replicate=False)
    reader = RedisTokenBlacklist(redis_url, prefix=prefix)
    try:
        await writer.add("old-jti", 120)
        await writer.revoke_family("old-fam", 120)
        assert not await reader.is_revoked("unrelated")  # starts the listener
        await _eventually(lambda: len(reader.replica) == 2)
        entries = {(k, i): left for k, i, left in reader.replica.live_entries()}
        assert set(entries) == {("jti", "old-jti"), ("fam", "old-fam")}
        assert all(110 < left <= 120 for left in entries.values())
    finally:
        await writer.close()
        await reader.close()


def test_redis_timeout_setting_reaches_the_blacklist(redis_url: str) -> None:
    """CROWN_NEXUS_REDIS_TIMEOUT_MS (default 100) bounds the security service's Redis calls."""
    from crown_nexus.core.security.service import SecurityService

    assert make_settings(REDIS_URI=redis_url).redis_timeout_ms == 100
    service = SecurityService(make_settings(REDIS_URI=redis_url, redis_timeout_ms=250))
    assert service.blacklist._timeout == 0.25  # type: ignore[attr-defined]


def test_memory_is_the_default_without_redis() -> None:
    """Without a Redis URL the in-memory backend is used."""
    assert isinstance(create_blacklist(None), MemoryTokenBlacklist)


class _AsksLater(MemoryTokenBlacklist):
    """A backend whose quick answer is "ask me asynchronously" and whose real answer is revoked."""

    async def is_revoked(self, jti: str | None, family: str | None = None) -> bool:
        return True

    def is_revoked_nowait(self, jti: str | None, family: str | None = None) -> bool | None:
        return None


async def test_a_nowait_none_is_asked_asynchronously_not_taken_as_valid() -> None:
    """SecurityService: a backend's is_revoked_nowait() of None means "await is_revoked", never "valid"."""
    from crown_nexus.core.security.service import SecurityService

    service = SecurityService(make_settings(), blacklist=_AsksLater())
    token = service.create_token("u")
    with pytest.raises(AuthenticationException) as info:
        await service.decode_token(token)
    assert info.value.details["reason"] == "revoked"


async def test_replica_sync_reads_only_its_own_prefix(redis_url: str) -> None:
    """A prefix with glob characters matches itself literally when the replica scans Redis."""
    import uuid

    from crown_nexus.core.security.blacklist import RedisTokenBlacklist

    base = uuid.uuid4().hex
    own = RedisTokenBlacklist(redis_url, prefix=f"{base}[a]*:", replicate=False)
    # same length as own prefix and matched by it as a glob: only escaping keeps it out
    other = RedisTokenBlacklist(redis_url, prefix=f"{base}abcd:", replicate=False)
    try:
        await own.add("mine", 60)
        await other.add("theirs", 60)
        await own.sync()
        assert [(k, i) for k, i, _ in own.replica.live_entries()] == [("jti", "mine")]
    finally:
        await own.close()
        await other.close()
