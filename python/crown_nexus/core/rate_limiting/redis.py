"""Redis rate-limit backend: one atomic round trip per check.

Each algorithm is a Lua script (``lua/*.lua``, shipped as package data) loaded once with
``SCRIPT LOAD`` and run with ``EVALSHA``; a ``NOSCRIPT`` reply (server restarted or flushed)
reloads it and retries once. Scripts read the server's clock (``TIME``), so every process and
host shares one clock, and every key is written with an expiry (``SET ... PX`` / ``PEXPIRE``)
so idle clients vanish on their own. The arithmetic is exactly that of
``crown_nexus._pure.rate_window`` (integer microseconds), which the tests check.

The client is redis-py asyncio (hiredis parser when installed), imported only here.
redis-py's per-command socket timeout costs a third of a ``GET`` (a timer per read), so it is
switched off; instead one watchdog timer per backend runs only while checks are in flight and
cancels any check older than ``timeout`` (:class:`_Deadlines`). Connecting is bounded by
``socket_connect_timeout``; waiting for a free connection slot by the same watchdog.

The hot path skips redis-py's client and pool layers (pool lock, retry wrapper, observability
hooks, argument packing): it keeps its own idle list of redis-py connections (built from the
client pool's connection class and settings, so TLS, AUTH and database selection are redis-py's)
and writes a pre-encoded ``EVALSHA`` (RESP bytes cached per rule; only the key is added per
call), then reads the reply with redis-py's hiredis parser. Other calls use the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from importlib import resources
from typing import Any

from crown_nexus.core._redis import missing_redis_extra, open_redis
from crown_nexus.core.rate_limiting.base import (
    RateLimitBackend,
    RateLimitBackendError,
    check_cost,
)
from crown_nexus.core.rate_limiting.models import (
    RateLimitAlgorithm,
    RateLimitResult,
    RateLimitRule,
)
from crown_nexus.core.tracing import SpanKind, end_span, start_span, tracing_enabled

try:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, ResponseError
except ImportError as exc:  # tested with redis-py hidden (tests/core/test_redis_factory.py)
    raise missing_redis_extra("the Redis rate-limit backend") from exc

__all__ = ["RedisRateLimitBackend", "load_script"]

_SCRIPT_FILES = {
    RateLimitAlgorithm.SLIDING_WINDOW: "sliding_window.lua",
    RateLimitAlgorithm.SLIDING_LOG: "sliding_log.lua",
    RateLimitAlgorithm.TOKEN_BUCKET: "token_bucket.lua",
}
_TOKEN_BUCKET = RateLimitAlgorithm.TOKEN_BUCKET
#: connections beyond ``max_connections`` for calls outside the semaphore (none today)
_SPARE_CONNECTIONS = 4
#: at most this many rules keep a cached pre-encoded EVALSHA (rules are few; this bounds memory
#: should an application build rules from unbounded input)
_MAX_PACKS = 1024
_monotonic = time.monotonic
_current_task = asyncio.current_task
_get_running_loop = asyncio.get_running_loop


def _drop(conn: Any) -> None:
    """Abandon a connection in an unknown state: abort its socket without awaiting (redis-py
    has usually disconnected it already; on a closed event loop nothing more can be done)."""
    writer = getattr(conn, "_writer", None)
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.transport.abort()


def load_script(algorithm: RateLimitAlgorithm) -> str:
    """Return the Lua source of the script for ``algorithm``."""
    name = _SCRIPT_FILES[RateLimitAlgorithm(algorithm)]
    return (
        resources.files("crown_nexus.core.rate_limiting")
        .joinpath("lua")
        .joinpath(name)
        .read_text(encoding="utf-8")
    )


class _Deadlines:
    """Bounds in-flight calls without a timer per call.

    ``enter`` records the calling task's deadline; one sweep timer (every ``timeout / 4``) runs
    only while calls are in flight and cancels tasks past their deadline, remembering them in
    ``expired`` so the caller can tell its own timeout from an outside cancellation.
    """

    __slots__ = ("_handle", "_interval", "_loop", "expired", "inflight", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._interval = timeout / 4
        self.inflight: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self) -> asyncio.Task[Any] | None:
        """Record the current task's deadline (the caller pops it when done); return the task."""
        task = _current_task()
        if task is None:  # not inside a task: nothing to cancel, run unbounded
            return None
        self.inflight[task] = _monotonic() + self.timeout
        if self._handle is None or self._loop is not task.get_loop():
            self._loop = loop = task.get_loop()
            self._handle = loop.call_later(self._interval, self._sweep)
        return task

    def _sweep(self) -> None:
        self._handle = None
        loop = self._loop
        now = _monotonic()
        for task, deadline in list(self.inflight.items()):
            if task.get_loop() is not loop or task.done():
                del self.inflight[task]
            elif deadline <= now:
                del self.inflight[task]
                self.expired.add(task)
                task.cancel()
        if self.inflight and loop is not None and not loop.is_closed():
            self._handle = loop.call_later(self._interval, self._sweep)


class _Slots:
    """At most ``size`` concurrent calls; the uncontended path is two integer updates.

    (``asyncio.Semaphore`` costs three coroutines per call; this matters on a ~40 us check.)
    """

    __slots__ = ("busy", "size", "waiters")

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def wait(self) -> None:
        """Wait until a slot is free (only called when all are busy), then take it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # we were handed a slot we will not use
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)
            raise

    def release(self) -> None:
        """Free a slot, handing it straight to the oldest waiter if there is one."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to the waiter: busy unchanged
                return
        self.busy -= 1


class RedisRateLimitBackend(RateLimitBackend):
    """Rate limits kept in Redis, shared by every process that uses the same server.

    Give either ``url`` (a client is created and owned) or an existing redis-py asyncio
    ``client`` (not closed by :meth:`close`). ``timeout`` bounds each check in seconds; a check
    that fails or times out raises :class:`RateLimitBackendError`. ``max_connections`` bounds
    concurrent calls and so the pool; more concurrent checks wait their turn (within the
    timeout).
    """

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any | None = None,
        prefix: str = "crown_nexus:rl:",
        timeout: float = 1.0,
        max_connections: int = 64,
    ) -> None:
        if client is None and url is None:
            raise ValueError("RedisRateLimitBackend needs a url or a client")
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        self._owns_client = client is None
        if client is None:
            client = open_redis(
                url,  # type: ignore[arg-type]
                what="the Redis rate-limit backend",
                connect_timeout=timeout,
                socket_timeout=None,  # the _Deadlines watchdog bounds each check
                retries=1,
                max_connections=max_connections + _SPARE_CONNECTIONS,
            )
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        # bounds concurrent calls (and so connections); cheaper than a blocking pool's
        # condition variable, and a waiting check is still under the watchdog deadline
        self._slots = _Slots(max_connections)
        self._client = client
        self._prefix = prefix
        self._deadlines = _Deadlines(float(timeout))
        self._sources = {algo: load_script(algo) for algo in _SCRIPT_FILES}
        self._shas: dict[RateLimitAlgorithm, str] = {}
        #: per rule signature: (sha, RESP head, RESP tail) of the unit-cost EVALSHA
        self._packs: dict[str, tuple[str, bytes, bytes]] = {}
        #: idle connections for the hot path (redis-py connections, used one call at a time)
        self._idle: list[Any] = []
        self._conn_loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> Any:
        """The redis-py asyncio client in use."""
        return self._client

    @property
    def timeout(self) -> float:
        """Seconds after which a check is abandoned."""
        return self._deadlines.timeout

    def storage_key(self, key: str, rule: RateLimitRule) -> str:
        """The Redis key holding ``key``'s state under ``rule``."""
        return f"{self._prefix}{rule.signature}:{key}"

    async def _load(self, algo: RateLimitAlgorithm) -> str:
        sha = await self._client.script_load(self._sources[algo])
        if isinstance(sha, bytes):
            sha = sha.decode()
        self._shas[algo] = sha
        return str(sha)

    async def _bounded(self, coro: Any) -> Any:
        """Await ``coro`` within the timeout; map failures to :class:`RateLimitBackendError`."""
        deadlines = self._deadlines
        task = deadlines.enter()
        slots = self._slots
        taken = False
        try:
            if slots.busy >= slots.size:
                await slots.wait()
            else:
                slots.busy += 1
            taken = True
            return await coro
        except asyncio.CancelledError:
            if task is not None and task in deadlines.expired:
                deadlines.expired.discard(task)
                task.uncancel()
                raise RateLimitBackendError(
                    f"Redis did not answer within {deadlines.timeout} s"
                ) from None
            raise
        except Exception as exc:  # RedisError, OSError, a client bound to a closed loop, ...
            raise RateLimitBackendError(f"Redis call failed: {type(exc).__name__}") from exc
        finally:
            if taken:
                slots.release()
            else:
                coro.close()
            if task is not None:
                deadlines.inflight.pop(task, None)

    async def _evalsha(self, algo: RateLimitAlgorithm, rkey: str, args: tuple[Any, ...]) -> Any:
        execute = self._client.execute_command
        sha = self._shas.get(algo)
        if sha is None:
            sha = await self._load(algo)
        try:
            return await execute("EVALSHA", sha, 1, rkey, *args)
        except NoScriptError:
            sha = await self._load(algo)
            return await execute("EVALSHA", sha, 1, rkey, *args)

    # ------------------------------------------------------------------ hot path
    def _packed(self, algo: RateLimitAlgorithm, sha: str, rule: RateLimitRule, cost: int) -> tuple[bytes, bytes]:
        """The RESP bytes of ``EVALSHA sha 1`` (head) and of the rule's arguments (tail).

        Cached per rule signature for unit-cost checks; the key goes in between per call.
        """
        _, limit, window_us, capacity, signature, _, _ = rule.hot_params
        args: tuple[int, ...] = (limit, window_us, cost)
        if algo is _TOKEN_BUCKET:
            args += (capacity,)
        shab = sha.encode()
        head = b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$1\r\n1\r\n" % (
            4 + len(args), len(shab), shab,
        )
        tail = b"".join(b"$%d\r\n%d\r\n" % (len(b"%d" % a), a) for a in args)
        if cost == 1 and (signature in self._packs or len(self._packs) < _MAX_PACKS):
            self._packs[signature] = (sha, head, tail)
        return head, tail

    def _take_connection(self) -> tuple[Any, bool]:
        """An idle connection of this event loop (``reused=True``) or a new, unconnected one."""
        loop = _get_running_loop()
        if loop is not self._conn_loop:  # connections are bound to the loop that opened them
            self._idle = []
            self._conn_loop = loop
        idle = self._idle
        if idle:
            return idle.pop(), True
        return self._new_connection(), False

    def _new_connection(self) -> Any:
        pool = self._client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        kwargs["socket_timeout"] = None  # bounded by the watchdog instead (see module docs)
        kwargs["retry"] = Retry(NoBackoff(), 0)
        return pool.connection_class(**kwargs)

    async def _roundtrip(self, packed: bytes) -> Any:
        """Send ``packed`` on an idle connection and read the reply (one round trip).

        A reused connection found dead (server restarted, socket closed) is replaced and the
        command sent once more, as redis-py's own one-retry policy would; any other failure
        drops the connection and propagates.
        """
        conn, reused = self._take_connection()
        while True:
            try:
                await conn.send_packed_command(packed, False)
                reply = await conn.read_response()
            except ResponseError:  # a script error or NOSCRIPT: the connection is fine
                self._idle.append(conn)
                raise
            except (RedisConnectionError, OSError, RuntimeError):
                _drop(conn)
                if not reused:
                    raise
                conn, reused = self._new_connection(), False
                continue
            except BaseException:
                _drop(conn)
                raise
            self._idle.append(conn)
            return reply

    async def hit(self, key: str, rule: RateLimitRule, cost: int = 1) -> RateLimitResult:
        """Run the rule's script once for ``key`` (one round trip, atomic on the server).

        With tracing on the call is a ``CLIENT`` span ``rate_limit.redis`` (tracer
        ``crown_nexus.rate_limiting``; the key is not recorded).
        """
        if not tracing_enabled():
            return await self._hit(key, rule, cost)
        sp = start_span(
            "rate_limit.redis",
            tracer="crown_nexus.rate_limiting",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system.name": "redis",
                "db.operation.name": "EVALSHA",
                "crown_nexus.rate_limit.algorithm": str(rule.hot_params[0]),
            },
        )
        try:
            result = await self._hit(key, rule, cost)
        except BaseException as exc:
            end_span(sp, exc)
            raise
        if sp is not None:
            sp.set_attribute("crown_nexus.rate_limit.allowed", result.allowed)
            sp.end()
        return result

    async def _hit(self, key: str, rule: RateLimitRule, cost: int = 1) -> RateLimitResult:
        """:meth:`hit` without tracing.

        The hot path writes the pre-encoded ``EVALSHA`` straight onto a pooled redis-py
        connection and reads the reply: no per-call argument packing, pool lock or timeout
        context (the watchdog bounds the call).
        """
        algo, limit, window_us, capacity, signature, policy_name, window = rule.hot_params
        if cost != 1:
            check_cost(rule, cost)
        sha = self._shas.get(algo)
        if sha is None:
            if algo is _TOKEN_BUCKET:
                args: tuple[Any, ...] = (limit, window_us, cost, capacity)
            else:
                args = (limit, window_us, cost)
            rkey = f"{self._prefix}{signature}:{key}"
            reply = await self._bounded(self._evalsha(algo, rkey, args))
        else:
            packs = self._packs.get(signature) if cost == 1 else None
            if packs is not None and packs[0] is sha:
                head, tail = packs[1], packs[2]
            else:
                head, tail = self._packed(algo, sha, rule, cost)
            deadlines = self._deadlines
            task = deadlines.enter()
            slots = self._slots
            taken = False
            try:
                if slots.busy >= slots.size:
                    await slots.wait()
                else:
                    slots.busy += 1
                taken = True
                kb = (self._prefix + signature + ":" + key).encode()
                reply = await self._roundtrip(b"%s$%d\r\n%s\r\n%s" % (head, len(kb), kb, tail))
            except NoScriptError:
                slots.release()
                taken = False
                rkey = f"{self._prefix}{signature}:{key}"
                args = (limit, window_us, cost, capacity) if algo is _TOKEN_BUCKET else (
                    limit, window_us, cost)
                reply = await self._bounded(self._evalsha(algo, rkey, args))
            except asyncio.CancelledError:
                if task is not None and task in deadlines.expired:
                    deadlines.expired.discard(task)
                    task.uncancel()
                    raise RateLimitBackendError(
                        f"Redis did not answer within {deadlines.timeout} s"
                    ) from None
                raise
            except Exception as exc:  # RedisError, OSError, a client bound to a closed loop, ...
                raise RateLimitBackendError(f"Redis call failed: {type(exc).__name__}") from exc
            finally:
                if taken:
                    slots.release()
                if task is not None:
                    deadlines.inflight.pop(task, None)
        allowed, count, reset_us = reply
        reset = reset_us / 1e6
        remaining = capacity - count if capacity > count else 0
        if allowed == 1:
            return RateLimitResult(True, capacity, count, remaining, reset, 0.0, window, policy_name)
        return RateLimitResult(False, capacity, count, remaining, reset, reset, window, policy_name)

    async def reset(self, key: str, rule: RateLimitRule) -> None:
        """Delete ``key``'s state under ``rule``."""
        await self._bounded(self._client.delete(self.storage_key(key, rule)))

    async def ping(self) -> bool:
        """True when the server answers ``PING`` within the timeout."""
        try:
            return bool(await self._bounded(self._client.ping()))
        except RateLimitBackendError:
            return False

    async def close(self) -> None:
        """Close the client (and its pool) when this backend created it."""
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.disconnect()
        if self._owns_client:
            await self._client.aclose(close_connection_pool=True)
