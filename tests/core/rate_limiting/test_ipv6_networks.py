"""IPv6 clients are rate limited by network (/64 by default), on every backend and over HTTP."""

from __future__ import annotations

import uuid

import httpx
import pydantic
import pytest
from fastapi import FastAPI

from crown_nexus.core.rate_limiting import (
    RateLimitAlgorithm,
    RateLimitBackend,
    RateLimitingService,
    RateLimitRule,
    TrustedProxies,
)
from crown_nexus.core.rate_limiting.service import client_network
from crown_nexus.middleware.rate_limiting import RateLimitMiddleware
from crown_nexus.settings import Settings

RULE = RateLimitRule(
    requests_per_window=60,
    window_seconds=3600,
    algorithm=RateLimitAlgorithm.SLIDING_LOG,
    name="v6",
)


def fresh_64() -> str:
    """A /64 no earlier run has used (Redis keeps counters between runs)."""
    tag = uuid.uuid4().hex
    return f"2001:db8:{tag[:4]}:{tag[4:8]}"


@pytest.mark.parametrize(
    ("ip", "prefix", "expected"),
    [
        ("203.0.113.7", 64, "203.0.113.7"),
        ("2001:db8:1:2:a:b:c:d", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:a:b:c:d", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:a:b:c:d", 128, "2001:db8:1:2:a:b:c:d"),
        ("::ffff:198.51.100.3", 64, "198.51.100.3"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("unknown", 64, "unknown"),
        ("not:an:address", 64, "not:an:address"),
    ],
)
def test_client_network(ip: str, prefix: int, expected: str) -> None:
    """IPv4 is its own key, IPv6 its /prefix network, IPv4-mapped is IPv4, non-IPs unchanged."""
    assert client_network(ip, prefix) == expected


def test_key_uses_the_network_and_the_configured_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two addresses of one /64 share a key; CROWN_NEXUS_RATE_LIMIT_IPV6_PREFIX changes it."""
    service = RateLimitingService(settings=Settings())
    one = {"client": ("2001:db8:7:7::1", 1), "headers": []}
    two = {"client": ("2001:db8:7:7:ffff::2", 1), "headers": []}
    assert service.key_for_scope(one, RULE) == service.key_for_scope(two, RULE) == "v6|ip:2001:db8:7:7::/64"
    assert service.key_for_scope({"client": ("::ffff:192.0.2.5", 1)}, RULE) == "v6|ip:192.0.2.5"
    assert service.network_for_scope(one) == "2001:db8:7:7::/64"
    monkeypatch.setenv("CROWN_NEXUS_RATE_LIMIT_IPV6_PREFIX", "128")
    per_address = RateLimitingService(settings=Settings())
    assert per_address.ipv6_prefix == 128
    assert per_address.key_for_scope(one, RULE) != per_address.key_for_scope(two, RULE)


def test_invalid_prefix_is_rejected() -> None:
    """A prefix outside 1..128 is a clear error, in settings and in the service."""
    with pytest.raises(pydantic.ValidationError):
        Settings(rate_limit_ipv6_prefix=129)
    with pytest.raises(ValueError, match="ipv6_prefix"):
        RateLimitingService(settings=Settings(), ipv6_prefix=0)


def test_forwarded_ipv6_is_grouped_and_only_believed_from_trusted_proxies() -> None:
    """Through a trusted proxy the forwarded IPv6 client counts by /64; a direct client's
    X-Forwarded-For is ignored; a dual-stack (IPv4-mapped) proxy address is trusted."""
    service = RateLimitingService(settings=Settings(trusted_proxies=["10.0.0.0/8"]))
    via_proxy = {"client": ("10.0.0.2", 1), "headers": [(b"x-forwarded-for", b"2001:db8:9:9::5")]}
    assert service.key_for_scope(via_proxy, RULE) == "v6|ip:2001:db8:9:9::/64"
    mapped = {"client": ("::ffff:10.0.0.2", 1), "headers": [(b"x-forwarded-for", b"2001:db8:9:9::5")]}
    assert service.key_for_scope(mapped, RULE) == "v6|ip:2001:db8:9:9::/64"
    direct = {"client": ("2001:db8:1:1::1", 1), "headers": [(b"x-forwarded-for", b"192.0.2.1")]}
    assert service.key_for_scope(direct, RULE) == "v6|ip:2001:db8:1:1::/64"
    assert TrustedProxies(["10.0.0.0/8"]).trusts("::ffff:10.1.1.1")


async def test_one_64_shares_one_limit_on_every_backend(backend: RateLimitBackend) -> None:
    """60 requests from 60 addresses of one /64 use up its limit; another /64 is still free."""
    service = RateLimitingService(backend, settings=Settings())
    net = fresh_64()
    results = []
    for i in range(61):
        scope = {"client": (f"{net}:{i:x}:{i:x}:{i:x}:1", 40000 + i), "headers": []}
        results.append(await service.check(service.key_for_scope(scope, RULE), RULE))
    assert all(r.allowed for r in results[:60])
    assert not results[60].allowed and results[60].retry_after_seconds >= 1
    other = {"client": (f"{fresh_64()}::1", 1), "headers": []}
    assert (await service.check(service.key_for_scope(other, RULE), RULE)).allowed


async def test_rotating_addresses_of_one_64_gets_429_over_http(backend: RateLimitBackend) -> None:
    """Over HTTP (RateLimitMiddleware, every backend): a client rotating through its /64 is
    answered 429 with Retry-After once the network's limit is used up."""
    app = FastAPI()

    @app.post("/auth/refresh")
    async def refresh() -> dict[str, bool]:
        return {"ok": True}

    service = RateLimitingService(backend, settings=Settings())
    app.add_middleware(RateLimitMiddleware, rules=[RULE], service=service)
    net = fresh_64()
    statuses = []
    for i in range(61):
        transport = httpx.ASGITransport(app=app, client=(f"{net}::{i + 1:x}", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            resp = await client.post("/auth/refresh")
        statuses.append(resp.status_code)
    assert statuses[:60] == [200] * 60
    assert statuses[60] == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["code"] == "RATE_LIMIT_EXCEEDED"
