"""Percentage rollout buckets: compiled and pure twins agree, stable across processes, fair share."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus import accel
from crown_nexus.core.features import BUCKETS, FeatureService, FeatureTarget, MemoryFeatureStore
from crown_nexus.core.features._bucket import bucketer, threshold
from tests.conftest import implementations_of

KINDS = implementations_of("cache_keys")


def test_both_twins_are_available_when_native_is_built() -> None:
    """The compiled twin is the one in use when it is built and pure is not forced (no silent
    fallback to pure)."""
    assert "pure" in KINDS
    forced_pure = os.environ.get("CROWN_NEXUS_IMPL", "auto").strip().lower() == "pure"
    if "native" in accel.available("cache_keys") and not forced_pure:
        assert accel.implementations()["cache_keys"] == "native"
    elif forced_pure:
        assert accel.implementations()["cache_keys"] == "pure"


@settings(max_examples=300, deadline=None)
@given(flag=st.text(min_size=1, max_size=64), target_id=st.text(max_size=80))
def test_compiled_and_pure_buckets_agree(flag: str, target_id: str) -> None:
    """Every implementation puts every (flag, id) in the same bucket, always within 0..9999."""
    results = {kind: bucketer(kind)(flag, target_id) for kind in KINDS}
    assert len(set(results.values())) == 1, results
    assert 0 <= next(iter(results.values())) < BUCKETS


def test_bucket_is_the_documented_function_of_the_digest() -> None:
    """bucket = first 8 digest bytes, big-endian, mod 10000 (the module docstring's formula)."""
    import hashlib

    from crown_nexus._pure.cache_keys import _encode

    digest = hashlib.blake2b(b"cnv1" + _encode(("sms", "user-1"), 0), digest_size=32).digest()
    expected = int.from_bytes(digest[:8], "big") % BUCKETS
    for kind in KINDS:
        assert bucketer(kind)("sms", "user-1") == expected


def test_buckets_are_the_same_in_another_process() -> None:
    """A fresh interpreter (another hash seed) computes the same buckets: sticky after restarts."""
    ids = [f"user-{i}" for i in range(50)]
    here = [bucketer()("beta", i) for i in ids]
    code = (
        "from crown_nexus.core.features._bucket import bucketer\n"
        f"print([bucketer()('beta', i) for i in {ids!r}])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert out.stdout.strip() == str(here)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("percentage", [1, 10, 25, 50, 90])
def test_share_is_within_two_points(kind: str, percentage: float) -> None:
    """Over 10,000 ids the share of ids inside a rollout is within +-2 points of the percentage."""
    bucket = bucketer(kind)
    limit = threshold(percentage)
    inside = sum(bucket("sms_notifications", f"user-{i}") < limit for i in range(10_000))
    assert abs(inside / 100 - percentage) <= 2, inside


async def test_service_share_and_stickiness_across_bucket_impls() -> None:
    """is_enabled(percentage=10) admits ~10% of 10,000 users, the same set on every twin."""
    chosen: dict[str, set[str]] = {}
    for kind in KINDS:
        svc = FeatureService(store=MemoryFeatureStore(), environment="test", bucket_impl=kind)
        await svc.set_flag("sms_notifications", enabled=True)
        chosen[kind] = {
            f"u{i}"
            for i in range(10_000)
            if await svc.is_enabled(
                "sms_notifications", target=FeatureTarget.USER, target_id=f"u{i}", percentage=10
            )
        }
    sets = list(chosen.values())
    assert all(s == sets[0] for s in sets)
    assert 800 <= len(sets[0]) <= 1200


async def test_raising_the_percentage_only_adds_users() -> None:
    """Every user inside a 5% rollout stays inside at 10%, 30% and 100% (rule or call percentage)."""
    svc = FeatureService(store=MemoryFeatureStore(), environment="test")
    ids = [f"user-{i}" for i in range(3000)]
    previous: set[str] = set()
    for pct in (0, 5, 10, 30, 100):
        await svc.set_flag("sms_notifications", enabled=True, percentage=pct)
        by_rule = {i for i in ids if svc.check("sms_notifications", "user", i)}
        await svc.set_flag("sms_notifications", enabled=True)
        by_call = {i for i in ids if svc.check("sms_notifications", "user", i, pct)}
        assert by_rule == by_call
        assert previous <= by_rule
        previous = by_rule
    assert previous == set(ids)
