"""The rate limiting service (guide §8 "Using the Rate Limiting Service").

:class:`RateLimitingService` turns a request into a client key (:meth:`get_key_for_request`),
checks keys against rules on a backend (:meth:`check`, :meth:`is_rate_limited`) and applies the
failure policy when the backend is down: fail open (default) counts on per-process memory limits
until Redis answers again; fail closed raises :class:`RateLimiterUnavailableException` (503).
Either way the outage is logged once, counted, and Redis is tried again every
``recheck_interval`` seconds.

``get_rate_limiting_service()`` returns the application's instance, registered with the
dependency manager as ``"rate_limiting_service"``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any, Protocol

from crown_nexus.core.dependency_manager import get_service, register_service
from crown_nexus.core.rate_limiting import _metrics
from crown_nexus.core.rate_limiting.base import RateLimitBackend, RateLimitBackendError
from crown_nexus.core.rate_limiting.exceptions import RateLimiterUnavailableException
from crown_nexus.core.rate_limiting.memory import MemoryRateLimitBackend
from crown_nexus.core.rate_limiting.models import (
    RateLimitResult,
    RateLimitRule,
    RateLimitStrategy,
)
from crown_nexus.logging import get_current_user_id, get_logger
from crown_nexus.settings import Settings

__all__ = [
    "MemoryChecker",
    "RateLimitingService",
    "TrustedProxies",
    "client_ip_from_scope",
    "client_network",
    "create_rate_limiting_service",
    "get_rate_limiting_service",
    "user_id_from_scope",
]

logger = get_logger("crown_nexus.core.rate_limiting")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_perf_counter = time.perf_counter
_tally_noted = _metrics.tally_noted
_FLUSH_EVERY = _metrics.FLUSH_EVERY
_UNKNOWN_CLIENT = "unknown"
#: (address, prefix) -> network string; bounded, cleared when full (addresses are attacker-chosen)
_NETWORK_CACHE: dict[tuple[str, int], str] = {}
_NETWORK_CACHE_MAX = 4096


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed: addresses or CIDR networks."""

    __slots__ = ("_networks",)

    def __init__(self, proxies: Iterable[str] = ()) -> None:
        networks: list[_Network] = []
        for item in proxies:
            text = str(item).strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"trusted proxy {text!r} is not an IP address or network") from None
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        """True when ``address`` (a textual IP) belongs to a trusted proxy."""
        if not self._networks:
            return False
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        return any(ip in net for net in self._networks)


def _header(scope: Mapping[str, Any], name: bytes) -> list[str]:
    values: list[str] = []
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            values.append(value.decode("latin-1"))
    return values


def _valid_ip(text: str) -> str | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[v6]:port"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "v4:port"
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_ip_from_scope(scope: Mapping[str, Any], trusted: TrustedProxies) -> str:
    """The client's IP address for an ASGI ``scope``.

    The socket peer is the client unless it is a trusted proxy; then ``X-Forwarded-For`` is read
    from the right, skipping trusted proxies, and the first untrusted address is the client.
    A forged or malformed entry stops the walk at the last address that is known good, so a
    client can never choose its own key by sending the header.
    """
    client = scope.get("client")
    peer = str(client[0]) if client else None
    if peer is None:
        return _UNKNOWN_CLIENT
    if not trusted or not trusted.trusts(peer):
        return peer
    hops: list[str] = []
    for value in _header(scope, b"x-forwarded-for"):
        hops.extend(part for part in value.split(","))
    current = peer
    for raw in reversed(hops):
        ip = _valid_ip(raw)
        if ip is None:
            break
        current = ip
        if not trusted.trusts(ip):
            break
    return current


def client_network(ip: str, ipv6_prefix: int = 64) -> str:
    """The network a client address is counted under: the normalised key text for ``ip``.

    IPv4 addresses count one by one (``"203.0.113.7"``). An IPv6 address counts under its
    ``/ipv6_prefix`` network (``"2001:db8:1:2::/64"`` for any address of that /64), because one
    subscriber or host usually holds a whole /64 and could otherwise rotate through addresses to
    escape every limit; ``ipv6_prefix=128`` keeps the bare address. An IPv4-mapped IPv6 address
    (``"::ffff:203.0.113.7"``) is the IPv4 address it maps. Text that is not an IP address (e.g.
    ``"unknown"``) is returned unchanged.
    """
    if ":" not in ip:
        return ip
    cache_key = (ip, ipv6_prefix)
    cached = _NETWORK_CACHE.get(cache_key)
    if cached is not None:
        return cached
    try:
        addr = ipaddress.IPv6Address(ip.split("%", 1)[0])  # a zone id does not name a network
    except ValueError:
        return ip
    mapped = addr.ipv4_mapped
    if mapped is not None:
        network = str(mapped)
    elif ipv6_prefix >= 128:
        network = str(addr)
    else:
        network = str(ipaddress.IPv6Network((addr, ipv6_prefix), strict=False))
    if len(_NETWORK_CACHE) >= _NETWORK_CACHE_MAX:
        _NETWORK_CACHE.clear()
    _NETWORK_CACHE[cache_key] = network
    return network


def user_id_from_scope(scope: Mapping[str, Any], *, use_context: bool = True) -> str | None:
    """The authenticated user's id for an ASGI ``scope``, or ``None`` for anonymous requests.

    Looked up in order: ``request.state.user_id``, ``request.state.user`` (``.id`` or ``["id"]``),
    Starlette's ``scope["user"]`` when authenticated, then (``use_context``) the request context
    (``crown_nexus.logging.get_current_user_id()``).
    """
    state = scope.get("state")
    if isinstance(state, Mapping):
        uid = state.get("user_id")
        if uid:
            return str(uid)
        user = state.get("user")
        if user is not None:
            uid = user.get("id") if isinstance(user, Mapping) else getattr(user, "id", None)
            if uid:
                return str(uid)
    user = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        uid = getattr(user, "id", None) or getattr(user, "identity", None)
        if uid:
            return str(uid)
    return (get_current_user_id() or None) if use_context else None


class MemoryChecker(Protocol):
    """The memory backend's synchronous unit check of one rule (:meth:`RateLimitingService.memory_checker`)."""

    def __call__(self, key: str) -> tuple[bool, int, float] | None:
        """The window's ``(allowed, count, reset_after)``, or ``None`` (the service must check)."""
        ...

    def guide(self, key: str) -> tuple[bool, int, int] | None:
        """The guide's ``(is_limited, count, reset_seconds)``, or ``None`` (as ``__call__``)."""
        ...


class RateLimitingService:
    """Checks rate limits on a backend and applies the failure policy.

    ``backend`` defaults to an in-process :class:`MemoryRateLimitBackend`. ``fail_open``
    (default ``settings.rate_limit_fail_open``) decides what happens when the backend cannot
    answer: ``True`` checks against ``fallback`` (per-process memory limits), ``False`` raises
    :class:`RateLimiterUnavailableException`. ``trusted_proxies`` defaults to
    ``settings.trusted_proxies``. ``ipv6_prefix`` (default ``settings.rate_limit_ipv6_prefix``,
    64) is the IPv6 network size clients are counted by (see :func:`client_network`).
    """

    def __init__(
        self,
        backend: RateLimitBackend | None = None,
        *,
        settings: Settings | None = None,
        fail_open: bool | None = None,
        fallback: RateLimitBackend | None = None,
        trusted_proxies: Iterable[str] | None = None,
        ipv6_prefix: int | None = None,
        recheck_interval: float = 1.0,
        clock: Any = time.monotonic,
    ) -> None:
        if settings is None:
            from crown_nexus.core.config import settings as loaded

            settings = loaded
        self.settings = settings
        self.backend: RateLimitBackend = backend or MemoryRateLimitBackend()
        self.fallback: RateLimitBackend = fallback or (
            self.backend
            if isinstance(self.backend, MemoryRateLimitBackend)
            else MemoryRateLimitBackend()
        )
        self.fail_open = settings.rate_limit_fail_open if fail_open is None else bool(fail_open)
        self.trusted_proxies = TrustedProxies(
            settings.trusted_proxies if trusted_proxies is None else trusted_proxies
        )
        prefix = settings.rate_limit_ipv6_prefix if ipv6_prefix is None else int(ipv6_prefix)
        if not 1 <= prefix <= 128:
            raise ValueError(f"ipv6_prefix must be between 1 and 128, got {prefix}")
        self.ipv6_prefix = prefix
        self.recheck_interval = float(recheck_interval)
        self._clock = clock
        self._down_until = 0.0
        self._degraded = False
        #: ``[n]``: position in the duration sampling (the first check, then one in
        #: ``DURATION_SAMPLE_EVERY`` is timed), shared with the checkers of :meth:`memory_checker`
        self._sample = [0]
        self._backend_name = self.backend.name
        #: per rule signature: the metrics tally cell of allowed checks
        self._cells: dict[str, list[int]] = {}
        #: the memory backend's synchronous check (it never waits and is never down)
        self._memory_hit = (
            self.backend.hit_now
            if type(self.backend) is MemoryRateLimitBackend and self.fallback is self.backend
            else None
        )

    # ------------------------------------------------------------------ keys
    def client_ip(self, request: Any) -> str:
        """The client's IP for a Starlette ``Request`` (trusted proxies honoured)."""
        return client_ip_from_scope(request.scope, self.trusted_proxies)

    def network_for_scope(self, scope: Mapping[str, Any]) -> str:
        """The network the client of ``scope`` is counted under: its IPv4 address or its IPv6
        ``/ipv6_prefix`` network (trusted proxies honoured; see :func:`client_network`)."""
        return client_network(client_ip_from_scope(scope, self.trusted_proxies), self.ipv6_prefix)

    def key_for_scope(self, scope: Mapping[str, Any], rule: RateLimitRule) -> str:
        """The client key for an ASGI ``scope`` under ``rule`` (see :meth:`get_key_for_request`)."""
        ip = client_ip_from_scope(scope, self.trusted_proxies)
        if ":" in ip:  # IPv6: counted by network (IPv4 addresses are their own key)
            ip = client_network(ip, self.ipv6_prefix)
        scope_name = rule.name or rule.path_pattern or "global"
        strategy = rule.strategy
        if strategy is RateLimitStrategy.IP:
            return f"{scope_name}|ip:{ip}"
        uid = user_id_from_scope(scope)
        if uid is None:
            return f"{scope_name}|ip:{ip}"
        if strategy is RateLimitStrategy.USER:
            return f"{scope_name}|user:{uid}"
        return f"{scope_name}|user:{uid}|ip:{ip}"

    def get_key_for_request(self, request: Any, rule: RateLimitRule) -> str:
        """The key identifying this request's client under ``rule``.

        ``IP``: the client IP (``X-Forwarded-For`` believed only from ``trusted_proxies``); an
        IPv6 client is keyed by its ``/ipv6_prefix`` network, an IPv4 client by its address.
        ``USER``: the authenticated user id (see :func:`user_id_from_scope`), else the IP, so
        anonymous clients are still limited. ``COMBINED``: user id and IP together. The key is
        scoped by the rule's ``name`` or ``path_pattern`` so path rules count separately.
        """
        return self.key_for_scope(request.scope, rule)

    # ------------------------------------------------------------------ checks
    @property
    def degraded(self) -> bool:
        """True while the backend is considered down (checks use the failure policy)."""
        return self._degraded

    async def check(self, key: str, rule: RateLimitRule, cost: int = 1) -> RateLimitResult:
        """Count ``cost`` requests for ``key`` under ``rule``; return the full result.

        Never raises for a backend outage when failing open; raises
        :class:`RateLimiterUnavailableException` when failing closed. Raises ``TypeError`` /
        ``ValueError`` for a key that is not a string or a cost outside ``1..rule.burst``.
        """
        if type(key) is not str and not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        # durations are sampled (the first check, then 1 in DURATION_SAMPLE_EVERY): reading the
        # clock twice and observing a histogram would cost more than a memory check
        sample = self._sample
        n = sample[0] + 1
        sample[0] = n if n < _metrics.DURATION_SAMPLE_EVERY else 0
        n -= 1
        memory_hit = self._memory_hit
        if memory_hit is not None and n:
            # in-process backend: a synchronous call, never down, nothing to await
            result = memory_hit(key, rule, cost)
            if result.allowed:  # the common case: one tally bump, no metrics call
                cell = self._cells.get(rule.hot_params[4])
                if cell is None:
                    cell = self._cell(rule)
                c = cell[0] + 1
                cell[0] = c
                if c == 1 or c >= _FLUSH_EVERY:
                    _tally_noted(c)
                return result
            _metrics.record_check(rule, result, None, self._backend_name)
            return result
        backend = self.backend
        started = _perf_counter() if n == 0 else 0.0
        if not self._degraded or backend is self.fallback:
            try:
                result = await backend.hit(key, rule, cost)
            except RateLimitBackendError as exc:
                result = await self._backend_down(key, rule, cost, exc)
            else:
                if n and result.allowed:  # the common case: one tally bump, no metrics call
                    cell = self._cells.get(rule.hot_params[4])
                    if cell is None:
                        cell = self._cell(rule)
                    c = cell[0] + 1
                    cell[0] = c
                    if c == 1 or c >= _FLUSH_EVERY:
                        _tally_noted(c)
                    return result
        elif self._clock() >= self._down_until:
            try:
                result = await backend.hit(key, rule, cost)
            except RateLimitBackendError as exc:
                result = await self._backend_down(key, rule, cost, exc)
            else:
                self._degraded = False
                logger.info("rate limit backend recovered", backend=backend.name)
                _metrics.backend_recovered(backend.name)
        else:
            result = await self._degraded_check(key, rule, cost)
        _metrics.record_check(
            rule, result, (_perf_counter() - started) if n == 0 else None, backend.name
        )
        return result

    def memory_checker(self, rule: RateLimitRule) -> MemoryChecker | None:
        """A synchronous unit check of ``rule`` for the in-process backend, or ``None``.

        The returned ``checker(key)`` (a ``rate_window.UnitCheck`` of the backend's
        implementation) counts one request exactly as :meth:`check` would (same window, same
        metrics: the allowed tally, refusals written at once) and returns the window's
        ``(allowed, count, reset_after)``; ``checker.guide(key)`` returns the guide's
        ``(is_limited, count, reset_seconds)`` instead (:func:`check_rate_limit`). The one check
        in :data:`_metrics.DURATION_SAMPLE_EVERY` whose duration is observed is timed by the
        checker itself (``rate_limiting_check_duration_seconds``, as :meth:`check` observes
        it). Both return ``None`` -- counting nothing -- for a key that is not exactly a
        ``str``: ``await check(key, rule)`` then says what is wrong. ``None`` (no checker) when
        the backend is not the memory backend. Build it once per rule and keep it: it binds
        the rule's window and metrics cell.
        """
        if self._memory_hit is None:
            return None
        backend = self.backend
        assert isinstance(backend, MemoryRateLimitBackend)
        _, _, _, capacity, signature, policy_name, window_seconds = rule.hot_params
        cell = self._cells.get(signature) or self._cell(rule)
        record_check = _metrics.record_check
        backend_name = self._backend_name

        def refused(count: int, reset: float) -> None:
            result = RateLimitResult(
                False, capacity, count, capacity - count if capacity > count else 0, reset,
                reset, window_seconds, policy_name,
            )
            record_check(rule, result, None, backend_name)

        return backend.implementation.UnitCheck(  # type: ignore[no-any-return]
            backend.window(rule),
            backend.clock,
            backend.sweep,
            backend.sweep_due,
            self._sample,
            _metrics.DURATION_SAMPLE_EVERY,
            cell,
            _FLUSH_EVERY,
            _tally_noted,
            refused,
            partial(_metrics.observe_check_duration, backend_name),
        )

    def _cell(self, rule: RateLimitRule) -> list[int]:
        """The metrics tally cell of allowed checks for ``rule``'s algorithm on the backend."""
        algo, _, _, _, signature, _, _ = rule.hot_params
        cell = _metrics.tally_cell(self._backend_name, algo.value)
        if len(self._cells) < 1024:
            self._cells[signature] = cell
        return cell

    async def _backend_down(
        self, key: str, rule: RateLimitRule, cost: int, exc: BaseException
    ) -> RateLimitResult:
        self._down_until = self._clock() + self.recheck_interval
        if not self._degraded:
            self._degraded = True
            logger.warning(
                "rate limit backend unavailable",
                backend=self.backend.name,
                error=str(exc),
                policy="fail_open" if self.fail_open else "fail_closed",
            )
        _metrics.backend_error(self.backend.name)
        return await self._degraded_check(key, rule, cost)

    async def _degraded_check(self, key: str, rule: RateLimitRule, cost: int) -> RateLimitResult:
        if not self.fail_open:
            raise RateLimiterUnavailableException()
        return await self.fallback.hit(key, rule, cost)

    async def is_rate_limited(self, key: str, rule: RateLimitRule) -> tuple[bool, int, int]:
        """Count one request for ``key``; return ``(is_limited, count, limit)`` (guide §8)."""
        result = await self.check(key, rule)
        return (not result.allowed, result.count, result.limit)

    async def reset(self, key: str, rule: RateLimitRule) -> None:
        """Forget what was counted for ``key`` under ``rule`` (backend and fallback)."""
        if self.fallback is not self.backend:
            await self.fallback.reset(key, rule)
        try:
            await self.backend.reset(key, rule)
        except RateLimitBackendError:
            if not self.fail_open:
                raise RateLimiterUnavailableException() from None

    async def initialize(self) -> None:
        """Start-up check (run by the dependency manager): log whether the backend answers.

        A backend that does not answer is not an error; checks follow the failure policy.
        """
        ping = getattr(self.backend, "ping", None)
        if ping is None:
            logger.info("rate limiting ready", backend=self.backend.name)
            return
        if await ping():
            logger.info("rate limiting ready", backend=self.backend.name)
        else:
            logger.warning(
                "rate limit backend not answering at start-up",
                backend=self.backend.name,
                policy="fail_open" if self.fail_open else "fail_closed",
            )

    async def close(self) -> None:
        """Close the backend(s) (writing any batched metrics first)."""
        _metrics.flush()
        await self.backend.close()
        if self.fallback is not self.backend:
            await self.fallback.close()


def create_rate_limiting_service(settings: Settings | None = None) -> RateLimitingService:
    """Build a service for ``settings``: Redis when ``REDIS_URI`` (or the Redis cache) is set,
    memory otherwise."""
    if settings is None:
        from crown_nexus.core.config import settings as loaded

        settings = loaded
    backend: RateLimitBackend
    if settings.redis_url:
        from crown_nexus.core.rate_limiting.redis import RedisRateLimitBackend

        backend = RedisRateLimitBackend(settings.redis_url)
    else:
        backend = MemoryRateLimitBackend()
    return RateLimitingService(backend, settings=settings)


register_service(create_rate_limiting_service, name="rate_limiting_service")


def get_rate_limiting_service() -> RateLimitingService:
    """The application's rate limiting service (the ``"rate_limiting_service"`` singleton)."""
    return get_service("rate_limiting_service")  # type: ignore[no-any-return]
