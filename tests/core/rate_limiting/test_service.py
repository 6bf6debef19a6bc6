"""RateLimitingService: client keys (trusted proxies, users), results, registry, utils."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.requests import Request

from crown_nexus.core.dependency_manager import get_service, override_service
from crown_nexus.core.rate_limiting import (
    RateLimitingService,
    RateLimitRule,
    RateLimitStrategy,
    TrustedProxies,
    check_rate_limit,
    get_rate_limiting_service,
)
from crown_nexus.core.rate_limiting.service import client_ip_from_scope
from crown_nexus.logging import request_context
from crown_nexus.settings import Settings


def make_request(peer: str = "203.0.113.7", headers: dict[str, str] | None = None, state=None) -> Request:  # type: ignore[no-untyped-def]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (peer, 50000),
        "state": state or {},
    }
    return Request(scope)


@pytest.fixture
def service() -> RateLimitingService:
    """A memory-backed service trusting the proxies 10.0.0.0/8 and 192.0.2.1."""
    return RateLimitingService(
        settings=Settings(trusted_proxies=["10.0.0.0/8", "192.0.2.1"])
    )


RULE = RateLimitRule(requests_per_window=5, window_seconds=60)


def test_ip_is_the_peer_without_trusted_proxy(service: RateLimitingService) -> None:
    """X-Forwarded-For from an untrusted peer is ignored (a client cannot pick its key)."""
    req = make_request("203.0.113.7", {"X-Forwarded-For": "1.2.3.4"})
    assert service.get_key_for_request(req, RULE) == "global|ip:203.0.113.7"


def test_forwarded_for_believed_from_trusted_proxy(service: RateLimitingService) -> None:
    """Through trusted proxies the rightmost untrusted X-Forwarded-For entry is the client."""
    req = make_request("10.1.2.3", {"X-Forwarded-For": "6.6.6.6, 198.51.100.9, 192.0.2.1"})
    assert service.client_ip(req) == "198.51.100.9"


def test_forged_or_malformed_entries_stop_the_walk(service: RateLimitingService) -> None:
    """A malformed hop stops the walk at the last good address."""
    req = make_request("10.1.2.3", {"X-Forwarded-For": "198.51.100.9, not-an-ip"})
    assert service.client_ip(req) == "10.1.2.3"


def test_all_hops_trusted_gives_leftmost(service: RateLimitingService) -> None:
    """When every hop is a trusted proxy, the leftmost one is the client."""
    req = make_request("10.1.2.3", {"X-Forwarded-For": "10.9.9.9"})
    assert service.client_ip(req) == "10.9.9.9"


def test_ipv6_and_ports_are_normalised() -> None:
    """Bracketed IPv6 and host:port entries are parsed to bare addresses."""
    trusted = TrustedProxies(["::1"])
    scope = {"client": ("::1", 1), "headers": [(b"x-forwarded-for", b"[2001:db8::1]:443")]}
    assert client_ip_from_scope(scope, trusted) == "2001:db8::1"
    scope = {"client": ("::1", 1), "headers": [(b"x-forwarded-for", b"198.51.100.1:8080")]}
    assert client_ip_from_scope(scope, trusted) == "198.51.100.1"


def test_invalid_trusted_proxy_setting_is_rejected() -> None:
    """A trusted proxy that is not an address or network is a clear ValueError."""
    with pytest.raises(ValueError, match="not an IP"):
        TrustedProxies(["proxy.example"])


def test_no_client_gives_unknown(service: RateLimitingService) -> None:
    """A scope without a client (e.g. some test transports) is keyed as 'unknown'."""
    assert client_ip_from_scope({"headers": []}, service.trusted_proxies) == "unknown"


def test_user_strategy_uses_state_then_context(service: RateLimitingService) -> None:
    """USER keys use request.state.user_id, request.state.user, then the request context."""
    rule = RateLimitRule(requests_per_window=5, window_seconds=60, strategy=RateLimitStrategy.USER)
    assert service.get_key_for_request(make_request(state={"user_id": 42}), rule) == "global|user:42"
    user = SimpleNamespace(id="u-7")
    assert service.get_key_for_request(make_request(state={"user": user}), rule) == "global|user:u-7"
    assert service.get_key_for_request(make_request(state={"user": {"id": 9}}), rule) == "global|user:9"
    with request_context(user_id="ctx-user"):
        assert service.get_key_for_request(make_request(), rule) == "global|user:ctx-user"
    # anonymous: still limited, by IP
    assert service.get_key_for_request(make_request(), rule) == "global|ip:203.0.113.7"


def test_combined_strategy_and_path_scope(service: RateLimitingService) -> None:
    """COMBINED keys hold user and IP; path rules are scoped by their pattern."""
    rule = RateLimitRule(
        requests_per_window=5, window_seconds=60, strategy=RateLimitStrategy.COMBINED,
        path_pattern="/api/v1/",
    )
    key = service.get_key_for_request(make_request(state={"user_id": "u1"}), rule)
    assert key == "/api/v1/|user:u1|ip:203.0.113.7"


async def test_is_rate_limited_returns_guide_triple(service: RateLimitingService) -> None:
    """is_rate_limited returns (is_limited, count, limit) as the guide shows."""
    rule = RateLimitRule(requests_per_window=2, window_seconds=60)
    assert await service.is_rate_limited("k", rule) == (False, 1, 2)
    assert await service.is_rate_limited("k", rule) == (False, 2, 2)
    assert await service.is_rate_limited("k", rule) == (True, 2, 2)


async def test_check_rejects_bad_keys(service: RateLimitingService) -> None:
    """A non-string key is a TypeError, not a silent miss."""
    with pytest.raises(TypeError):
        await service.check(123, RULE)  # type: ignore[arg-type]


def test_registered_as_rate_limiting_service() -> None:
    """get_service('rate_limiting_service') and get_rate_limiting_service() are one object."""
    assert get_service("rate_limiting_service") is get_rate_limiting_service()
    assert isinstance(get_rate_limiting_service(), RateLimitingService)


async def test_check_rate_limit_uses_the_application_service() -> None:
    """check_rate_limit returns (is_limited, count, reset_seconds) from the registered service."""
    svc = RateLimitingService(settings=Settings())
    with override_service("rate_limiting_service", svc):
        results = [
            await check_rate_limit(key="email:1", max_requests=3, window_seconds=3600)
            for _ in range(4)
        ]
    assert [r[:2] for r in results] == [(False, 1), (False, 2), (False, 3), (True, 3)]
    assert results[-1][2] >= 1
    assert all(isinstance(r[2], int) for r in results)


async def test_check_rate_limit_rejects_bad_limits() -> None:
    """Non-positive limits are a ValueError (pydantic ValidationError)."""
    with pytest.raises(ValueError):
        await check_rate_limit(key="x", max_requests=0, window_seconds=60)


@pytest.mark.parametrize("algo", ["sliding_window", "sliding_log", "token_bucket"])
async def test_memory_fast_path_matches_the_backend(window_impl, algo: str) -> None:  # type: ignore[no-untyped-def]
    """The service's synchronous memory path returns exactly what the backend's hit returns
    (allowed, refused, costs, timed and untimed checks alike)."""
    from crown_nexus.core.rate_limiting import MemoryRateLimitBackend, RateLimitAlgorithm, _metrics

    from .conftest import FakeClock

    clock_a, clock_b = FakeClock(), FakeClock()
    svc = RateLimitingService(MemoryRateLimitBackend(clock=clock_a, impl=window_impl), settings=Settings())
    ref = MemoryRateLimitBackend(clock=clock_b, impl=window_impl)
    rule = RateLimitRule(requests_per_window=7, window_seconds=10, algorithm=RateLimitAlgorithm(algo))
    assert svc._memory_hit is not None
    for i in range(3 * _metrics.DURATION_SAMPLE_EVERY):
        cost = 1 + i % 3 if i % 5 == 0 else 1
        key = f"k{i % 3}"
        assert await svc.check(key, rule, cost) == await ref.hit(key, rule, cost), i
        clock_a.advance(0.37)
        clock_b.advance(0.37)
    with pytest.raises(TypeError):
        await svc.check(b"k0", rule)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await svc.check("k0", rule, 0)


@pytest.mark.parametrize("algo", ["sliding_window", "sliding_log", "token_bucket"])
async def test_check_rate_limit_fast_path_matches_the_service(window_impl, algo: str) -> None:  # type: ignore[no-untyped-def]
    """check_rate_limit (cached rule, synchronous checker) answers exactly what awaiting the
    service's check with the same rule answers, through refusals and sampled checks."""
    import math

    from crown_nexus.core.rate_limiting import MemoryRateLimitBackend, RateLimitAlgorithm, _metrics

    from .conftest import FakeClock

    clock_a, clock_b = FakeClock(), FakeClock()
    fast = RateLimitingService(MemoryRateLimitBackend(clock=clock_a, impl=window_impl), settings=Settings())
    ref = RateLimitingService(MemoryRateLimitBackend(clock=clock_b, impl=window_impl), settings=Settings())
    algorithm = RateLimitAlgorithm(algo)
    rule = RateLimitRule(
        requests_per_window=7, window_seconds=10, strategy=RateLimitStrategy.USER, algorithm=algorithm
    )
    for i in range(3 * _metrics.DURATION_SAMPLE_EVERY):
        key = f"k{i % 3}"
        with override_service("rate_limiting_service", fast):
            got = await check_rate_limit(key, 7, 10, algorithm=algorithm)
        want = await ref.check(key, rule)
        reset = (
            max(0, math.ceil(want.reset_after - 1e-9)) if want.allowed else want.retry_after_seconds
        )
        assert got == (not want.allowed, want.count, reset), i
        assert all(type(v) is t for v, t in zip(got, (bool, int, int))), got
        clock_a.advance(0.37)
        clock_b.advance(0.37)


async def test_check_rate_limit_counts_every_check_in_metrics() -> None:
    """Every check_rate_limit call reaches rate_limiting_checks_total (allowed and limited)."""
    from crown_nexus.core.rate_limiting import _metrics

    _metrics.reset()
    metrics = get_service("metrics_service")
    allowed = {"backend": "memory", "result": "allowed"}
    limited = {"backend": "memory", "result": "limited"}
    before = (
        metrics.get_counter_sum("rate_limiting_checks_total", allowed),
        metrics.get_counter_sum("rate_limiting_checks_total", limited),
    )
    svc = RateLimitingService(settings=Settings())
    with override_service("rate_limiting_service", svc):
        answers = [await check_rate_limit("metered", 100, 60) for _ in range(150)]
    _metrics.flush()
    assert sum(a[0] for a in answers) == 50
    assert metrics.get_counter_sum("rate_limiting_checks_total", allowed) == before[0] + 100
    assert metrics.get_counter_sum("rate_limiting_checks_total", limited) == before[1] + 50


async def test_check_rate_limit_follows_a_replaced_service() -> None:
    """The cached checker belongs to one service: another registered service counts afresh."""
    first = RateLimitingService(settings=Settings())
    second = RateLimitingService(settings=Settings())
    with override_service("rate_limiting_service", first):
        assert (await check_rate_limit("swap", 2, 60))[:2] == (False, 1)
        assert (await check_rate_limit("swap", 2, 60))[:2] == (False, 2)
    with override_service("rate_limiting_service", second):
        assert (await check_rate_limit("swap", 2, 60))[:2] == (False, 1)


@pytest.mark.parametrize("bad", [True, 2.0, "2", None])
async def test_check_rate_limit_validates_limits_that_are_not_ints(bad: object) -> None:
    """Limits that are not exact ints are never served from the cache of validated rules:
    pydantic decides (True/None/'2' rejected or coerced exactly as the rule model says)."""
    try:
        RateLimitRule(requests_per_window=bad, window_seconds=60, strategy=RateLimitStrategy.USER)  # type: ignore[arg-type]
    except ValueError:
        await check_rate_limit("v", 2, 60)  # an int rule with the same value is cached
        with pytest.raises(ValueError):
            await check_rate_limit("v", bad, 60)  # type: ignore[arg-type]
    else:
        assert (await check_rate_limit("v-ok", bad, 60))[0] is False  # type: ignore[arg-type]


async def test_check_rate_limit_rejects_a_key_that_is_not_a_string() -> None:
    """A non-str key is a TypeError on the fast path as on the service."""
    await check_rate_limit("warm", 5, 60)
    with pytest.raises(TypeError):
        await check_rate_limit(b"bytes-key", 5, 60)  # type: ignore[arg-type]
