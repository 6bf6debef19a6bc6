"""Failed-login backoff per account (OWASP "Blocking Brute Force Attacks"; the Django-axes idea).

Failed logins are counted per account twice: per (account, client network) and per account from
any network. Once a counter reaches its threshold, every further failure starts an exponentially
growing delay (``base_delay * 2 ** (failures - threshold)``, capped at ``max_delay``) during
which the account's logins from that scope are refused with 429 (:class:`RateLimitExceededException`,
``Retry-After``) **before the password is checked**, so a throttled attempt tells nothing and
costs no hash. A counter forgets its failures ``window`` seconds after the last one.

The design keeps a victim able to log in while an attacker guesses:

* the (account, network) counter is strict (default 5 failures); it throttles the guesser's
  network, not the victim's. The network is the client's IPv4 address or IPv6 /64 (see
  :func:`crown_nexus.core.rate_limiting.service.client_network`), so rotating through the
  addresses of one /64 does not help.
* the account-wide counter has a much higher threshold (default 50) for attacks spread over many
  networks, and it does not apply to networks the account logged in from successfully in the
  last ``known_network_ttl`` seconds (default 30 days).
* the delay is capped (default 5 minutes) and a throttled attempt is not counted, so an attacker
  can never lock an account for long; a successful login resets its (account, network) counter.

Counters live in this process (:class:`MemoryLoginThrottleStore`, bounded) or in Redis
(:class:`RedisLoginThrottleStore`, one atomic script per failure) so every worker shares them;
:func:`create_login_throttle` picks Redis when the settings configure it. When Redis does not
answer, the throttle counts in process memory (``rate_limit_fail_open``, the default) or refuses
logins with 503 (fail closed). Accounts appear in keys, logs and events only as a keyed hash
(:meth:`LoginThrottle.account_id`); metrics carry bounded labels only.
"""

from __future__ import annotations

import abc
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crown_nexus.core._redis import redis_client
from crown_nexus.core.rate_limiting.exceptions import (
    RateLimiterUnavailableException,
    RateLimitExceededException,
)
from crown_nexus.core.rate_limiting.service import (
    TrustedProxies,
    client_ip_from_scope,
    client_network,
)
from crown_nexus.core.security._telemetry import SecurityTelemetry
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings

__all__ = [
    "LoginThrottle",
    "LoginThrottlePolicy",
    "LoginThrottleStore",
    "MemoryLoginThrottleStore",
    "RedisLoginThrottleStore",
    "create_login_throttle",
]

logger = get_logger("crown_nexus.core.security.login_throttle")

#: the throttle's default clock (wall seconds); ``crown_nexus.testing.freeze_time`` can hook it:
#: ``freeze_time(hooks=[("crown_nexus.core.security.login_throttle", "_now", "time")])``
_now = time.time

#: what a throttled client is told (the same whether or not the account exists)
THROTTLED_MESSAGE = "Too many failed login attempts; try again later"

_MAX_EXPONENT = 62


@dataclass(frozen=True, slots=True)
class LoginThrottlePolicy:
    """How failures turn into delays (defaults follow ``Settings.login_throttle_*``).

    ``threshold`` failures per (account, network) and ``account_threshold`` per account start
    the delay; ``base_delay`` is the first delay and ``max_delay`` its cap (seconds); failures
    are forgotten ``window`` seconds after the last one; a network the account logged in from
    is exempt from the account-wide delay for ``known_network_ttl`` seconds.
    """

    threshold: int = 5
    account_threshold: int = 50
    base_delay: float = 1.0
    max_delay: float = 300.0
    window: float = 900.0
    known_network_ttl: float = 30 * 86400.0

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.account_threshold < 1:
            raise ValueError("login throttle thresholds must be at least 1")
        if not (self.base_delay > 0 and self.max_delay > 0 and self.window > 0):
            raise ValueError("login throttle delays and window must be positive")
        if not self.known_network_ttl > 0:
            raise ValueError("known_network_ttl must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottlePolicy:
        """The policy configured by ``settings`` (``CROWN_NEXUS_LOGIN_THROTTLE_*``)."""
        return cls(
            threshold=settings.login_throttle_threshold,
            account_threshold=settings.login_throttle_account_threshold,
            base_delay=settings.login_throttle_base_delay,
            max_delay=settings.login_throttle_max_delay,
            window=settings.login_throttle_window,
        )

    def delay(self, failures: int, threshold: int) -> float:
        """Seconds refused after the ``failures``-th failure (0 below ``threshold``)."""
        if failures < threshold:
            return 0.0
        exponent = min(failures - threshold, _MAX_EXPONENT)
        return min(self.max_delay, self.base_delay * 2.0**exponent)

    @property
    def record_ttl(self) -> float:
        """How long a counter must be kept (seconds): the window plus the longest delay."""
        return self.window + self.max_delay


class LoginThrottleStore(abc.ABC):
    """Where the counters live. Times are the throttle's clock (seconds); a counter is
    ``(failures, last failure, blocked until)``."""

    name = "store"

    @abc.abstractmethod
    async def state(
        self, network_key: str, account_key: str, known_key: str, now: float
    ) -> tuple[float, float, bool]:
        """``(network blocked until, account blocked until, network known)`` (0.0 = not blocked)."""

    @abc.abstractmethod
    async def fail(
        self, key: str, now: float, threshold: int, policy: LoginThrottlePolicy
    ) -> tuple[int, float]:
        """Count one failure for ``key`` atomically; return ``(failures, blocked until)``."""

    @abc.abstractmethod
    async def succeed(
        self, network_key: str, known_key: str, now: float, policy: LoginThrottlePolicy
    ) -> None:
        """Forget ``network_key``'s failures and remember ``known_key`` as a known network."""

    async def close(self) -> None:
        """Release connections (nothing to release by default)."""
        return None


class MemoryLoginThrottleStore(LoginThrottleStore):
    """Counters in this process: at most ``max_keys`` counters and known networks, the least
    recently used dropped first; expired entries vanish when read or evicted."""

    name = "memory"

    def __init__(self, *, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        #: key -> [failures, last failure, blocked until, expires at]
        self._counters: OrderedDict[str, list[float]] = OrderedDict()
        #: known network key -> expires at
        self._known: OrderedDict[str, float] = OrderedDict()

    def _counter(self, key: str, now: float) -> list[float] | None:
        record = self._counters.get(key)
        if record is None:
            return None
        if record[3] <= now:
            del self._counters[key]
            return None
        self._counters.move_to_end(key)
        return record

    async def state(
        self, network_key: str, account_key: str, known_key: str, now: float
    ) -> tuple[float, float, bool]:
        """See :meth:`LoginThrottleStore.state`."""
        net = self._counter(network_key, now)
        acct = self._counter(account_key, now)
        expires = self._known.get(known_key)
        known = expires is not None and expires > now
        if expires is not None and not known:
            del self._known[known_key]
        return (net[2] if net else 0.0, acct[2] if acct else 0.0, known)

    async def fail(
        self, key: str, now: float, threshold: int, policy: LoginThrottlePolicy
    ) -> tuple[int, float]:
        """See :meth:`LoginThrottleStore.fail`."""
        record = self._counter(key, now)
        failures = 0
        if record is not None and now - record[1] <= policy.window:
            failures = int(record[0])
        failures += 1
        delay = policy.delay(failures, threshold)
        until = now + delay if delay else 0.0
        self._counters[key] = [float(failures), now, until, now + policy.record_ttl]
        self._counters.move_to_end(key)
        while len(self._counters) > self._max_keys:
            self._counters.popitem(last=False)
        return failures, until

    async def succeed(
        self, network_key: str, known_key: str, now: float, policy: LoginThrottlePolicy
    ) -> None:
        """See :meth:`LoginThrottleStore.succeed`."""
        self._counters.pop(network_key, None)
        self._known[known_key] = now + policy.known_network_ttl
        self._known.move_to_end(known_key)
        while len(self._known) > self._max_keys:
            self._known.popitem(last=False)

    def clear(self) -> None:
        """Forget every counter and known network."""
        self._counters.clear()
        self._known.clear()


#: KEYS[1] the counter hash; ARGV now, window, threshold, base delay, max delay, ttl (ms).
#: The same arithmetic as MemoryLoginThrottleStore.fail / LoginThrottlePolicy.delay.
_FAIL_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local base = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local held = redis.call('HMGET', KEYS[1], 'f', 'l')
local failures = tonumber(held[1]) or 0
local last = tonumber(held[2])
if last == nil or now - last > window then failures = 0 end
failures = failures + 1
local blocked = 0
if failures >= threshold then
  local delay = base * 2 ^ math.min(failures - threshold, 62)
  if delay > cap then delay = cap end
  blocked = now + delay
end
redis.call('HSET', KEYS[1], 'f', failures, 'l', ARGV[1], 'u', string.format('%.6f', blocked))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {failures, string.format('%.6f', blocked)}
"""


class RedisLoginThrottleStore(LoginThrottleStore):
    """Counters in Redis, shared by every worker: a hash per counter (``f`` failures, ``l``
    last failure, ``u`` blocked until) updated by one Lua script, a string per known network;
    every key expires on its own. ``client`` may be given instead of ``url`` (it is then not
    closed by :meth:`close`)."""

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "crown_nexus:login_throttle:",
        timeout: float = 2.0,
    ) -> None:
        client, self._owns_client = redis_client(
            "the Redis login throttle", "RedisLoginThrottleStore", url, client, timeout
        )
        self.client = client
        self.prefix = prefix
        self._fail = client.register_script(_FAIL_SCRIPT)

    async def state(
        self, network_key: str, account_key: str, known_key: str, now: float
    ) -> tuple[float, float, bool]:
        """See :meth:`LoginThrottleStore.state`."""
        p = self.prefix
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(p + network_key, "u")
        pipe.hget(p + account_key, "u")
        pipe.exists(p + known_key)
        net, acct, known = await pipe.execute()
        return (float(net or 0.0), float(acct or 0.0), bool(known))

    async def fail(
        self, key: str, now: float, threshold: int, policy: LoginThrottlePolicy
    ) -> tuple[int, float]:
        """See :meth:`LoginThrottleStore.fail`."""
        failures, until = await self._fail(
            keys=[self.prefix + key],
            args=[
                repr(float(now)),
                repr(float(policy.window)),
                threshold,
                repr(float(policy.base_delay)),
                repr(float(policy.max_delay)),
                max(1, math.ceil(policy.record_ttl * 1000)),
            ],
        )
        return int(failures), float(until)

    async def succeed(
        self, network_key: str, known_key: str, now: float, policy: LoginThrottlePolicy
    ) -> None:
        """See :meth:`LoginThrottleStore.succeed`."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.prefix + network_key)
        pipe.set(self.prefix + known_key, b"1", px=max(1, math.ceil(policy.known_network_ttl * 1000)))
        await pipe.execute()

    async def close(self) -> None:
        """Close the client this store created."""
        if self._owns_client:
            await self.client.aclose()


class _Metrics:
    """``failed_login_attempts_total`` and ``login_throttled_total{scope}`` (best effort)."""

    SPECS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("failed_login_attempts_total", "Failed login attempts (any account)", ()),
        (
            "login_throttled_total",
            "Login attempts refused by the failed-login backoff",
            ("scope",),
        ),
        (
            "login_throttle_store_errors_total",
            "Login throttle store errors (the fallback was used)",
            ("store",),
        ),
    )

    def __init__(self) -> None:
        self._service: Any = None
        self._disabled = False

    def _metrics(self) -> Any:
        if self._service is None and not self._disabled:
            try:
                from crown_nexus.core.dependency_manager import get_service

                service = get_service("metrics_service")
                for name, description, labels in self.SPECS:
                    service.create_counter(name=name, description=description, labelnames=list(labels))
                self._service = service
            except Exception as exc:
                logger.debug("login throttle metrics disabled", error=str(exc))
                self._disabled = True
        return self._service

    def inc(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        service = self._metrics()
        if service is None:
            return
        try:
            service.increment_counter(name, labels=dict(labels or {}))
        except Exception as exc:  # metrics never break a login
            logger.debug("login throttle metric failed", metric=name, error=str(exc))


class LoginThrottle:
    """Failed-login backoff for one application (see the module documentation).

    Use it around a password check::

        network = throttle.network_of(request.scope)
        await throttle.check(email, network)        # 429 while throttled, before any check
        if not credentials_ok:
            await throttle.failed(email, network)   # unknown accounts count the same
            raise AuthenticationException(...)
        await throttle.succeeded(email, network)

    ``store`` defaults to a :class:`MemoryLoginThrottleStore`; ``policy`` to the settings'.
    ``trusted_proxies`` / ``ipv6_prefix`` default to the settings' (as rate limiting uses them).
    ``clock`` returns wall seconds (default: this module's ``_now``, read at each call, so
    ``crown_nexus.testing.freeze_time`` hooks can drive it). ``fail_open`` (default
    ``settings.rate_limit_fail_open``): when the store fails, count in process memory instead
    (``True``) or refuse logins with 503 (``False``).
    """

    def __init__(
        self,
        store: LoginThrottleStore | None = None,
        *,
        settings: Settings | None = None,
        policy: LoginThrottlePolicy | None = None,
        trusted_proxies: Iterable[str] | None = None,
        ipv6_prefix: int | None = None,
        clock: Callable[[], float] | None = None,
        fail_open: bool | None = None,
    ) -> None:
        if settings is None:
            from crown_nexus.core.config import settings as loaded

            settings = loaded
        self.store: LoginThrottleStore = store or MemoryLoginThrottleStore()
        self.fallback: LoginThrottleStore = (
            self.store
            if isinstance(self.store, MemoryLoginThrottleStore)
            else MemoryLoginThrottleStore()
        )
        self.policy = policy or LoginThrottlePolicy.from_settings(settings)
        self.trusted_proxies = TrustedProxies(
            settings.trusted_proxies if trusted_proxies is None else trusted_proxies
        )
        self.ipv6_prefix = (
            settings.rate_limit_ipv6_prefix if ipv6_prefix is None else int(ipv6_prefix)
        )
        if not 1 <= self.ipv6_prefix <= 128:
            raise ValueError(f"ipv6_prefix must be between 1 and 128, got {self.ipv6_prefix}")
        self.fail_open = settings.rate_limit_fail_open if fail_open is None else bool(fail_open)
        self._clock = clock
        self._key = hashlib.sha256(
            b"crown-nexus login throttle\0" + settings.secret_key.get_secret_value().encode()
        ).digest()
        self._metrics = _Metrics()
        self._telemetry = SecurityTelemetry()
        self._store_down = False

    # --- keys ------------------------------------------------------------------------------

    def now(self) -> float:
        """The throttle's clock (wall seconds)."""
        return self._clock() if self._clock is not None else _now()

    def account_id(self, account: str) -> str:
        """The keyed hash ``account`` is known by in keys, logs and events (case-insensitive)."""
        normalised = account.strip().lower().encode("utf-8", "surrogatepass")
        return hashlib.blake2b(normalised, key=self._key, digest_size=16).hexdigest()

    def network_of(self, scope: Mapping[str, Any]) -> str:
        """The client network of an ASGI ``scope``: its IPv4 address or IPv6 /prefix network
        (``X-Forwarded-For`` believed only from trusted proxies)."""
        return client_network(client_ip_from_scope(scope, self.trusted_proxies), self.ipv6_prefix)

    def _keys(self, account: str, network: str) -> tuple[str, str, str, str]:
        acct = self.account_id(account)
        return acct, f"n:{acct}:{network}", f"a:{acct}", f"k:{acct}:{network}"

    # --- store with the failure policy -----------------------------------------------------

    async def _call(self, method: str, *args: Any) -> Any:
        store = self.store
        if store is not self.fallback:
            try:
                result = await getattr(store, method)(*args)
            except Exception as exc:  # redis errors, timeouts, connection refused
                self._metrics.inc("login_throttle_store_errors_total", {"store": store.name})
                if not self._store_down:
                    self._store_down = True
                    logger.warning(
                        "login throttle store unavailable",
                        store=store.name,
                        error=type(exc).__name__,
                        policy="fail_open" if self.fail_open else "fail_closed",
                    )
                if not self.fail_open:
                    raise RateLimiterUnavailableException() from None
            else:
                if self._store_down:
                    self._store_down = False
                    logger.info("login throttle store recovered", store=store.name)
                return result
        return await getattr(self.fallback, method)(*args)

    # --- the three steps of a login --------------------------------------------------------

    async def check(self, account: str, network: str) -> None:
        """Raise :class:`RateLimitExceededException` (429, ``Retry-After``) while ``account``
        is throttled for ``network``; call it before the password is checked.

        The (account, network) delay always applies; the account-wide delay applies unless
        the account logged in from ``network`` recently.
        """
        now = self.now()
        acct, net_key, acct_key, known_key = self._keys(account, network)
        net_until, acct_until, known = await self._call(
            "state", net_key, acct_key, known_key, now
        )
        wait, scope = net_until - now, "network"
        if not known and acct_until - now > wait:
            wait, scope = acct_until - now, "account"
        if wait <= 0:
            return
        retry_after = max(1, math.ceil(wait - 1e-9))
        self._metrics.inc("login_throttled_total", {"scope": scope})
        logger.info(
            "login refused while throttled",
            account_id=acct,
            network=network,
            scope=scope,
            retry_after=retry_after,
        )
        raise RateLimitExceededException(
            message=THROTTLED_MESSAGE,
            details={"retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
            reset_seconds=retry_after,
        )

    async def failed(self, account: str, network: str) -> float:
        """Count a failed login (wrong password or unknown account) for ``account`` from
        ``network``; return the seconds the account is now refused from ``network`` (0.0 when
        not yet). Logs it, counts ``failed_login_attempts_total`` and, when a delay starts,
        publishes ``security.login_throttled``."""
        now = self.now()
        policy = self.policy
        acct, net_key, acct_key, _ = self._keys(account, network)
        net_failures, net_until = await self._call("fail", net_key, now, policy.threshold, policy)
        acct_failures, acct_until = await self._call(
            "fail", acct_key, now, policy.account_threshold, policy
        )
        self._metrics.inc("failed_login_attempts_total")
        delay = max(net_until - now, acct_until - now, 0.0)
        if delay <= 0:
            logger.info(
                "login failed", account_id=acct, network=network, failures=net_failures
            )
            return 0.0
        scope = "network" if net_until >= acct_until else "account"
        logger.warning(
            "login throttled after failed attempts",
            account_id=acct,
            network=network,
            scope=scope,
            failures=net_failures,
            account_failures=acct_failures,
            delay=round(delay, 3),
        )
        await self._telemetry.publish(
            "security.login_throttled",
            {
                "account_id": acct,
                "network": network,
                "scope": scope,
                "failures": net_failures,
                "account_failures": acct_failures,
                "retry_after": max(1, math.ceil(delay - 1e-9)),
            },
        )
        return delay

    async def succeeded(self, account: str, network: str) -> None:
        """A successful login: reset the (account, network) counter and remember ``network``
        as known for the account (exempt from the account-wide delay)."""
        _, net_key, _, known_key = self._keys(account, network)
        await self._call("succeed", net_key, known_key, self.now(), self.policy)

    async def close(self) -> None:
        """Close the store."""
        await self.store.close()


def create_login_throttle(settings: Settings | None = None) -> LoginThrottle:
    """A throttle for ``settings``: counters in Redis when ``REDIS_URI`` (or the Redis cache) is
    set, so every worker shares them; in process memory otherwise."""
    if settings is None:
        from crown_nexus.core.config import settings as loaded

        settings = loaded
    store: LoginThrottleStore | None = None
    if settings.redis_url:
        store = RedisLoginThrottleStore(settings.redis_url)
    return LoginThrottle(store, settings=settings)
