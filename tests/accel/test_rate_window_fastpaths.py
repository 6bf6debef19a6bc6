"""The Cython windows' fast paths (reused result tuple, division-free bucket lookup) change nothing."""

from __future__ import annotations

import gc

import pytest

from crown_nexus import accel
from tests.conftest import implementations_of

IMPLS = accel.available("rate_window")
ALGOS = ["SlidingWindowCounter", "SlidingLog", "GCRA"]


@pytest.fixture(params=implementations_of("rate_window"))
def impl(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Each available rate_window implementation module."""
    return IMPLS[request.param]


@pytest.mark.parametrize("algo", ALGOS)
def test_held_results_never_change(impl, algo: str) -> None:  # type: ignore[no-untyped-def]
    """A result the caller still holds keeps its values after later hits (allowed and denied)."""
    win = getattr(impl, algo)(3, 10)
    held = [win.hit("k", 100.0 + i * 0.001) for i in range(5)]
    snapshot = [tuple(x for x in r) for r in held]
    for i in range(20):
        win.hit("k", 101.0 + i)
        win.hit("other", 101.0 + i)
    assert [tuple(x for x in r) for r in held] == snapshot
    assert [r[0] for r in held] == [True, True, True, False, False]
    assert all(type(r) is tuple and len(r) == 3 for r in held)


@pytest.mark.parametrize("algo", ALGOS)
def test_dropped_results_are_fresh_values(impl, algo: str) -> None:  # type: ignore[no-untyped-def]
    """Results dropped before the next hit (the reuse case) still read back correct values."""
    win = getattr(impl, algo)(1000, 1)
    counts = [win.hit("k", 5.0)[1] for _ in range(50)]
    assert counts == list(range(1, 51))
    gc.collect()
    assert win.hit("k", 5.0)[1] == 51
    first = win.hit("k", 5.0)
    second = win.hit("k", 5.0)
    assert (first[1], second[1]) == (52, 53)


def _times(w: float) -> list[float]:
    base = [-3 * w, -w - 1e-6, -1e-6, 0.0, 1e-6, w - 1e-6, w, w + 1e-6, 2 * w - 1e-6, 2 * w,
            2 * w + 0.5, 3 * w, 5 * w + 0.25, 5 * w + 0.25, 4 * w, 6 * w - 1e-6, 6 * w,
            6 * w + 1e-6, 9 * w]
    return base + [1e11 + t for t in base] + [-1e11 + t for t in base]


@pytest.mark.skipif("cython" not in IMPLS, reason="Cython twin not built")
@pytest.mark.parametrize("window", [1, 7, 60, 0.5, 123_456.789, 1e9])
@pytest.mark.parametrize("limit", [1, 3, 50, 1_000_000_000])
def test_counter_bucket_edges_agree(window: float, limit: int) -> None:
    """Hits at, just before and just after bucket edges (same, next, skipped buckets, clock going
    back, huge times; products below and above 2**53) give identical results on Cython and pure."""
    pure = IMPLS["pure"].SlidingWindowCounter(limit, window)
    fast = IMPLS["cython"].SlidingWindowCounter(limit, window)
    for t in _times(window):
        for key in ("a", "b"):
            assert fast.hit(key, t) == pure.hit(key, t), (key, t)
            cost = min(limit, 7)
            assert fast.hit(key, t, cost) == pure.hit(key, t, cost), (key, t, cost)
            assert fast.peek(key, t + window / 3) == pure.peek(key, t + window / 3)
    assert fast.sweep(1e11 + 100 * window) == pure.sweep(1e11 + 100 * window)
