"""Hypothesis: the Cython UnitCheck and CheckRateLimit behave exactly like the pure ones, on
random sequences of keys, costs, clock moves and bad input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crown_nexus import accel

IMPLS = accel.available("rate_window")
pytestmark = pytest.mark.skipif("cython" not in IMPLS, reason="Cython twin not built")

ALGOS = ["SlidingWindowCounter", "SlidingLog", "GCRA"]


class Key(str):
    """A str subclass: never on the fast path."""


class Unhashable:
    __hash__ = None  # type: ignore[assignment]


good_keys = st.one_of(st.sampled_from(["a", "b", "c"]), st.text(max_size=2))
bad_keys = st.one_of(st.none(), st.integers(-2, 2), st.binary(max_size=1), st.just(Key("a")))
keys = st.one_of(good_keys, bad_keys)
moves = st.one_of(
    st.floats(min_value=0, max_value=5, allow_nan=False),
    st.integers(min_value=0, max_value=3),
    st.just(-0.5),
    st.just(61.0),
)
bad_clocks = st.sampled_from([float("nan"), float("inf"), "x", None, True, 10**400, 1e13])
costs = st.one_of(st.integers(min_value=-1, max_value=6), st.just(1.0), st.just(True))

unit_ops = st.one_of(
    st.tuples(st.sampled_from(["check", "guide", "call"]), keys),
    st.tuples(st.sampled_from(["check", "guide"]), good_keys),
    st.tuples(st.just("hit"), good_keys, costs),
    st.tuples(st.just("advance"), moves),
    st.tuples(st.just("bad_clock"), bad_clocks),
    st.tuples(st.just("sample"), st.integers(min_value=0, max_value=6)),
    st.tuples(st.just("due"), st.one_of(st.floats(0, 2000, allow_nan=False), st.integers(0, 2000))),
)


class Rig:
    """One UnitCheck over a fresh window, a hand-driven clock and recorded callbacks."""

    def __init__(
        self, mod: Any, algo: str, limit: int, window: float, sample_every: int, flush_every: int,
        timed: bool = False,
    ) -> None:
        self.window = getattr(mod, algo)(limit, window)
        self.now: Any = 1000.0
        self.sweep_due: list[Any] = [1060.0]
        self.log: list[Any] = []
        self.sample = [1]
        self.cell = [0]
        self.flush_every = flush_every
        self.check = mod.UnitCheck(
            self.window, self.clock, self.sweep, self.sweep_due, self.sample, sample_every,
            self.cell, flush_every, self.noted, self.refused,
            (lambda seconds: self.log.append(("timed", type(seconds)))) if timed else None,
        )

    def clock(self) -> Any:
        return self.now

    def sweep(self, now: Any) -> int:
        self.log.append(("sweep", now))
        self.sweep_due[0] = now + 60.0
        return int(self.window.sweep(now))

    def noted(self, c: int) -> None:
        self.log.append(("noted", c))
        if c >= self.flush_every:
            self.cell[0] = 0

    def refused(self, count: int, reset: float) -> None:
        self.log.append(("refused", count, reset))

    def state(self) -> tuple[Any, ...]:
        return (list(self.log), list(self.sample), list(self.cell), list(self.sweep_due), len(self.window))

    def run(self, op: tuple[Any, ...]) -> tuple[str, Any]:
        name, *args = op
        try:
            if name == "check":
                return "ok", self.check.check(args[0])
            if name == "call":
                return "ok", self.check(args[0])
            if name == "guide":
                answer = self.check.guide(args[0])
                if answer is not None:
                    assert [type(v) for v in answer] == [bool, int, int]
                return "ok", answer
            if name == "hit":
                return "ok", self.window.hit(args[0], self.now if isinstance(self.now, float) else 1000.0, args[1])
            if name == "advance":
                if isinstance(self.now, (int, float)) and not isinstance(self.now, bool) and abs(self.now) < 1e6:
                    self.now += args[0]
                else:
                    self.now = 1000.0 + args[0]
                return "ok", None
            if name == "bad_clock":
                self.now = args[0]
                return "ok", None
            if name == "sample":
                self.sample[0] = args[0]
                return "ok", None
            self.sweep_due[0] = args[0]
            return "ok", None
        except Exception as exc:
            return type(exc).__name__, str(exc)


@pytest.mark.parametrize("algo", ALGOS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(min_value=1, max_value=5),
    window=st.sampled_from([0.5, 1, 3, 10]),
    sample_every=st.integers(min_value=1, max_value=5),
    flush_every=st.integers(min_value=1, max_value=5),
    program=st.lists(unit_ops, max_size=60),
    timed=st.booleans(),
)
def test_unit_checks_agree(
    algo: str, limit: int, window: float, sample_every: int, flush_every: int, program: list,
    timed: bool,
) -> None:
    """Any sequence of checks, direct hits, clock moves and bad input, with or without a
    ``timed`` hook taking the sampled check: identical answers, errors, callbacks (the timed
    reports included), sampling position, tally cell and window size."""
    pure = Rig(IMPLS["pure"], algo, limit, window, sample_every, flush_every, timed)
    cy = Rig(IMPLS["cython"], algo, limit, window, sample_every, flush_every, timed)
    for op in program:
        assert pure.run(op) == cy.run(op), op
        assert pure.state() == cy.state(), op


# ---------------------------------------------------------------------------- CheckRateLimit
DEFAULT = "sliding"
OTHER = "log"
limits_values = st.sampled_from([1, 2, 5, True, 5.0, "5", None])
windows_values = st.sampled_from([60, 61, 60.0, 1])
algorithms = st.sampled_from([DEFAULT, OTHER, "other", None, "unhashable"])
fast_ops = st.one_of(
    st.tuples(st.just("fast"), keys, limits_values, windows_values, algorithms),
    st.tuples(st.just("fast"), good_keys, st.sampled_from([1, 2]), st.sampled_from([60, 1]), st.sampled_from([DEFAULT, OTHER])),
    st.tuples(st.just("entry"), st.sampled_from([1, 2]), st.sampled_from([60, 1]), st.sampled_from([DEFAULT, OTHER]), st.booleans()),
    st.tuples(st.just("swap"),),
    st.tuples(st.just("clear"),),
    st.tuples(st.just("advance"), moves),
    st.tuples(st.just("sample"), st.integers(min_value=0, max_value=3)),
)


class FastRig:
    """A CheckRateLimit over rule tables whose entries hold UnitChecks of one module."""

    def __init__(self, mod: Any) -> None:
        self.mod = mod
        self.services = [object(), object()]
        self.current = 0
        self.rules: dict[Any, Any] = {DEFAULT: {}, OTHER: {}}
        self.fast = mod.CheckRateLimit(lambda: self.services[self.current], self.rules, DEFAULT)
        self.now = 1000.0
        self.sample = [1]
        self.cells: list[list[int]] = []
        self.log: list[Any] = []

    def _checker(self, limit: int, window: int, algo: str) -> Any:
        cls = self.mod.SlidingWindowCounter if algo == DEFAULT else self.mod.SlidingLog
        cell = [0]
        self.cells.append(cell)
        return self.mod.UnitCheck(
            cls(limit, window), lambda: self.now, lambda now: 0, [1e9], self.sample, 4, cell, 3,
            lambda c: self.log.append(("noted", c)),
            lambda count, reset: self.log.append(("refused", count, reset)),
        )

    def run(self, op: tuple[Any, ...]) -> tuple[str, Any]:
        name, *args = op
        try:
            if name == "fast":
                key, limit, window, algo = args
                algo = Unhashable() if algo == "unhashable" else algo
                answer = self.fast.fast(key, limit, window, algo)
                if type(answer) is list:  # the entry itself: the service must answer
                    assert self.rules[algo][limit][window] is answer
                    return "entry", (answer[0], self.services.index(answer[1]), answer[2] is None)
                return "ok", answer
            if name == "entry":
                limit, window, algo, with_checker = args
                checker = self._checker(limit, window, algo) if with_checker else None
                self.rules[algo].setdefault(limit, {})[window] = ["rule", self.services[self.current], checker]
            elif name == "swap":
                self.current = 1 - self.current
            elif name == "clear":
                for table in self.rules.values():
                    table.clear()
            elif name == "advance":
                self.now += args[0]
            else:
                self.sample[0] = args[0]
            return "ok", None
        except Exception as exc:
            return type(exc).__name__, str(exc)

    def state(self) -> tuple[Any, ...]:
        return (list(self.log), list(self.sample), [list(c) for c in self.cells])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(fast_ops, max_size=60))
def test_fast_paths_agree(program: list) -> None:
    """Any sequence of lookups (bad limits, keys and algorithms included), entries added and
    cleared, service swaps and clock moves: identical answers, errors and metering."""
    pure = FastRig(IMPLS["pure"])
    cy = FastRig(IMPLS["cython"])
    for op in program:
        assert pure.run(op) == cy.run(op), op
        assert pure.state() == cy.state(), op
