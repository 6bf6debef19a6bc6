"""The one Redis client factory (crown_nexus.core._redis) and the stores that open clients there."""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any

import pytest

from crown_nexus.core import _redis
from crown_nexus.core._redis import (
    REDIS_EXTRA,
    LoopRedis,
    hiredis_available,
    open_redis,
    redis_client,
    require_redis,
)
from crown_nexus.core.exceptions import ConfigurationException

#: modules that import redis-py when they are imported, and the store each one names
_IMPORTING_MODULES = {
    "crown_nexus.core.cache.backends.redis": "the Redis cache backend",
    "crown_nexus.core.rate_limiting.redis": "the Redis rate-limit backend",
    "crown_nexus.core.security._redis_blacklist": "the Redis token blacklist",
}


def _hide_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``import redis...`` fail as it does without the extra (restored after)."""
    for name in [n for n in sys.modules if n == "redis" or n.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)


def test_missing_extra_is_one_configuration_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py the factory raises ConfigurationException naming the store and the extra."""
    _hide_redis(monkeypatch)
    with pytest.raises(ConfigurationException) as info:
        require_redis("the Redis widget store")
    assert "the Redis widget store" in info.value.message
    assert REDIS_EXTRA in info.value.message
    assert "crown-nexus[redis]" in REDIS_EXTRA
    assert isinstance(info.value.details, dict) and info.value.details["extra"] == "redis"
    assert isinstance(info.value.__cause__, ImportError)
    with pytest.raises(ConfigurationException, match=r"crown-nexus\[redis\]"):
        open_redis("redis://127.0.0.1:1/0", what="x", connect_timeout=1, socket_timeout=1)
    with pytest.raises(ConfigurationException, match=r"crown-nexus\[redis\]"):
        LoopRedis("redis://127.0.0.1:1/0", what="x", owner="X", connect_timeout=1, socket_timeout=1)


@pytest.mark.parametrize("module", sorted(_IMPORTING_MODULES))
def test_store_modules_raise_the_same_error_without_redis(
    monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    """Importing a Redis store module without redis-py raises the factory's error for that store."""
    _hide_redis(monkeypatch)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ConfigurationException) as info:
        importlib.import_module(module)
    assert info.value.message == f"{_IMPORTING_MODULES[module]} needs redis-py: {REDIS_EXTRA}"


@pytest.mark.parametrize(
    ("build", "what"),
    [
        ("feature", "the Redis feature flag store"),
        ("idempotency", "the Redis idempotency store"),
        ("login", "the Redis login throttle"),
    ],
)
def test_stores_built_without_redis_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, build: str, what: str
) -> None:
    """Stores whose module imports without redis-py fail at construction with the same error."""
    from crown_nexus.core.features.stores.redis import RedisFeatureStore
    from crown_nexus.core.idempotency.redis import RedisIdempotencyStore
    from crown_nexus.core.security.login_throttle import RedisLoginThrottleStore

    classes: dict[str, Any] = {
        "feature": RedisFeatureStore,
        "idempotency": RedisIdempotencyStore,
        "login": RedisLoginThrottleStore,
    }
    _hide_redis(monkeypatch)
    with pytest.raises(ConfigurationException) as info:
        classes[build]("redis://127.0.0.1:1/0")
    assert info.value.message == f"{what} needs redis-py: {REDIS_EXTRA}"


def test_readiness_probe_without_redis_fails_with_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Redis readiness check opens its client through the factory too."""
    from crown_nexus.integrations.observability import redis_check

    check = redis_check("redis://127.0.0.1:1/0")

    async def probe() -> None:
        await check()

    _hide_redis(monkeypatch)
    with pytest.raises(ConfigurationException, match=r"readiness check needs redis-py"):
        asyncio.run(probe())


@pytest.mark.parametrize(
    ("connect", "socket"),
    [(0, 1.0), (-1, 1.0), (float("inf"), 1.0), (None, 1.0), (1.0, 0), (1.0, float("nan"))],
)
def test_timeouts_must_be_bounded(connect: Any, socket: Any) -> None:
    """A connect timeout is required and finite; a socket timeout is positive or explicitly None."""
    with pytest.raises(ConfigurationException, match="must be a positive number of seconds"):
        open_redis(
            "redis://127.0.0.1:1/0", what="x", connect_timeout=connect, socket_timeout=socket
        )
    with pytest.raises(ConfigurationException, match="must be a positive number of seconds"):
        LoopRedis(
            "redis://127.0.0.1:1/0",
            what="x",
            owner="X",
            connect_timeout=connect,
            socket_timeout=socket,
        )


async def test_open_redis_applies_the_options(redis_url: str) -> None:
    """The client gets the timeouts, retry count, pool cap and keepalive asked for, and works."""
    client = open_redis(
        redis_url,
        what="x",
        connect_timeout=0.7,
        socket_timeout=None,
        retries=1,
        keepalive=True,
        max_connections=5,
    )
    try:
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        assert kwargs["socket_connect_timeout"] == 0.7
        assert kwargs["socket_timeout"] is None
        assert kwargs["socket_keepalive"] is True
        assert kwargs["retry"].get_retries() == 1
        assert pool.max_connections == 5
        assert await client.ping() is True
    finally:
        await client.aclose()


async def test_hiredis_is_the_parser_when_installed(redis_url: str) -> None:
    """Connections parse replies with hiredis exactly when the hiredis package is installed."""
    from redis._parsers import _AsyncHiredisParser

    client = open_redis(redis_url, what="x", connect_timeout=1, socket_timeout=1)
    try:
        conn = client.connection_pool.make_connection()
        assert isinstance(conn._parser, _AsyncHiredisParser) is hiredis_available()
    finally:
        await client.aclose()
    try:
        import hiredis  # noqa: F401
    except ImportError:
        assert hiredis_available() is False
    else:
        assert hiredis_available() is True


def test_malformed_url_fails_at_construction() -> None:
    """A bad URL is redis-py's ValueError when the client or the per-loop holder is built."""
    with pytest.raises(ValueError):
        open_redis("http://nope", what="x", connect_timeout=1, socket_timeout=1)
    with pytest.raises(ValueError):
        LoopRedis("http://nope", what="x", owner="X", connect_timeout=1, socket_timeout=1)


def test_loop_redis_needs_a_url_or_a_client() -> None:
    """Neither a URL nor a client: ConfigurationException naming the store."""
    with pytest.raises(ConfigurationException, match="WidgetStore needs a URL or a client"):
        LoopRedis(None, what="x", owner="WidgetStore", connect_timeout=1, socket_timeout=1)


def test_loop_redis_keeps_one_client_per_loop(redis_url: str) -> None:
    """The same loop gets the same client; another loop gets its own, and each one works."""
    holder = LoopRedis(redis_url, what="x", owner="X", connect_timeout=1, socket_timeout=1)
    assert holder.owned is True

    async def twice() -> tuple[Any, Any, bool]:
        first = holder.get()
        second = holder.get()
        ok = await first.ping()
        return first, second, ok

    loop_a = asyncio.new_event_loop()
    loop_b = asyncio.new_event_loop()
    try:
        a1, a2, ok_a = loop_a.run_until_complete(twice())
        b1, b2, ok_b = loop_b.run_until_complete(twice())
        assert a1 is a2 and b1 is b2
        assert a1 is not b1
        assert ok_a is True and ok_b is True
        # back on the first loop: its own client again, still usable
        again, _, ok = loop_a.run_until_complete(twice())
        assert again is a1 and ok is True
        loop_a.run_until_complete(holder.aclose())
        loop_b.run_until_complete(holder.aclose())
    finally:
        loop_a.close()
        loop_b.close()


async def test_loop_redis_close_then_reopen(redis_url: str) -> None:
    """aclose closes the running loop's client; the next use opens a fresh one."""
    holder = LoopRedis(redis_url, what="x", owner="X", connect_timeout=1, socket_timeout=1)
    first = holder.get()
    await first.ping()
    assert holder.opened() is True
    await holder.aclose()
    assert holder.opened() is False
    second = holder.get()
    assert second is not first
    assert await second.ping() is True
    await holder.aclose()


async def test_given_client_is_used_and_never_closed(redis_client: Any) -> None:
    """A caller's client is returned as is on every loop and stays open after aclose."""
    holder = LoopRedis(
        None, client=redis_client, what="x", owner="X", connect_timeout=1, socket_timeout=1
    )
    assert holder.owned is False
    assert holder.get() is redis_client
    await holder.aclose()
    assert await redis_client.ping() is True  # still open
    client, owned = _redis.redis_client("the Redis x store", "XStore", None, redis_client, 1.0)
    assert client is redis_client and owned is False


async def test_redis_client_opens_an_owned_client(redis_url: str) -> None:
    """From a URL the single-client helper opens a client (owned) with the timeout on both waits."""
    client, owned = redis_client("the Redis x store", "XStore", redis_url, None, 0.5)
    try:
        assert owned is True
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.5 and kwargs["socket_connect_timeout"] == 0.5
        assert await client.ping() is True
    finally:
        await client.aclose()
    with pytest.raises(ValueError, match="XStore needs a url or a client"):
        redis_client("the Redis x store", "XStore", None, None, 0.5)


async def test_stores_keep_their_client_options(redis_url: str) -> None:
    """Each store opens its client through the factory with the waits it has always used."""
    from crown_nexus.core.cache.backends.redis import RedisCacheBackend
    from crown_nexus.core.features.stores.redis import RedisFeatureStore
    from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend
    from crown_nexus.core.security._redis_blacklist import RedisTokenBlacklist

    cache = RedisCacheBackend(redis_url, connect_timeout=0.4, max_connections=3)
    kw = cache.client.connection_pool.connection_kwargs
    assert (kw["socket_connect_timeout"], kw["socket_timeout"]) == (0.4, None)
    assert kw["retry"].get_retries() == 0
    assert cache.client.connection_pool.max_connections == 6
    await cache.close()

    limiter = RedisRateLimitBackend(redis_url, timeout=0.3, max_connections=2)
    kw = limiter.client.connection_pool.connection_kwargs
    assert (kw["socket_connect_timeout"], kw["socket_timeout"]) == (0.3, None)
    assert kw["retry"].get_retries() == 1
    await limiter.close()

    blacklist = RedisTokenBlacklist(redis_url, timeout=0.2, replicate=False)
    kw = blacklist._redis().connection_pool.connection_kwargs
    assert (kw["socket_connect_timeout"], kw["socket_timeout"]) == (0.2, None)
    assert kw["retry"].get_retries() == 0
    await blacklist.close()

    flags = RedisFeatureStore(redis_url, socket_timeout=0.6)
    kw = flags._redis().connection_pool.connection_kwargs
    assert (kw["socket_connect_timeout"], kw["socket_timeout"]) == (0.6, 0.6)
    assert kw["retry_on_timeout"] is False
    await flags.close()


def test_factory_module_does_not_import_redis() -> None:
    """Importing the factory never imports redis-py (only opening a client does)."""
    import subprocess

    code = "import sys, crown_nexus.core._redis; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert _redis.__name__ == "crown_nexus.core._redis"
