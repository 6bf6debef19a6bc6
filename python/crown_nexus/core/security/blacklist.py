"""Token revocation: a blacklist of token ids (``jti``) and token families (``fam``).

Two backends behind one abstract base (one test suite runs against both):

- :class:`MemoryTokenBlacklist` — in process; entries expire when the token would have.
- :class:`RedisTokenBlacklist` — ``SET <prefix>jti:<jti> 1 EX <ttl> NX`` with redis-py asyncio;
  survives restarts and is shared between workers. Every call waits at most ``timeout``
  (default 100 ms), and a local replica kept current by pub/sub answers while Redis is down:
  tokens revoked before the outage stay refused, logged-in users are served.
  ``redis`` is imported only by that backend (install the ``crown-nexus[redis]`` extra).

:meth:`TokenBlacklist.add` is atomic set-if-absent and reports whether the id was new, which is
what makes refresh-token rotation safe against two concurrent uses of one refresh token.

The base class and the memory backend live in ``_blacklist_base``; the Redis backend is loaded
only by :func:`create_blacklist` (or by naming ``RedisTokenBlacklist``), the one loader of the
optional ``redis`` dependency here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crown_nexus.core.security._blacklist_base import MemoryTokenBlacklist, TokenBlacklist

if TYPE_CHECKING:
    from crown_nexus.core.security._redis_blacklist import RedisTokenBlacklist

__all__ = ["MemoryTokenBlacklist", "RedisTokenBlacklist", "TokenBlacklist", "create_blacklist"]


def create_blacklist(redis_url: str | None = None, **kwargs: Any) -> TokenBlacklist:
    """A Redis blacklist when ``redis_url`` is given (``kwargs`` go to
    :class:`RedisTokenBlacklist`: ``timeout``, ``prefix``, ...), else an in-memory one."""
    if redis_url:
        from crown_nexus.core.security._redis_blacklist import RedisTokenBlacklist

        return RedisTokenBlacklist(redis_url, **kwargs)
    return MemoryTokenBlacklist()


def __getattr__(name: str) -> Any:
    if name == "RedisTokenBlacklist":
        from crown_nexus.core.security._redis_blacklist import RedisTokenBlacklist

        return RedisTokenBlacklist
    raise AttributeError(name)
