"""The one place every store gets its redis-py client (asyncio).

Every Redis-backed store (cache backend, rate-limit backend, token blacklist, feature flag
store, idempotency store, login throttle) and the Redis readiness probe open their client here:

- redis-py is an optional dependency (the ``redis`` extra). A missing one is always the same
  :class:`~crown_nexus.core.exceptions.ConfigurationException`, naming the store and the
  extra to install (:func:`missing_redis_extra`); modules that import redis-py at module level
  raise it from their ``except ImportError``.
- Waits are bounded: a connect timeout is required (positive, finite), and a socket timeout
  too unless the caller passes ``None`` explicitly because it bounds each call itself (the
  cache's fallback wrapper, the rate limiter's watchdog, the blacklist's ``asyncio.timeout``).
- The hiredis parser is used when the ``hiredis`` package is installed: redis-py picks it as
  its default parser, and nothing here overrides the parser (:func:`hiredis_available` says
  whether it is).
- redis-py's asyncio connections belong to the event loop that opened them. :class:`LoopRedis`
  keeps one client per loop for stores used from whatever loop runs them (an app, a worker, a
  test), so a store is never handed connections of another (often closed) loop.
- A client given by the caller is used as is and never closed by the store (``owned`` is
  false); a client opened here from a URL is the store's to close.

redis-py is imported only when a client is opened, never when this module is imported.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from types import ModuleType
from typing import Any

from crown_nexus.core.exceptions import ConfigurationException

__all__ = [
    "REDIS_EXTRA",
    "LoopRedis",
    "hiredis_available",
    "missing_redis_extra",
    "open_redis",
    "redis_client",
    "require_redis",
]

#: how to install the optional Redis support (named by every missing-extra error)
REDIS_EXTRA = "pip install 'crown-nexus[redis]'"


def missing_redis_extra(what: str) -> ConfigurationException:
    """The error for ``what`` (``"the Redis cache backend"``) when redis-py is not installed."""
    return ConfigurationException(
        message=f"{what} needs redis-py: {REDIS_EXTRA}",
        config_key="REDIS_URI",
        details={"extra": "redis", "install": REDIS_EXTRA},
    )


def require_redis(what: str) -> ModuleType:
    """The ``redis`` package with its asyncio client imported; :func:`missing_redis_extra`
    (a :class:`ConfigurationException`) when redis-py is not installed."""
    try:
        import redis
        import redis.asyncio
        import redis.asyncio.retry
        import redis.backoff
        import redis.exceptions
    except ImportError as exc:
        raise missing_redis_extra(what) from exc
    return redis


def hiredis_available() -> bool:
    """Whether redis-py parses replies with hiredis (the ``hiredis`` package is installed)."""
    from redis.utils import HIREDIS_AVAILABLE

    return bool(HIREDIS_AVAILABLE)


def _check_timeout(name: str, value: float | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if value is None or not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigurationException(
            message=f"the Redis {name} must be a positive number of seconds, got {value!r}"
        )


def open_redis(
    url: str,
    *,
    what: str,
    connect_timeout: float,
    socket_timeout: float | None,
    retries: int | None = None,
    keepalive: bool = False,
    max_connections: int | None = None,
    **options: Any,
) -> Any:
    """A new ``redis.asyncio.Redis`` for ``url``, owned by the caller (close it with ``aclose``).

    ``connect_timeout`` bounds connecting (seconds, required). ``socket_timeout`` bounds each
    read and write; ``None`` only for callers that bound every call themselves. ``retries``:
    how many times redis-py retries a command on a connection error, without backoff (``None``:
    redis-py's own default policy). ``max_connections`` caps the pool; ``options`` go to
    redis-py's connection pool as they are (``decode_responses``, ``retry_on_timeout``...).
    A malformed URL raises redis-py's ``ValueError``; ``what`` names the store in the
    missing-extra error.
    """
    redis = require_redis(what)
    _check_timeout("connect timeout", connect_timeout, optional=False)
    _check_timeout("socket timeout", socket_timeout, optional=True)
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        **options,
    }
    if keepalive:
        kwargs["socket_keepalive"] = True
    if retries is not None:
        kwargs["retry"] = redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), retries)
    if max_connections is not None:
        kwargs["max_connections"] = max_connections
    return redis.asyncio.Redis.from_url(url, **kwargs)


def redis_client(
    what: str, owner: str, url: str | None, client: Any, timeout: float
) -> tuple[Any, bool]:
    """``(client, owned)`` for the store ``owner`` (``what`` names it in the missing-extra error).

    A given ``client`` is used as is (not owned); otherwise ``url`` is required
    (``ValueError`` naming ``owner``) and a client is opened with ``timeout`` seconds for
    connects and socket reads (:func:`open_redis`).
    """
    require_redis(what)
    if client is not None:
        return client, False
    if not url:
        raise ValueError(f"{owner} needs a url or a client")
    return open_redis(url, what=what, connect_timeout=timeout, socket_timeout=timeout), True


class LoopRedis:
    """A store's Redis client, one per event loop.

    Built from a ``url`` (with :func:`open_redis`'s timeouts and ``options``), :meth:`get` returns
    the running loop's client, opening it on first use in that loop; clients of other loops are
    left to those loops (a loop that is gone takes its client with it). Built from a ``client``,
    :meth:`get` always returns that client and :meth:`aclose` leaves it open (it is the
    caller's). ``owner`` names the store in the error raised when neither is given.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        what: str,
        owner: str,
        connect_timeout: float,
        socket_timeout: float | None,
        **options: Any,
    ) -> None:
        redis = require_redis(what)
        if client is None:
            if not url:
                raise ConfigurationException(message=f"{owner} needs a URL or a client")
            # fail at construction, not at first use: a malformed URL (ValueError) or timeout
            redis.asyncio.connection.parse_url(url)
            _check_timeout("connect timeout", connect_timeout, optional=False)
            _check_timeout("socket timeout", socket_timeout, optional=True)
        self._url = url
        self._what = what
        self._options = {
            "connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
            **options,
        }
        self._given = client
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def owned(self) -> bool:
        """True when the clients were opened here (from the URL) and are closed by :meth:`aclose`."""
        return self._given is None

    def get(self) -> Any:
        """The client for the running event loop (called from a coroutine)."""
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            assert self._url is not None  # checked in __init__
            client = open_redis(self._url, what=self._what, **self._options)
            self._clients[loop] = client
        return client

    def opened(self) -> bool:
        """Whether the running loop has a client of ours (one opened here and not yet closed)."""
        if self._given is not None:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return loop in self._clients

    async def aclose(self) -> None:
        """Close the running loop's client if it was opened here (a given client stays open)."""
        if self._given is not None:
            return
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
