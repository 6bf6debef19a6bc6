"""LoginThrottle: per-account failed-login backoff on memory and real Redis (shared by workers)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from crown_nexus.core.dependency_manager import get_service, override_service
from crown_nexus.core.rate_limiting import (
    RateLimiterUnavailableException,
    RateLimitExceededException,
)
from crown_nexus.core.security.login_throttle import (
    THROTTLED_MESSAGE,
    LoginThrottle,
    LoginThrottlePolicy,
    LoginThrottleStore,
    MemoryLoginThrottleStore,
    RedisLoginThrottleStore,
    create_login_throttle,
)
from crown_nexus.settings import Settings
from crown_nexus.testing import capture_logs
from tests.core.security.conftest import make_settings

ATTACKER = "198.51.100.7"
VICTIM = "203.0.113.9"


class Clock:
    """A wall clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1_704_067_200.0

    def __call__(self) -> float:
        return self.now


class RecordingEventService:
    """Collects published events (the event system's publish signature)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, event_name: str, payload: dict[str, Any], **_: Any) -> None:
        self.events.append((event_name, payload))


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LoginThrottleStore]:
    """Each store: process memory, and Redis on the real server (a private key prefix)."""
    if request.param == "memory":
        yield MemoryLoginThrottleStore()
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"test:login:{uuid.uuid4().hex}:"
    st = RedisLoginThrottleStore(url, prefix=prefix)
    try:
        yield st
    finally:
        keys = [k async for k in st.client.scan_iter(match=prefix + "*")]
        if keys:
            await st.client.delete(*keys)
        await st.close()


def make_throttle(store: LoginThrottleStore | None, clock: Clock, **policy: Any) -> LoginThrottle:
    return LoginThrottle(
        store, settings=make_settings(), policy=LoginThrottlePolicy(**policy), clock=clock
    )


async def fail_times(throttle: LoginThrottle, n: int, account: str, network: str) -> list[float]:
    return [await throttle.failed(account, network) for _ in range(n)]


def test_policy_delays_grow_exponentially_and_are_capped() -> None:
    """No delay below the threshold, then base * 2**k, never above max_delay."""
    policy = LoginThrottlePolicy(threshold=5, base_delay=1.0, max_delay=300.0)
    assert [policy.delay(n, 5) for n in range(1, 10)] == [0, 0, 0, 0, 1, 2, 4, 8, 16]
    assert policy.delay(14, 5) == 300.0 and policy.delay(10_000, 5) == 300.0


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 0}, {"account_threshold": 0}, {"base_delay": 0}, {"max_delay": -1}, {"window": 0}],
)
def test_policy_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    """Thresholds below 1 and non-positive times are a clear ValueError."""
    with pytest.raises(ValueError):
        LoginThrottlePolicy(**kwargs)


def test_policy_follows_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """CROWN_NEXUS_LOGIN_THROTTLE_* configure the policy; the defaults are 5/50/1s/300s/900s."""
    default = LoginThrottlePolicy.from_settings(Settings())
    assert (default.threshold, default.account_threshold) == (5, 50)
    assert (default.base_delay, default.max_delay, default.window) == (1.0, 300.0, 900.0)
    monkeypatch.setenv("CROWN_NEXUS_LOGIN_THROTTLE_THRESHOLD", "3")
    monkeypatch.setenv("CROWN_NEXUS_LOGIN_THROTTLE_MAX_DELAY", "60")
    custom = LoginThrottlePolicy.from_settings(Settings())
    assert (custom.threshold, custom.max_delay) == (3, 60.0)


async def test_backoff_starts_at_threshold_and_refuses_with_retry_after(store) -> None:
    """Five failures, then 429 with Retry-After before anything else is checked; it expires."""
    clock = Clock()
    throttle = make_throttle(store, clock)
    assert await fail_times(throttle, 4, "a@example.com", ATTACKER) == [0, 0, 0, 0]
    await throttle.check("a@example.com", ATTACKER)  # four failures: still free
    assert await throttle.failed("a@example.com", ATTACKER) == pytest.approx(1.0)
    with pytest.raises(RateLimitExceededException) as caught:
        await throttle.check("A@Example.com ", ATTACKER)  # the same account, however typed
    exc = caught.value
    assert exc.status_code == 429 and exc.headers["Retry-After"] == "1"
    assert exc.message == THROTTLED_MESSAGE and exc.details["retry_after"] == 1
    clock.now += 1.0
    await throttle.check("a@example.com", ATTACKER)
    # each further failure doubles the delay
    assert await throttle.failed("a@example.com", ATTACKER) == pytest.approx(2.0)
    clock.now += 1.5
    with pytest.raises(RateLimitExceededException) as caught:
        await throttle.check("a@example.com", ATTACKER)
    assert caught.value.headers["Retry-After"] == "1"  # 0.5 s left, rounded up


async def test_delay_is_capped_so_a_victim_is_never_locked_out_for_long(store) -> None:
    """However many failures, the wait never exceeds max_delay."""
    clock = Clock()
    throttle = make_throttle(store, clock, max_delay=300.0)
    delays = await fail_times(throttle, 40, "v@example.com", ATTACKER)
    assert max(delays) == pytest.approx(300.0)
    clock.now += 300.0
    await throttle.check("v@example.com", ATTACKER)


async def test_other_networks_and_accounts_are_not_throttled(store) -> None:
    """A guesser's network is throttled, not the victim's network, nor other accounts."""
    clock = Clock()
    throttle = make_throttle(store, clock)
    await fail_times(throttle, 24, "v@example.com", ATTACKER)
    with pytest.raises(RateLimitExceededException):
        await throttle.check("v@example.com", ATTACKER)
    await throttle.check("v@example.com", VICTIM)
    await throttle.check("other@example.com", ATTACKER)


async def test_success_resets_the_network_counter(store) -> None:
    """After a successful login the next failures start from zero again."""
    clock = Clock()
    throttle = make_throttle(store, clock)
    await fail_times(throttle, 4, "u@example.com", VICTIM)
    await throttle.succeeded("u@example.com", VICTIM)
    assert await fail_times(throttle, 4, "u@example.com", VICTIM) == [0, 0, 0, 0]


async def test_failures_are_forgotten_after_the_window(store) -> None:
    """A failure older than `window` no longer counts."""
    clock = Clock()
    throttle = make_throttle(store, clock, window=900.0)
    await fail_times(throttle, 4, "w@example.com", ATTACKER)
    clock.now += 901.0
    assert await throttle.failed("w@example.com", ATTACKER) == 0.0


async def test_account_wide_threshold_catches_spread_attacks_but_spares_known_networks(
    store,
) -> None:
    """Guesses spread over many networks trip the account-wide backoff; the owner's known
    network (a recent successful login) still gets in."""
    clock = Clock()
    throttle = make_throttle(store, clock, threshold=5, account_threshold=12)
    await throttle.succeeded("spread@example.com", VICTIM)
    for i in range(12):  # 12 networks, 1 guess each: no single network reaches 5
        await throttle.failed("spread@example.com", f"192.0.2.{i}")
    with pytest.raises(RateLimitExceededException):
        await throttle.check("spread@example.com", "192.0.2.200")  # a fresh network
    await throttle.check("spread@example.com", VICTIM)  # known: not held by the account limit


async def test_counters_are_shared_between_workers_on_redis(redis_url: str) -> None:
    """Two throttles (two workers) on one Redis see the same counters."""
    prefix = f"test:login:{uuid.uuid4().hex}:"
    clock = Clock()
    one = make_throttle(RedisLoginThrottleStore(redis_url, prefix=prefix), clock)
    two = make_throttle(RedisLoginThrottleStore(redis_url, prefix=prefix), clock)
    try:
        await fail_times(one, 3, "s@example.com", ATTACKER)
        await fail_times(two, 2, "s@example.com", ATTACKER)
        with pytest.raises(RateLimitExceededException):
            await one.check("s@example.com", ATTACKER)
        raw = [k async for k in one.store.client.scan_iter(match=prefix + "*")]  # type: ignore[attr-defined]
        assert raw and all(b"s@example.com" not in k for k in raw)  # accounts only hashed
        for key in raw:  # every key expires on its own
            assert await one.store.client.pttl(key) > 0  # type: ignore[attr-defined]
    finally:
        for throttle in (one, two):
            store = throttle.store
            assert isinstance(store, RedisLoginThrottleStore)
            keys = [k async for k in store.client.scan_iter(match=prefix + "*")]
            if keys:
                await store.client.delete(*keys)
            await throttle.close()


async def test_redis_down_fails_open_to_process_memory() -> None:
    """Redis not answering: a warning, then failures are counted in this process."""
    clock = Clock()
    store = RedisLoginThrottleStore("redis://127.0.0.1:1/0", timeout=0.5)
    throttle = make_throttle(store, clock)
    try:
        with capture_logs("warning") as logs:
            await fail_times(throttle, 5, "d@example.com", ATTACKER)
        assert [e["event"] for e in logs].count("login throttle store unavailable") == 1
        with pytest.raises(RateLimitExceededException):
            await throttle.check("d@example.com", ATTACKER)
    finally:
        await throttle.close()


async def test_redis_down_fails_closed_when_configured() -> None:
    """fail_open=False: logins are refused with 503 while the store cannot answer."""
    store = RedisLoginThrottleStore("redis://127.0.0.1:1/0", timeout=0.5)
    throttle = LoginThrottle(store, settings=make_settings(rate_limit_fail_open=False))
    try:
        with pytest.raises(RateLimiterUnavailableException):
            await throttle.check("d@example.com", ATTACKER)
    finally:
        await throttle.close()


async def test_metrics_logs_and_event() -> None:
    """Failures are counted, a starting delay is logged and published, refusals are counted."""
    metrics = get_service("metrics_service")
    before_failed = metrics.get_counter_sum("failed_login_attempts_total")
    before_refused = metrics.get_counter_sum("login_throttled_total", {"scope": "network"})
    recorder = RecordingEventService()
    clock = Clock()
    throttle = make_throttle(None, clock)
    with override_service("event_service", recorder), capture_logs("info") as logs:
        await fail_times(throttle, 5, "m@example.com", ATTACKER)
        with pytest.raises(RateLimitExceededException):
            await throttle.check("m@example.com", ATTACKER)
    assert metrics.get_counter_sum("failed_login_attempts_total") - before_failed == 5
    refused = metrics.get_counter_sum("login_throttled_total", {"scope": "network"})
    assert refused - before_refused == 1
    [(name, payload)] = recorder.events
    assert name == "security.login_throttled"
    assert payload["account_id"] == throttle.account_id("m@example.com")
    assert payload["network"] == ATTACKER and payload["retry_after"] == 1
    assert "m@example.com" not in str(payload) and "m@example.com" not in str(logs)
    events = [e["event"] for e in logs]
    assert events.count("login failed") == 4
    assert "login throttled after failed attempts" in events
    assert "login refused while throttled" in events


def test_networks_follow_the_rate_limit_rules() -> None:
    """The throttle's network: IPv4 address, IPv6 /64, X-Forwarded-For only from trusted proxies."""
    throttle = LoginThrottle(settings=make_settings(trusted_proxies=["10.0.0.0/8"]))
    assert throttle.network_of({"client": ("2001:db8:5:6::99", 1)}) == "2001:db8:5:6::/64"
    assert throttle.network_of({"client": ("::ffff:198.51.100.3", 1)}) == "198.51.100.3"
    forged = {"client": (ATTACKER, 1), "headers": [(b"x-forwarded-for", b"192.0.2.1")]}
    assert throttle.network_of(forged) == ATTACKER
    proxied = {"client": ("10.0.0.2", 1), "headers": [(b"x-forwarded-for", b"2001:db8::7")]}
    assert throttle.network_of(proxied) == "2001:db8::/64"


def test_account_ids_are_keyed_hashes() -> None:
    """Account ids ignore case and spaces, and depend on the secret key (not guessable)."""
    one = LoginThrottle(settings=make_settings())
    other = LoginThrottle(settings=make_settings(secret_key="another-secret-key-0123456789abcdef"))
    assert one.account_id("A@Example.com ") == one.account_id("a@example.com")
    assert one.account_id("a@example.com") != other.account_id("a@example.com")
    assert one.account_id("a@example.com") != one.account_id("b@example.com")


def test_memory_store_is_bounded() -> None:
    """The memory store keeps at most max_keys counters (random emails cannot exhaust memory)."""
    import asyncio

    store = MemoryLoginThrottleStore(max_keys=10)
    policy = LoginThrottlePolicy()

    async def run() -> None:
        for i in range(50):
            await store.fail(f"n:{i}", 0.0, 5, policy)
            await store.succeed(f"n:{i}", f"k:{i}", 0.0, policy)

    asyncio.run(run())
    assert len(store._counters) <= 10 and len(store._known) <= 10


def test_create_login_throttle_picks_redis_when_configured(redis_url: str) -> None:
    """Redis configured: a Redis store; otherwise process memory."""
    assert isinstance(create_login_throttle(make_settings()).store, MemoryLoginThrottleStore)
    throttle = create_login_throttle(make_settings(REDIS_URI=redis_url))
    assert isinstance(throttle.store, RedisLoginThrottleStore)
