"""The one place a store gets its redis-py client (asyncio).

:func:`redis_client` imports redis-py (an optional dependency: a missing one is an ``ImportError``
naming the ``redis`` extra and the store that needs it) and either opens a client for ``url`` with
bounded socket waits or takes the caller's ``client``. It says whether the store owns the client
(and so must close it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["redis_client"]


def redis_client(
    what: str, owner: str, url: str | None, client: Any, timeout: float
) -> tuple[Any, bool]:
    """``(client, owned)`` for the store ``owner`` (``what`` names it in the missing-extra error).

    A given ``client`` is used as is (not owned); otherwise ``url`` is required
    (``ValueError`` naming ``owner``) and a client is opened with ``timeout`` seconds for connects
    and socket reads.
    """
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"{what} needs redis-py: pip install 'crown-nexus[redis]'") from exc
    if client is not None:
        return client, False
    if not url:
        raise ValueError(f"{owner} needs a url or a client")
    return aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout), True
