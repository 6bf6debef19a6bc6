"""Rate-limit windows: every case runs against every implementation (pure and Cython)."""

from __future__ import annotations

import math
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus import accel
from tests.conftest import implementations_of

ALGOS = ["SlidingWindowCounter", "SlidingLog", "GCRA"]


@pytest.fixture(params=implementations_of("rate_window"))
def rw(request: pytest.FixtureRequest) -> ModuleType:
    """The rate_window implementation under test."""
    return accel.available("rate_window")[request.param]


@pytest.fixture(params=ALGOS)
def algo(request: pytest.FixtureRequest, rw: ModuleType):  # type: ignore[no-untyped-def]
    """A factory for one algorithm of the implementation under test."""
    return getattr(rw, request.param)


def test_cython_twin_is_built_and_chosen() -> None:
    """The compiled twin is importable here and chosen in auto mode (no silent fallback)."""
    if accel.requested_mode() == "pure":
        pytest.skip("CROWN_NEXUS_IMPL=pure")
    assert "cython" in accel.available("rate_window")
    assert accel.implementations()["rate_window"] == "cython"


@pytest.mark.parametrize("limit", [1, 3, 10, 100])
def test_exactly_limit_hits_allowed_in_a_fresh_window(algo, limit: int) -> None:
    """With limit N, exactly N hits at one instant pass and the next is denied."""
    w = algo(limit, 60)
    results = [w.hit("k", 5.0) for _ in range(limit + 3)]
    assert [r[0] for r in results] == [True] * limit + [False] * 3
    assert [r[1] for r in results[:limit]] == list(range(1, limit + 1))
    assert all(r[1] == limit for r in results[limit:])


def test_denied_hit_is_not_counted(algo) -> None:
    """Denied hits do not consume capacity: the count stays at the limit."""
    w = algo(2, 10)
    w.hit("k", 0.0)
    w.hit("k", 0.0)
    for _ in range(50):
        assert w.hit("k", 1.0)[:2] == (False, 2)
    assert w.peek("k", 1.0)[:2] == (False, 2)


def test_keys_are_independent(algo) -> None:
    """Each key has its own window."""
    w = algo(1, 10)
    assert w.hit("a", 0.0)[0] is True
    assert w.hit("a", 0.0)[0] is False
    assert w.hit("b", 0.0)[0] is True
    assert len(w) == 2


def test_reset_after_is_positive_and_admits_exactly_then(algo) -> None:
    """A denied hit's reset_after is > 0 and a hit just after it is admitted, just before is not."""
    w = algo(3, 10)
    for t in (0.0, 0.1, 0.2):
        assert w.hit("k", t)[0]
    allowed, _, reset = w.hit("k", 0.5)
    assert not allowed and reset > 0
    before = w.peek("k", 0.5 + reset - 1e-6)
    assert before[0] is False
    assert w.hit("k", 0.5 + reset)[0] is True


def test_allowed_reset_after_counts_down_to_empty(algo) -> None:
    """After an allowed hit reset_after is > 0 and at that time the key holds nothing."""
    w = algo(5, 10)
    allowed, count, reset = w.hit("k", 100.0)
    assert allowed and count == 1 and reset > 0
    assert w.peek("k", 100.0 + reset) == (True, 0, 0.0)
    assert w.sweep(100.0 + reset) == 1
    assert len(w) == 0


def test_peek_does_not_consume(algo) -> None:
    """peek never changes the count."""
    w = algo(2, 10)
    assert w.peek("k", 0.0) == (True, 0, 0.0)
    for _ in range(5):
        w.peek("k", 0.0)
    assert len(w) == 0
    assert w.hit("k", 0.0)[:2] == (True, 1)
    assert w.peek("k", 0.0)[:2] == (True, 1)
    assert w.hit("k", 0.0)[:2] == (True, 2)


def test_reset_and_clear(algo) -> None:
    """reset forgets one key; clear forgets all."""
    w = algo(1, 10)
    w.hit("a", 0.0)
    w.hit("b", 0.0)
    w.reset("a")
    w.reset("missing")
    assert len(w) == 1
    assert w.hit("a", 0.0)[0] is True
    w.clear()
    assert len(w) == 0
    assert w.hit("b", 0.0)[0] is True


def test_attributes(rw: ModuleType) -> None:
    """limit, window, max_keys (and burst for GCRA) reflect the constructor."""
    w = rw.SlidingWindowCounter(7, 1.5, max_keys=10)
    assert (w.limit, w.window, w.max_keys) == (7, 1.5, 10)
    g = rw.GCRA(20, 60, burst=40)
    assert (g.limit, g.window, g.burst) == (20, 60.0, 40)
    assert rw.GCRA(20, 60).burst == 20
    for name in ("limit", "window", "max_keys"):
        with pytest.raises(AttributeError):
            setattr(w, name, 1)
    with pytest.raises(AttributeError):
        g.burst = 1


def test_max_keys_bounds_memory_evicting_least_recently_used(algo) -> None:
    """At most max_keys are tracked; the least recently used key is evicted first."""
    w = algo(5, 100, max_keys=3)
    for k in ("a", "b", "c"):
        w.hit(k, 0.0)
    w.hit("a", 1.0)  # a is now most recent; b is the LRU
    w.hit("d", 2.0)
    assert len(w) == 3
    assert w.peek("b", 2.0) == (True, 0, 0.0)
    assert w.peek("a", 2.0)[1] == 2
    for i in range(1000):
        w.hit(f"x{i}", 3.0)
    assert len(w) == 3


def test_idle_keys_expire(algo) -> None:
    """sweep drops idle keys only; a new key also drops an idle least-recently-used one."""
    w = algo(5, 10)
    w.hit("old", 0.0)
    w.hit("mid", 1.0)
    w.hit("new", 25.0)  # "old" is idle and least recently used: dropped on insert
    assert len(w) == 2
    assert w.sweep(25.0) == 1  # "mid"
    assert len(w) == 1
    w.hit("other", 100.0)  # "new" is idle at 100 and is the LRU: dropped on insert
    assert len(w) == 1


def test_time_never_runs_backwards_per_key(algo) -> None:
    """A hit stamped earlier than the key's last time is treated as happening at that time."""
    w = algo(2, 10)
    w.hit("k", 50.0)
    w.hit("k", 50.0)
    assert w.hit("k", 10.0)[0] is False
    assert w.peek("k", 0.0)[0] is False


def test_cost(algo) -> None:
    """cost counts several requests at once and is all-or-nothing."""
    w = algo(5, 10)
    assert w.hit("k", 0.0, cost=3)[:2] == (True, 3)
    assert w.hit("k", 0.0, cost=3)[:2] == (False, 3)
    assert w.hit("k", 0.0, cost=2)[:2] == (True, 5)


def test_sliding_counter_weights_previous_bucket(rw: ModuleType) -> None:
    """The previous bucket counts in proportion to its overlap with the sliding window."""
    w = rw.SlidingWindowCounter(10, 60)
    for _ in range(10):
        w.hit("k", 0.0)
    # 15 s into the next bucket, 3/4 of the previous bucket still overlaps: 7 used.
    assert w.peek("k", 75.0)[:2] == (True, 7)
    assert [w.hit("k", 75.0)[0] for _ in range(4)] == [True, True, True, False]
    # at the exact start of the next bucket the whole previous one counts
    w2 = rw.SlidingWindowCounter(10, 60)
    for _ in range(10):
        w2.hit("k", 59.0)
    assert w2.peek("k", 60.0)[:2] == (False, 10)
    assert w2.peek("k", 120.0) == (True, 0, 0.0)


def test_sliding_log_window_boundary(rw: ModuleType) -> None:
    """A stamp stops counting exactly window seconds after it was made."""
    w = rw.SlidingLog(2, 10)
    w.hit("k", 0.0)
    w.hit("k", 4.0)
    denied = w.hit("k", 9.999999)
    assert denied == (False, 2, pytest.approx(1e-6))
    assert w.hit("k", 10.0)[:2] == (True, 2)
    assert w.hit("k", 13.999999)[0] is False
    assert w.hit("k", 14.0)[:2] == (True, 2)


def test_sliding_log_any_window_holds_at_most_limit(rw: ModuleType) -> None:
    """Over a long run of hits, no window of length `window` contains more than limit allowed."""
    w = rw.SlidingLog(5, 1.0)
    allowed = [t / 10 for t in range(300) if w.hit("k", t / 10)[0]]
    for i, t in enumerate(allowed):
        inside = [s for s in allowed[i:] if s < t + 1.0 - 1e-9]
        assert len(inside) <= 5
    assert len(allowed) == 150  # 5 per second over 30 seconds


def test_gcra_burst_then_sustained_rate(rw: ModuleType) -> None:
    """GCRA admits burst at once, then one request per window/limit."""
    g = rw.GCRA(20, 60, burst=40)
    assert sum(g.hit("k", 0.0)[0] for _ in range(50)) == 40
    allowed, count, reset = g.hit("k", 0.0)
    assert (allowed, count, reset) == (False, 40, 3.0)
    assert g.hit("k", 2.999999)[0] is False
    assert g.hit("k", 3.0)[:2] == (True, 40)
    # a full window later the whole window's worth has drained
    assert sum(g.hit("k", 63.0)[0] for _ in range(30)) == 20


def test_gcra_exact_after_a_full_window(rw: ModuleType) -> None:
    """No float drift: after exactly one window, exactly limit hits pass again."""
    for limit, window in [(7, 60), (3, 0.1), (1000, 3600), (13, 1.7)]:
        g = rw.GCRA(limit, window)
        assert sum(g.hit("k", 1.0)[0] for _ in range(limit + 1)) == limit
        assert sum(g.hit("k", 1.0 + window)[0] for _ in range(limit + 1)) == limit


def test_negative_and_wall_clock_times(algo) -> None:
    """Any clock works: negative monotonic-like and large wall-clock values."""
    for base in (-1000.5, 1.7e9):
        w = algo(2, 10)
        assert [w.hit("k", base)[0] for _ in range(3)] == [True, True, False]
        assert w.hit("k", base + 20.0)[0] is True


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"limit": 0, "window": 1}, ValueError),
        ({"limit": -1, "window": 1}, ValueError),
        ({"limit": 10**12, "window": 1}, ValueError),
        ({"limit": 1.5, "window": 1}, TypeError),
        ({"limit": True, "window": 1}, TypeError),
        ({"limit": "5", "window": 1}, TypeError),
        ({"limit": 5, "window": 0}, ValueError),
        ({"limit": 5, "window": -1.0}, ValueError),
        ({"limit": 5, "window": math.nan}, ValueError),
        ({"limit": 5, "window": math.inf}, ValueError),
        ({"limit": 5, "window": 1e-9}, ValueError),
        ({"limit": 5, "window": "60"}, TypeError),
        ({"limit": 5, "window": 1, "max_keys": 0}, ValueError),
        ({"limit": 5, "window": 1, "max_keys": None}, TypeError),
    ],
)
def test_constructor_validation(algo, kwargs, exc) -> None:
    """Bad constructor arguments raise TypeError/ValueError."""
    with pytest.raises(exc):
        algo(**kwargs)


def test_gcra_burst_validation(rw: ModuleType) -> None:
    """burst must be a positive int."""
    with pytest.raises(ValueError):
        rw.GCRA(5, 1, burst=0)
    with pytest.raises(TypeError):
        rw.GCRA(5, 1, burst=2.5)


@pytest.mark.parametrize(
    ("args", "exc"),
    [
        ((b"k", 0.0), TypeError),
        ((None, 0.0), TypeError),
        (("k", "0"), TypeError),
        (("k", None), TypeError),
        (("k", True), TypeError),
        (("k", math.nan), ValueError),
        (("k", math.inf), ValueError),
        (("k", 1e13), ValueError),
        (("k", 0.0, 0), ValueError),
        (("k", 0.0, -3), ValueError),
        (("k", 0.0, 1.0), TypeError),
        (("k", 0.0, 6), ValueError),
        (("k", 0.0, 10**30), ValueError),
    ],
)
def test_hit_validation(algo, args, exc) -> None:
    """Bad key, time or cost raise typed errors and track nothing."""
    w = algo(5, 10)
    with pytest.raises(exc):
        w.hit(*args)
    assert len(w) == 0


def test_peek_reset_sweep_validation(algo) -> None:
    """peek/reset/sweep validate their arguments too."""
    w = algo(5, 10)
    with pytest.raises(TypeError):
        w.peek(1, 0.0)
    with pytest.raises(TypeError):
        w.reset(1)
    with pytest.raises(TypeError):
        w.sweep("now")
    with pytest.raises(ValueError):
        w.sweep(math.nan)


# --- properties, on every implementation -------------------------------------------------------

KINDS = implementations_of("rate_window")
steps = st.lists(st.integers(min_value=0, max_value=400_000), min_size=1, max_size=120)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=100, deadline=None)
@given(limit=st.integers(min_value=1, max_value=5), gaps=steps)
def test_sliding_log_is_exact(kind: str, limit: int, gaps: list[int]) -> None:
    """A hit is allowed iff fewer than `limit` allowed hits lie in the last window (1 s)."""
    w = accel.available("rate_window")[kind].SlidingLog(limit, 1)
    now_us, allowed_at = 0, []
    for gap in gaps:
        now_us += gap
        in_window = [t for t in allowed_at if t + 1_000_000 > now_us]
        allowed, count, _ = w.hit("k", now_us / 1e6)
        assert allowed is (len(in_window) < limit)
        assert count == len(in_window) + allowed
        if allowed:
            allowed_at.append(now_us)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=100, deadline=None)
@given(limit=st.integers(min_value=1, max_value=5), gaps=steps)
def test_counter_never_exceeds_limit_per_fixed_window(
    kind: str, limit: int, gaps: list[int]
) -> None:
    """The sliding counter never admits more than `limit` in one fixed bucket."""
    w = accel.available("rate_window")[kind].SlidingWindowCounter(limit, 1)
    now_us, per_bucket = 0, {}
    for gap in gaps:
        now_us += gap
        if w.hit("k", now_us / 1e6)[0]:
            per_bucket[now_us // 1_000_000] = per_bucket.get(now_us // 1_000_000, 0) + 1
    assert all(n <= limit for n in per_bucket.values())


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=100, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=4),
    burst=st.integers(min_value=1, max_value=6),
    gaps=steps,
)
def test_gcra_admits_at_most_burst_plus_rate(
    kind: str, limit: int, burst: int, gaps: list[int]
) -> None:
    """Over any span T, GCRA admits at most burst + T * limit / window requests."""
    w = accel.available("rate_window")[kind].GCRA(limit, 1, burst=burst)
    now_us, allowed_at = 0, []
    for gap in gaps:
        now_us += gap
        if w.hit("k", now_us / 1e6)[0]:
            allowed_at.append(now_us)
    for i, start in enumerate(allowed_at):
        for j in range(i, len(allowed_at)):
            span = allowed_at[j] - start
            assert j - i + 1 <= burst + span * limit / 1_000_000


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("algo_name", ALGOS)
@settings(max_examples=60, deadline=None)
@given(
    max_keys=st.integers(min_value=1, max_value=8),
    hits=st.lists(
        st.tuples(st.integers(min_value=0, max_value=30), st.integers(0, 50)), max_size=150
    ),
)
def test_memory_is_bounded(
    kind: str, algo_name: str, max_keys: int, hits: list[tuple[int, int]]
) -> None:
    """However many keys arrive, at most max_keys are tracked."""
    w = getattr(accel.available("rate_window")[kind], algo_name)(3, 1, max_keys=max_keys)
    now = 0.0
    for key, gap in hits:
        now += gap / 10
        w.hit(f"k{key}", now)
        assert len(w) <= max_keys


def test_exact_under_threads(algo) -> None:
    """8 threads hammering one key at one instant: exactly `limit` hits are allowed."""
    import threading

    w = algo(500, 60)
    allowed: list[int] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        allowed.append(sum(w.hit("shared", 1.0)[0] for _ in range(200)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 500
