"""The Redis token blacklist with a local replica (needs the ``crown-nexus[redis]`` extra).

Redis is the shared record: revoked ``jti``s and families are keys with a TTL
(``SET <prefix>jti:<jti> 1 EX <ttl> NX``), so revocations are shared by every worker and kept
across restarts. Each process also keeps a **replica** of that record in memory, kept current by
its own writes, by a pub/sub channel every worker publishes its revocations on
(``<prefix>events``), and by a full sync (``SCAN``) when it connects, when Redis comes back and
every ``sync_interval`` seconds. So (SPEC §8):

- No request waits on Redis longer than ``timeout`` (default 100 ms): each call runs under
  ``asyncio.timeout`` on a pool without retries.
- A token the replica knows revoked is refused without asking Redis; others are checked in Redis.
- When Redis is down or stalled the blacklist answers from the replica: tokens revoked before
  the outage stay refused, every other token is served (logged once per outage, counted in
  :attr:`RedisTokenBlacklist.fallback_answers`). Redis is asked again once per
  ``retry_interval`` (by one request; the others keep answering from the replica). A reply
  slower than ``timeout`` is answered from the replica too, but Redis counts as down only after
  :data:`SLOW_REPLIES_FOR_OUTAGE` in a row (one slow reply on a loaded machine is no outage), and
  an outage that starts within :data:`OUTAGE_MERGE_SECONDS` of the last one's end is the same
  outage (logged once).
- Revocations made during the outage are recorded in the replica and written to Redis when it
  returns (with their remaining lifetime, ``SET NX``), as is anything a restarted, emptied Redis
  lost, so every worker sees them again.

Limits: a process that starts while Redis is down has an empty replica until Redis returns; a
refresh token used in two workers during an outage is not detected as reused (each worker only
sees its own use).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from crown_nexus.core._redis import LoopRedis, missing_redis_extra
from crown_nexus.core._tasks import cancel_and_wait
from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.security._blacklist_base import MemoryTokenBlacklist, TokenBlacklist, _ttl
from crown_nexus.logging import get_logger

try:
    from redis import exceptions as redis_exceptions
except ImportError as exc:  # tested with redis-py hidden (tests/core/test_redis_factory.py)
    raise missing_redis_extra("the Redis token blacklist") from exc

__all__ = ["DEFAULT_TIMEOUT", "RedisTokenBlacklist"]

#: the longest a request waits on one Redis call of the blacklist (seconds)
DEFAULT_TIMEOUT = 0.1
#: what a failed or stalled Redis raises here (``TimeoutError``: our own ``asyncio.timeout``)
_UNAVAILABLE = (redis_exceptions.RedisError, OSError, EOFError, TimeoutError)
#: a key without a TTL (never written by us) is held this long by the replica
_NO_TTL_SECONDS = 86_400.0
#: consecutive replies slower than ``timeout`` that make Redis count as down: on a loaded
#: machine one slow reply is not an outage (that request answers from the replica, nothing else
#: changes); a stalled Redis gives this many within one ``timeout`` when requests are concurrent
SLOW_REPLIES_FOR_OUTAGE = 3
#: an outage starting this soon (seconds) after the last one ended is the same outage going on
#: (a Redis flapping on its way back): logged and counted once
OUTAGE_MERGE_SECONDS = 30.0
_SCAN_COUNT = 1000

T = TypeVar("T")
_logger = get_logger("crown_nexus.security.revocation")


class RedisTokenBlacklist(TokenBlacklist):
    """Revoked ``jti``s and families in Redis, with a local replica (module docstring).

    ``timeout`` bounds every request-path call (seconds); background syncs get
    ``max(1 s, 10 * timeout)`` per round trip. ``retry_interval`` is how often a request asks a
    Redis known to be down whether it is back. ``replicate=False`` turns the replica's
    background listener off (the replica then holds only this process's own revocations).

    redis-py's asyncio connections belong to the event loop that opened them. A blacklist built
    from a URL is used by module-level functions from whatever loop runs them (an app, a
    worker, a test), so it keeps one client (:class:`~crown_nexus.core._redis.LoopRedis`) and one
    listener per loop: used from a new loop, it opens a new client there instead of failing on
    connections of a loop that is gone.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "crown_nexus:revoked:",
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = 1.0,
        sync_interval: float = 60.0,
        replicate: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0 or retry_interval <= 0 or sync_interval <= 0:
            raise ConfigurationException(
                message="RedisTokenBlacklist timeouts and intervals must be positive"
            )
        self._timeout = timeout
        self._bg_timeout = max(1.0, 10 * timeout)
        self._retry_interval = retry_interval
        self._sync_interval = sync_interval
        self._replicate = replicate
        self._clock = clock
        self._clients = LoopRedis(
            redis_url,
            client=client,
            what="the Redis token blacklist",
            owner="RedisTokenBlacklist",
            connect_timeout=timeout,
            socket_timeout=None,  # bounded by asyncio.timeout per call instead
            keepalive=True,
            retries=0,
        )
        self._prefix = prefix
        self._channel = f"{prefix}events"
        self._replica = MemoryTokenBlacklist(clock=clock)
        self._down_since: float | None = None
        self._back_at: float | None = None  # when the last outage ended
        self._announced = False  # the current outage was logged (and counted)
        self._slow_replies = 0  # consecutive replies over the timeout while up
        self._retry_at = 0.0
        self._probing = False
        self._needs_sync = True
        self._closed = False
        self._listener: asyncio.Task[None] | None = None
        self._listener_loop: asyncio.AbstractEventLoop | None = None
        #: how many revocation checks were answered from the replica because Redis was down
        self.fallback_answers = 0
        #: how many outages were noticed (each logged once; a flap within
        #: :data:`OUTAGE_MERGE_SECONDS` of the last one is the same outage)
        self.outages = 0
        #: how many request-path replies were slower than ``timeout`` (each answered from the
        #: replica; Redis counts as down after :data:`SLOW_REPLIES_FOR_OUTAGE` in a row)
        self.slow_replies = 0

    # --- state -------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while Redis is known to be down (answers come from the replica)."""
        return self._down_since is None

    @property
    def replica(self) -> MemoryTokenBlacklist:
        """The local replica of the revocation record."""
        return self._replica

    def _redis(self) -> Any:
        """The client for the running loop (opened there on first use, unless one was given)."""
        return self._clients.get()

    def _went_down(self, exc: BaseException) -> None:
        now = self._clock()
        self._retry_at = now + self._retry_interval
        self._slow_replies = 0
        if self._down_since is None:
            self._down_since = now
            if self._back_at is not None and now - self._back_at < OUTAGE_MERGE_SECONDS:
                # Redis answered for a moment: the outage that was announced goes on
                _logger.debug("Redis unavailable again for token revocation", error=type(exc).__name__)
                return
            self.outages += 1
            self._announced = True
            _logger.warning(
                "Redis unavailable for token revocation; answering from the local replica "
                "(tokens revoked before stay refused, others are served)",
                error=type(exc).__name__,
                replica_entries=len(self._replica),
            )

    def _came_back(self, synced: bool = False) -> None:
        if self._down_since is not None:
            now = self._clock()
            if self._announced:
                _logger.info(
                    "Redis is back for token revocation",
                    outage_seconds=round(now - self._down_since, 3),
                )
            self._announced = False
            self._back_at = now
            self._down_since = None
            if not synced:
                self._needs_sync = True  # write what was revoked meanwhile

    def _usable(self) -> bool:
        """Whether to ask Redis now: up, or down long enough for one request to probe."""
        if self._down_since is None:
            return True
        return not self._probing and self._clock() >= self._retry_at

    async def _run(self, call: Callable[[Any], Awaitable[T]]) -> tuple[bool, T | None]:
        """``call(client)`` bounded by the timeout: ``(True, result)``, or ``(False, None)`` when
        Redis failed or was slower than the timeout. A failure marks Redis down; a slow reply
        only when :data:`SLOW_REPLIES_FOR_OUTAGE` come in a row (or while probing)."""
        probing = self._down_since is not None
        if probing:
            self._probing = True
        try:
            async with asyncio.timeout(self._timeout):
                result = await call(self._redis())
        except TimeoutError as exc:  # our bound: slow (a loaded machine) or stalled
            self._slow_replies += 1
            self.slow_replies += 1
            if probing or self._slow_replies >= SLOW_REPLIES_FOR_OUTAGE:
                self._went_down(exc)
            return False, None
        except _UNAVAILABLE as exc:
            self._went_down(exc)
            return False, None
        finally:
            if probing:
                self._probing = False
        self._slow_replies = 0
        self._came_back()
        return True, result

    def _fallback(self) -> bool:
        self.fallback_answers += 1
        return False

    # --- the blacklist -------------------------------------------------------------------------

    def _key(self, kind: str, ident: str) -> str:
        return f"{self._prefix}{kind}:{ident}"

    async def _write(self, kind: str, ident: str, ttl_ms: int, nx: bool) -> bool | None:
        """SET the entry and PUBLISH it to the other workers (one round trip, bounded): whether
        the key was created, or ``None`` when Redis is down (the next sync writes it)."""

        async def call(client: Any) -> bool:
            pipe = client.pipeline(transaction=False)
            pipe.set(self._key(kind, ident), b"1", px=ttl_ms, nx=nx)
            pipe.publish(self._channel, f"{kind}:{ttl_ms}:{ident}")
            created, _ = await pipe.execute()
            return bool(created)

        ok, created = await self._run(call) if self._usable() else (False, None)
        if not ok:
            self._needs_sync = True
            return None
        return bool(created)

    async def add(self, jti: str, ttl_seconds: float) -> bool:
        """Revoke ``jti`` in Redis (set-if-absent) and the replica; during an outage in the
        replica only (written to Redis when it returns)."""
        self._ensure_listener()
        ttl = _ttl(ttl_seconds)
        created = await self._write("jti", jti, ttl * 1000, nx=True)
        if created is None:
            return await self._replica.add(jti, ttl)
        self._replica.remember("jti", jti, ttl)
        return created

    async def revoke_family(self, family: str, ttl_seconds: float) -> None:
        """Revoke ``family`` in Redis and the replica (the replica only during an outage)."""
        self._ensure_listener()
        ttl = _ttl(ttl_seconds)
        await self._write("fam", family, ttl * 1000, nx=False)
        self._replica.remember("fam", family, ttl)

    async def is_revoked(self, jti: str | None, family: str | None = None) -> bool:
        """True when the replica or Redis holds ``jti`` or ``family``; with Redis down (or
        slower than the timeout), the replica's answer."""
        self._ensure_listener()
        if self._replica.is_revoked_nowait(jti, family):
            return True
        keys = []
        if jti is not None:
            keys.append(self._key("jti", jti))
        if family is not None:
            keys.append(self._key("fam", family))
        if not keys:
            return False
        if not self._usable():
            return self._fallback()
        ok, found = await self._run(lambda client: client.exists(*keys))
        if not ok:
            return self._fallback()
        return int(found or 0) > 0

    async def close(self) -> None:
        self._closed = True
        listener = self._listener
        self._listener = None
        running = asyncio.get_running_loop()
        if listener is not None and self._listener_loop is running:
            await cancel_and_wait(listener, 2.0, what="revocation replica listener")
        await self._clients.aclose()

    # --- the replica -----------------------------------------------------------------------

    def _ensure_listener(self) -> None:
        """Start the replica's listener on the running loop (once per loop)."""
        if not self._replicate or self._closed:
            return
        loop = asyncio.get_running_loop()
        task = self._listener
        if task is not None and self._listener_loop is loop and not task.done():
            return
        self._listener_loop = loop
        self._listener = loop.create_task(self._listen(), name="crown_nexus.revocation_replica")

    def _apply(self, data: Any) -> None:
        """One pub/sub message ``<kind>:<ttl ms>:<id>`` into the replica (malformed: ignored)."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else str(data)
        kind, _, rest = text.partition(":")
        ttl_ms, _, ident = rest.partition(":")
        if kind in ("jti", "fam") and ident and ttl_ms.isdigit():
            self._replica.remember(kind, ident, int(ttl_ms) / 1000)

    async def sync(self) -> None:
        """Merge Redis and the replica both ways: every key in Redis into the replica (``SCAN``
        and ``PTTL``), then every live replica entry Redis lacks back into Redis (revoked during
        an outage, or lost by a restarted Redis) and announced. Raises when Redis fails."""
        client = self._redis()
        seen: set[str] = set()
        cursor: Any = 0
        # the prefix matched literally (glob characters escaped), then anything
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self._prefix) + "*"
        skip = len(self._prefix)
        while True:
            async with asyncio.timeout(self._bg_timeout):
                cursor, keys = await client.scan(cursor, match=pattern, count=_SCAN_COUNT)
                names = [k.decode() if isinstance(k, bytes) else str(k) for k in keys]
                names = [n for n in names if n[skip:].startswith(("jti:", "fam:"))]
                pipe = client.pipeline(transaction=False)
                for name in names:
                    pipe.pttl(name)
                ttls = await pipe.execute() if names else []
            for name, pttl in zip(names, ttls, strict=True):
                if pttl == -2:
                    continue  # expired meanwhile
                kind, _, ident = name[skip:].partition(":")
                self._replica.remember(kind, ident, pttl / 1000 if pttl >= 0 else _NO_TTL_SECONDS)
                seen.add(name)
            if int(cursor) == 0:
                break
        missing = [
            (kind, ident, left)
            for kind, ident, left in self._replica.live_entries()
            if self._key(kind, ident) not in seen
        ]
        for start in range(0, len(missing), _SCAN_COUNT):
            pipe = client.pipeline(transaction=False)
            for kind, ident, left in missing[start : start + _SCAN_COUNT]:
                ttl_ms = max(1, int(left * 1000))
                pipe.set(self._key(kind, ident), b"1", px=ttl_ms, nx=True)
                pipe.publish(self._channel, f"{kind}:{ttl_ms}:{ident}")
            async with asyncio.timeout(self._bg_timeout):
                await pipe.execute()
        self._needs_sync = False

    async def _listen(self) -> None:
        """Keep the replica current: subscribe, sync, apply messages; reconnect on failure."""
        backoff = 0.05
        tick = min(1.0, self._sync_interval)
        while True:
            pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self._bg_timeout):
                    await pubsub.subscribe(self._channel)
                await self.sync()
                self._came_back(synced=True)
                last_sync = self._clock()
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=tick)
                    if message is not None and message.get("type") == "message":
                        self._apply(message.get("data"))
                    if self._needs_sync or self._clock() - last_sync >= self._sync_interval:
                        try:
                            await self.sync()
                            self._came_back(synced=True)
                            last_sync = self._clock()
                        except TimeoutError:
                            self._needs_sync = True  # slow, not gone: the next tick tries again
                        except _UNAVAILABLE as exc:
                            self._went_down(exc)
            except TimeoutError:
                # slow (a loaded machine), not gone: requests find a stalled Redis themselves
                self._needs_sync = True
            except _UNAVAILABLE as exc:
                self._needs_sync = True
                self._went_down(exc)
            finally:
                try:
                    async with asyncio.timeout(self._bg_timeout):
                        await pubsub.aclose()
                except Exception:  # noqa: S110 - a dead connection: nothing left to close
                    pass
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._retry_interval)
