"""RateLimitRule validation, path matching, algorithm choice; RateLimitResult headers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from crown_nexus.core.rate_limiting import (
    RateLimitAlgorithm,
    RateLimitResult,
    RateLimitRule,
    RateLimitStrategy,
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"requests_per_window": 0, "window_seconds": 60},
        {"requests_per_window": -5, "window_seconds": 60},
        {"requests_per_window": 5, "window_seconds": 0},
        {"requests_per_window": 5, "window_seconds": 60, "burst_multiplier": 0.5},
        {"requests_per_window": 5, "window_seconds": 60, "burst_multiplier": float("inf")},
        {"requests_per_window": 5, "window_seconds": 60, "strategy": "nobody"},
        {"requests_per_window": 5, "window_seconds": 60, "path_pattern": "^(unclosed"},
        {"requests_per_window": 5, "window_seconds": 60, "unknown": 1},
        {"requests_per_window": "many", "window_seconds": 60},
    ],
)
def test_invalid_rules_are_rejected(kwargs) -> None:  # type: ignore[no-untyped-def]
    """Non-positive numbers, unknown strategies, bad patterns and extra fields are refused."""
    with pytest.raises(ValidationError):
        RateLimitRule(**kwargs)


def test_defaults_and_algorithm_choice() -> None:
    """Defaults: IP, sliding window; burst_multiplier > 1 selects the token bucket."""
    rule = RateLimitRule(requests_per_window=10, window_seconds=60)
    assert rule.strategy is RateLimitStrategy.IP
    assert rule.algorithm is RateLimitAlgorithm.SLIDING_WINDOW
    assert rule.burst == 10
    burst = RateLimitRule(requests_per_window=10, window_seconds=60, burst_multiplier=2.5)
    assert burst.algorithm is RateLimitAlgorithm.GCRA is RateLimitAlgorithm.TOKEN_BUCKET
    assert burst.burst == 25
    explicit = RateLimitRule(requests_per_window=10, window_seconds=60, algorithm="sliding_log")
    assert explicit.algorithm is RateLimitAlgorithm.SLIDING_LOG


def test_rules_are_frozen_and_signatures_separate_limits() -> None:
    """Rules are immutable; different limits or algorithms get different signatures."""
    a = RateLimitRule(requests_per_window=10, window_seconds=60)
    with pytest.raises(ValidationError):
        a.requests_per_window = 11  # type: ignore[misc]
    b = RateLimitRule(requests_per_window=10, window_seconds=60, algorithm="sliding_log")
    c = RateLimitRule(requests_per_window=10, window_seconds=30)
    assert len({a.signature, b.signature, c.signature}) == 3
    assert a.signature == RateLimitRule(requests_per_window=10, window_seconds=60).signature


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        (None, "/anything", True),
        ("/api/v1/", "/api/v1/users", True),
        ("/api/v1/", "/api/v1", True),
        ("/api/v1/", "/api/v10/users", False),
        ("/api/v1/", "/other", False),
        ("/items/*/edit", "/items/5/edit", True),
        ("/items/*/edit", "/items/5/view", False),
        ("^/u/[0-9]+$", "/u/42", True),
        ("^/u/[0-9]+$", "/u/x", False),
    ],
)
def test_path_matching(pattern, path, expected) -> None:  # type: ignore[no-untyped-def]
    """Prefix, glob and regular-expression patterns match as documented."""
    rule = RateLimitRule(requests_per_window=1, window_seconds=1, path_pattern=pattern)
    assert rule.matches(path) is expected


def test_exclusions_cover_the_path_and_below() -> None:
    """An excluded path is exempt, and so is everything under it, but not look-alikes."""
    rule = RateLimitRule(
        requests_per_window=1, window_seconds=1, path_pattern="/api/",
        exclude_paths=["/api/health", "/api/docs/"],
    )
    assert not rule.matches("/api/health")
    assert not rule.matches("/api/health/live")
    assert not rule.matches("/api/docs")
    assert rule.matches("/api/healthy")
    assert rule.matches("/api/users")


def test_result_headers() -> None:
    """Admitted: X-RateLimit-* and IETF fields, no Retry-After; refused: Retry-After >= 1."""
    ok = RateLimitResult(True, 10, 3, 7, 12.2, 0.0, window=60, policy_name="api")
    assert ok.headers() == {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "7",
        "X-RateLimit-Reset": "13",
        "RateLimit": '"api";r=7;t=13',
        "RateLimit-Policy": '"api";q=10;w=60',
    }
    refused = RateLimitResult(False, 10, 10, 0, 0.0004, 0.0004, window=60)
    headers = refused.headers()
    assert headers["Retry-After"] == "1"
    assert headers["X-RateLimit-Reset"] == "1"
    assert refused.is_limited
