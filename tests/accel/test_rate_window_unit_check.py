"""rate_window.UnitCheck and CheckRateLimit (check_rate_limit's compiled fast path): every case
runs against every implementation (pure and Cython)."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import pytest

from crown_nexus import accel
from tests.conftest import implementations_of

ALGOS = ["SlidingWindowCounter", "SlidingLog", "GCRA"]


@pytest.fixture(params=implementations_of("rate_window"))
def rw(request: pytest.FixtureRequest) -> ModuleType:
    """The rate_window implementation under test."""
    return accel.available("rate_window")[request.param]


class Rig:
    """A UnitCheck over a fresh window with a hand-driven clock and every callback recorded."""

    def __init__(
        self,
        rw: ModuleType,
        algo: str = "SlidingWindowCounter",
        limit: int = 3,
        window: float = 10,
        *,
        sample: int = 1,
        sample_every: int = 64,
        flush_every: int = 256,
        start: float = 1000.0,
    ) -> None:
        self.window = getattr(rw, algo)(limit, window)
        self.now: Any = start
        self.sweep_due = [start + 60.0]
        self.sweeps: list[Any] = []
        self.sample = [sample]
        self.cell = [0]
        self.noted: list[int] = []
        self.refused: list[tuple[int, float]] = []
        self.check = rw.UnitCheck(
            self.window, self.clock, self.sweep, self.sweep_due, self.sample, sample_every,
            self.cell, flush_every, self.noted.append, self.refuse,
        )

    def clock(self) -> Any:
        return self.now

    def sweep(self, now: float) -> int:
        self.sweeps.append(now)
        self.sweep_due[0] = now + 60.0
        return int(self.window.sweep(now))

    def refuse(self, count: int, reset: float) -> None:
        self.refused.append((count, reset))


def _guide(answer: tuple[bool, int, float]) -> tuple[bool, int, int]:
    allowed, count, reset = answer
    if allowed:
        return False, count, (math.ceil(reset - 1e-9) if reset > 1e-9 else 0)
    return True, count, max(1, math.ceil(reset - 1e-9))


@pytest.mark.parametrize("algo", ALGOS)
def test_check_counts_exactly_as_the_window_does(rw: ModuleType, algo: str) -> None:
    """check/__call__ return what a hit on a twin window at the same time returns; guide the
    guide's rounding of it; allowed checks bump the cell, refusals are reported at once."""
    rig = Rig(rw, algo, limit=3, window=10)
    twin = getattr(rw, algo)(3, 10)
    answers = []
    for i in range(8):
        want = twin.hit("k", rig.now, 1)
        way = i % 3
        got = rig.check.check("k") if way == 0 else rig.check("k") if way == 1 else None
        if way == 2:
            assert rig.check.guide("k") == _guide(want), i
        else:
            assert got == want, i
        answers.append(want)
        rig.now += 0.5
    allowed = [a for a in answers if a[0]]
    refused = [a for a in answers if not a[0]]
    assert allowed and refused
    assert rig.cell == [len(allowed)]
    assert rig.refused == [(a[1], a[2]) for a in refused]
    assert rig.noted == [1]


def test_guide_types_and_rounding(rw: ModuleType) -> None:
    """guide answers (bool, int, int): whole seconds rounded up, at least 1 when limited."""
    rig = Rig(rw, "GCRA", limit=1, window=0.5)
    first = rig.check.guide("k")
    assert first == (False, 1, 1)  # 0.5 s until empty rounds up to 1
    assert [type(v) for v in first] == [bool, int, int]
    limited = rig.check.guide("k")
    assert limited == (True, 1, 1)
    assert [type(v) for v in limited] == [bool, int, int]
    exact = Rig(rw, "SlidingLog", limit=1, window=2)
    assert exact.check.guide("k") == (False, 1, 2)  # exactly 2.0 s stays 2
    assert exact.check.guide("k") == (True, 1, 2)


def test_a_returned_answer_is_never_changed_by_the_next_check(rw: ModuleType) -> None:
    """An answer the caller still holds keeps its values after further checks."""
    rig = Rig(rw, limit=2)
    first = rig.check.guide("k")
    second = rig.check.guide("k")
    third = rig.check.guide("k")
    # a count of 1 is back to zero after 10 s and 1 us (11 whole seconds), 2 after 15 s and
    # 1 us (16); the refused third is admitted again after 10 s and 1 us
    assert (first, second, third) == ((False, 1, 11), (False, 2, 16), (True, 2, 11))


def test_declined_at_the_sampled_position(rw: ModuleType) -> None:
    """At sample position 0 the check is declined (None) and nothing is counted or advanced."""
    rig = Rig(rw, sample=0)
    assert rig.check("k") is None
    assert rig.check.guide("k") is None
    assert rig.sample == [0] and rig.cell == [0] and len(rig.window) == 0
    assert rig.noted == [] and rig.refused == [] and rig.sweeps == []


class Key(str):
    """A str subclass (its hash/eq could be anything): never on the fast path."""


@pytest.mark.parametrize("key", [None, 1, b"k", Key("k"), ("k",)])
def test_declined_for_keys_that_are_not_exactly_str(rw: ModuleType, key: object) -> None:
    """A key that is not exactly a str is declined (the service raises or checks it)."""
    rig = Rig(rw, sample=5)
    assert rig.check(key) is None
    assert rig.check.guide(key) is None
    assert rig.sample == [5] and rig.cell == [0] and len(rig.window) == 0


def test_sample_position_advances_and_wraps(rw: ModuleType) -> None:
    """Each counted check advances the shared position, wrapping to 0 at sample_every."""
    rig = Rig(rw, limit=100, sample=1, sample_every=4)
    for expected in (2, 3, 0):
        assert rig.check.guide("k") is not None
        assert rig.sample == [expected]
    assert rig.check.guide("k") is None  # the service's turn (it advances the position)


def test_noted_at_one_and_at_flush_every(rw: ModuleType) -> None:
    """noted(c) is called when the cell reaches 1 and when it reaches flush_every."""
    rig = Rig(rw, limit=100, flush_every=3)

    def flush(c: int) -> None:
        rig.noted.append(c)
        if c >= 3:
            rig.cell[0] = 0  # what the metrics flush does

    rig.check = rw.UnitCheck(
        rig.window, rig.clock, rig.sweep, rig.sweep_due, rig.sample, 1000, rig.cell, 3, flush,
        rig.refuse,
    )
    for _ in range(7):
        rig.check("k")
    assert rig.noted == [1, 3, 1, 3, 1]
    assert rig.cell == [1]


def test_refusals_do_not_touch_the_cell(rw: ModuleType) -> None:
    """A refused check reports (count, reset_after) and leaves the allowed tally alone."""
    rig = Rig(rw, limit=1)
    rig.check("k")
    answer = rig.check("k")
    assert answer is not None and answer[0] is False
    assert rig.refused == [(1, answer[2])] and rig.cell == [1]


def test_sweeps_first_when_due(rw: ModuleType) -> None:
    """When the clock reaches sweep_due the backend sweeps (at that time) before counting."""
    rig = Rig(rw, limit=1, window=40)
    rig.check("old")
    rig.now += 30
    rig.check("k")
    assert rig.sweeps == [] and len(rig.window) == 2
    rig.now += 31
    answer = rig.check.guide("new")
    assert answer is not None and answer[:2] == (False, 1)
    assert rig.sweeps == [rig.now] and rig.sweep_due == [rig.now + 60.0]
    assert len(rig.window) == 1  # both idle keys were dropped, then "new" was counted


def test_an_int_clock_and_a_bad_clock(rw: ModuleType) -> None:
    """An int clock works; a clock giving a non-number raises the window's TypeError."""
    rig = Rig(rw, start=1000)
    assert rig.check("k") == rw.SlidingWindowCounter(3, 10).hit("k", 1000)
    rig.now = "soon"
    with pytest.raises(TypeError):
        rig.check("k")
    rig.now = float("nan")
    rig.sweep_due[0] = float("inf")
    with pytest.raises(ValueError):
        rig.check("k")


@pytest.mark.parametrize(
    ("position", "bad", "error"),
    [
        (0, object(), TypeError),
        (1, 5, TypeError),
        (2, None, TypeError),
        (3, [1.0, 2.0], TypeError),
        (3, (1.0,), TypeError),
        (4, [], TypeError),
        (5, 0, ValueError),
        (5, 2.0, TypeError),
        (6, None, TypeError),
        (7, True, TypeError),
        (8, "noted", TypeError),
        (9, 3, TypeError),
    ],
)
def test_unit_check_rejects_bad_arguments(rw: ModuleType, position: int, bad: object, error: type) -> None:
    """Each constructor argument is checked with a clear error."""
    args: list[Any] = [
        rw.SlidingWindowCounter(1, 1), lambda: 1.0, lambda now: 0, [0.0], [1], 64, [0], 256,
        lambda c: None, lambda c, r: None,
    ]
    args[position] = bad
    with pytest.raises(error):
        rw.UnitCheck(*args)


def test_unit_check_takes_only_its_own_modules_windows(rw: ModuleType) -> None:
    """A window of the other implementation is refused (the compiled check reads its state)."""
    for kind, other in accel.available("rate_window").items():
        if other is rw:
            continue
        with pytest.raises(TypeError, match="of this module"):
            rw.UnitCheck(
                other.SlidingWindowCounter(1, 1), lambda: 1.0, lambda now: 0, [0.0], [1], 64,
                [0], 256, lambda c: None, lambda c, r: None,
            )


# ---------------------------------------------------------------------------- CheckRateLimit
DEFAULT = "sliding"
OTHER = "log"


class Service:
    """Stands for a rate limiting service (only its identity matters to the fast path)."""


class Unhashable:
    __hash__ = None  # type: ignore[assignment]


class BadHash:
    def __hash__(self) -> int:
        raise ValueError("no hash for you")


def _fast_rig(rw: ModuleType) -> tuple[Any, dict[str, Any], list[Any], Rig, Rig]:
    rules: dict[str, Any] = {DEFAULT: {}, OTHER: {}}
    current: list[Any] = [Service()]
    fast = rw.CheckRateLimit(lambda: current[0], rules, DEFAULT)
    a, b = Rig(rw, limit=2), Rig(rw, "SlidingLog", limit=1)
    rules[DEFAULT][5] = {60: ["rule-a", current[0], a.check]}
    rules[OTHER][5] = {60: ["rule-b", current[0], b.check]}
    return fast, rules, current, a, b


def test_fast_answers_through_the_cached_checker(rw: ModuleType) -> None:
    """Exact-int limits with an entry built for the current service: the checker's guide."""
    fast, _, _, a, b = _fast_rig(rw)
    assert fast.fast("k", 5, 60, DEFAULT) == (False, 1, 11)
    assert fast("k", 5, 60, DEFAULT) == (False, 2, 16)
    assert fast.fast("k", 5, 60, DEFAULT) == (True, 2, 11)
    assert fast.fast("k", 5, 60, OTHER) == (False, 1, 10)
    assert a.cell == [2] and b.cell == [1]


@pytest.mark.parametrize(
    ("limits", "algorithm"),
    [
        ((5, 61), DEFAULT),
        ((6, 60), DEFAULT),
        ((True, 60), DEFAULT),
        ((5.0, 60), DEFAULT),
        ((5, 60.0), DEFAULT),
        (("5", 60), DEFAULT),
        ((5, 60), "unknown"),
        ((5, 60), None),
        ((5, 60), Unhashable()),
    ],
)
def test_fast_misses_return_none(rw: ModuleType, limits: tuple[Any, Any], algorithm: Any) -> None:
    """Anything but exact cached ints and a known algorithm is a miss (None), nothing counted."""
    fast, _, _, a, b = _fast_rig(rw)
    assert fast.fast("k", *limits, algorithm) is None
    assert a.cell == [0] and b.cell == [0]


def test_fast_hash_errors_other_than_type_errors_propagate(rw: ModuleType) -> None:
    """An algorithm whose hash raises ValueError raises it (as a dict lookup would)."""
    fast, *_ = _fast_rig(rw)
    with pytest.raises(ValueError, match="no hash for you"):
        fast.fast("k", 5, 60, BadHash())


def test_fast_misses_for_another_service(rw: ModuleType) -> None:
    """An entry built for another service is a miss (None): the full path rebuilds it."""
    fast, _, current, a, _ = _fast_rig(rw)
    current[0] = Service()
    assert fast.fast("k", 5, 60, DEFAULT) is None
    assert a.cell == [0]


def test_fast_hands_back_the_entry_without_a_checker(rw: ModuleType) -> None:
    """The current service's entry without a checker (another backend) comes back itself:
    the caller asks that service."""
    fast, rules, current, a, _ = _fast_rig(rw)
    entry = ["rule-a", current[0], None]
    rules[DEFAULT][5][60] = entry
    assert fast.fast("k", 5, 60, DEFAULT) is entry
    assert a.cell == [0]


def test_fast_hands_back_the_entry_on_a_declined_check(rw: ModuleType) -> None:
    """A checker that declines (sampled position, non-str key) makes the fast path return the
    entry: the caller awaits its service's check; nothing was counted."""
    fast, rules, _, a, _ = _fast_rig(rw)
    entry = rules[DEFAULT][5][60]
    assert fast.fast(b"k", 5, 60, DEFAULT) is entry
    a.sample[0] = 0
    assert fast.fast("k", 5, 60, DEFAULT) is entry
    assert a.cell == [0] and len(a.window) == 0


def test_fast_uses_any_checker_with_a_guide(rw: ModuleType) -> None:
    """A checker of another kind is asked through its guide method."""
    fast, rules, current, _, _ = _fast_rig(rw)

    class Checker:
        def guide(self, key: str) -> tuple[bool, int, int]:
            return (True, 9, 4)

    rules[DEFAULT][5][60] = ["rule", current[0], Checker()]
    assert fast.fast("k", 5, 60, DEFAULT) == (True, 9, 4)


def test_fast_sees_entries_added_and_cleared_later(rw: ModuleType) -> None:
    """The fast path reads the caller's dicts: entries added or cleared later count."""
    fast, rules, current, a, _ = _fast_rig(rw)
    rules[DEFAULT][7] = {1: ["rule", current[0], a.check]}
    assert fast.fast("k", 7, 1, DEFAULT) == (False, 1, 11)
    rules[DEFAULT].clear()
    assert fast.fast("k", 7, 1, DEFAULT) is None


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("not callable", {DEFAULT: {}}, DEFAULT), TypeError),
        ((lambda: None, [], DEFAULT), TypeError),
        ((lambda: None, {OTHER: {}}, DEFAULT), TypeError),
        ((lambda: None, {DEFAULT: []}, DEFAULT), TypeError),
    ],
)
def test_check_rate_limit_rejects_bad_arguments(rw: ModuleType, args: tuple[Any, ...], error: type) -> None:
    """The constructor checks its service getter and rule tables."""
    with pytest.raises(error):
        rw.CheckRateLimit(*args)


def test_the_monotonic_clock_read_directly(rw: ModuleType) -> None:
    """With time.monotonic as the clock (the compiled check reads it without a call) the check
    counts at the current monotonic time and sweeps with that time as a float."""
    import time

    window = rw.SlidingWindowCounter(5, 10)
    sweeps: list[Any] = []
    due = [0.0]

    def sweep(now: float) -> int:
        sweeps.append(now)
        due[0] = now + 60.0
        return int(window.sweep(now))

    check = rw.UnitCheck(
        window, time.monotonic, sweep, due, [1], 64, [0], 256, lambda c: None, lambda c, r: None
    )
    before = time.monotonic()
    answer = check.guide("k")
    after = time.monotonic()
    assert answer is not None and answer[:2] == (False, 1)
    assert len(sweeps) == 1 and type(sweeps[0]) is float and before <= sweeps[0] <= after
    assert window.peek("k", after)[1] == 1
    assert check.guide("k") is not None and len(sweeps) == 1  # not due again for 60 s
    assert window.peek("k", time.monotonic())[1] == 2


@pytest.mark.parametrize("algo", ALGOS)
def test_timed_takes_the_sampled_check_and_reports_its_duration(rw: ModuleType, algo: str) -> None:
    """With ``timed`` the sampled position is checked here (counted and metered like any other)
    and ``timed(seconds)`` gets its duration once; the position advances as the service's would;
    a non-str key is still declined and counts nothing."""
    rig = Rig(rw, algo, limit=2, window=10, sample=0, sample_every=3)
    durations: list[float] = []
    rig.check = rw.UnitCheck(
        rig.window, rig.clock, rig.sweep, rig.sweep_due, rig.sample, 3,
        rig.cell, 256, rig.noted.append, rig.refuse, durations.append,
    )
    twin = getattr(rw, algo)(2, 10)
    assert rig.check(b"k") is None and rig.sample == [0] and rig.cell == [0]
    positions = []
    for _ in range(4):
        want = twin.hit("k", rig.now, 1)
        assert rig.check("k") == want
        positions.append(rig.sample[0])
    assert positions == [1, 2, 0, 1]
    assert len(durations) == 2 and all(type(d) is float and 0.0 <= d < 5.0 for d in durations)
    assert rig.cell == [2] and [count for count, _ in rig.refused] == [2, 2]
    rig.sample[0] = 0
    assert rig.check.guide("k") == (True, 2, _guide(twin.hit("k", rig.now, 1))[2])
    assert len(durations) == 3


def test_timed_must_be_callable(rw: ModuleType) -> None:
    """A ``timed`` that is not callable is a TypeError at construction, like the other hooks."""
    rig = Rig(rw)
    with pytest.raises(TypeError):
        rw.UnitCheck(
            rig.window, rig.clock, rig.sweep, rig.sweep_due, rig.sample, 64,
            rig.cell, 256, rig.noted.append, rig.refuse, 42,
        )
