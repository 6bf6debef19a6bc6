"""One allowed rate-limit check in memory: Cython vs pure vs the ``limits`` library.

Groups (each one algorithm, compiled / pure / peer side by side):

* ``rate_window-moving``  -- ``SlidingLog`` vs ``limits.strategies.MovingWindowRateLimiter``
* ``rate_window-counter`` -- ``SlidingWindowCounter`` vs ``limits``' ``SlidingWindowCounterRateLimiter``
* ``rate_window-gcra``    -- ``GCRA`` (no peer in ``limits``' memory storage)

All use ``MemoryStorage`` / in-process state and the same limit (10 000 per second per key, so
every measured check is allowed). One benchmark round is one allowed check for each of 1 000
client keys in turn, the clock read on every check (``time.monotonic()`` for ours; ``limits``
reads its own); batching the 1 000 checks keeps the harness's per-call overhead out of the
comparison, so a round's time / 1 000 is the cost of one check. Before timing, each contender
shows it gives the right answer (exactly N of N+1 hits allowed on a fresh key), and every round
asserts that all 1 000 checks were allowed. Our rows also store paired ratios against ``limits``'
moving window measured back to back (``extra_info["limits_moving_over_ours_*"]``).
Issue 7's target: the compiled moving-window check >= 20x ``limits``' moving window.
Run: ``pytest benches/bench_rate_window.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from limits import RateLimitItemPerSecond, storage, strategies

from crown_nexus import accel

IMPLS = accel.available("rate_window")
KINDS = sorted(IMPLS)
KEYS = [f"client-{i}" for i in range(1000)]
LIMIT = 10_000
#: timed rounds of our rows (each preceded by an untimed round of limits' moving window)
PAIRED_ROUNDS = 60

OURS = {
    "rate_window-moving": "SlidingLog",
    "rate_window-counter": "SlidingWindowCounter",
    "rate_window-gcra": "GCRA",
}
PEERS = {
    "rate_window-moving": strategies.MovingWindowRateLimiter,
    "rate_window-counter": strategies.SlidingWindowCounterRateLimiter,
}


def _info(benchmark: Any, impl: str) -> None:
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["impl"] = impl


def _cases() -> list[tuple[str, str]]:
    cases = [(group, kind) for group in OURS for kind in KINDS]
    cases += [(group, "limits") for group in PEERS]
    return cases


def _peer_check(group: str) -> Any:
    """A round of ``limits``' moving window (the target's peer): one allowed hit per key."""
    limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    item = RateLimitItemPerSecond(LIMIT, 1)
    hit = limiter.hit
    keys = KEYS

    def check() -> int:
        allowed = 0
        for key in keys:
            allowed += hit(item, key)
        return allowed

    return check


@pytest.mark.parametrize(("group", "impl"), _cases())
def test_allowed_check(benchmark: Any, group: str, impl: str) -> None:
    """One allowed hit for each of 1 000 client keys, clock read included.

    Our rows also run a round of ``limits``' moving window right before each timed round
    (untimed) and store the paired ratios peer / ours in ``extra_info`` (median of the
    per-round ratios, and best / best): on a loaded machine rows measured minutes apart are not
    comparable, rounds measured back to back are.
    """
    benchmark.group = group
    _info(benchmark, impl)
    keys = KEYS
    if impl == "limits":
        limiter = PEERS[group](storage.MemoryStorage())
        small = RateLimitItemPerSecond(5, 60)
        assert [limiter.hit(small, "probe") for _ in range(6)] == [True] * 5 + [False]
        item = RateLimitItemPerSecond(LIMIT, 1)
        hit = limiter.hit

        def check() -> int:
            allowed = 0
            for key in keys:
                allowed += hit(item, key)
            return allowed

        assert benchmark(check) == len(KEYS)
        return
    cls = getattr(IMPLS[impl], OURS[group])
    probe = cls(5, 60)
    now = time.monotonic()
    assert [probe.hit("probe", now)[0] for _ in range(6)] == [True] * 5 + [False]
    window = cls(LIMIT, 1, max_keys=10_000)
    whit = window.hit
    monotonic = time.monotonic

    def ours() -> int:
        allowed = 0
        for key in keys:
            allowed += whit(key, monotonic())[0]
        return allowed

    peer = _peer_check(group)
    perf = time.perf_counter
    peer_times: list[float] = []
    our_times: list[float] = []
    results: list[int] = []

    def setup() -> None:
        started = perf()
        assert peer() == len(keys)
        peer_times.append(perf() - started)

    def timed() -> None:
        started = perf()
        results.append(ours())
        our_times.append(perf() - started)

    benchmark.pedantic(timed, setup=setup, rounds=PAIRED_ROUNDS, warmup_rounds=3, iterations=1)
    assert set(results) == {len(keys)}
    ratios = sorted(p / o for p, o in zip(peer_times, our_times))
    benchmark.extra_info["limits_moving_over_ours_median"] = round(ratios[len(ratios) // 2], 2)
    benchmark.extra_info["limits_moving_over_ours_best"] = round(min(peer_times) / min(our_times), 2)
