"""Revocation backends: one suite run against memory and a real Redis server."""

from __future__ import annotations

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


async def test_redis_down_fails_closed(redis_server) -> None:
    """With Redis stopped, tokens are refused with 401 (revocation cannot be checked)."""
    settings = make_settings(REDIS_URI=redis_server.url)
    manager = TokenManager(settings, blacklist=create_blacklist(settings.redis_url))
    try:
        token = manager.create_token("u")
        assert (await manager.decode_token(token)).sub == "u"
        redis_server.stop()
        with pytest.raises(AuthenticationException) as info:
            await manager.decode_token(token)
        assert info.value.details["reason"] == "revocation_check_failed"
    finally:
        await manager.close()


def test_memory_is_the_default_without_redis() -> None:
    """Without a Redis URL the in-memory backend is used."""
    assert isinstance(create_blacklist(None), MemoryTokenBlacklist)
