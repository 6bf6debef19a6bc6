"""Hypothesis: the Cython rate windows behave exactly like the pure ones, bad input included."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crown_nexus import accel

IMPLS = accel.available("rate_window")
pytestmark = pytest.mark.skipif("cython" not in IMPLS, reason="Cython twin not built")

ALGOS = ["SlidingWindowCounter", "SlidingLog", "GCRA"]

keys = st.one_of(st.sampled_from(["a", "b", "c", "d", "e"]), st.text(max_size=3))
bad_keys = st.one_of(st.none(), st.integers(), st.binary(max_size=2))
times = st.one_of(
    st.floats(min_value=0, max_value=200, allow_nan=False),
    st.integers(min_value=-5, max_value=200),
)
bad_times = st.one_of(
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(1e13),
    st.just(10**400),
    st.text(max_size=2),
    st.booleans(),
    st.none(),
)
costs = st.one_of(st.integers(min_value=-2, max_value=12), st.just(1.0), st.just(True))

ops = st.one_of(
    st.tuples(st.just("hit"), keys, times, costs),
    st.tuples(st.just("hit"), keys, times, st.just(1)),
    st.tuples(st.just("hit"), bad_keys, times, st.just(1)),
    st.tuples(st.just("hit"), keys, bad_times, st.just(1)),
    st.tuples(st.just("peek"), keys, times),
    st.tuples(st.just("peek"), bad_keys, times),
    st.tuples(st.just("reset"), st.one_of(keys, bad_keys)),
    st.tuples(st.just("sweep"), st.one_of(times, bad_times)),
    st.tuples(st.just("clear")),
    st.tuples(st.just("len")),
)

ctor_args = st.tuples(
    st.one_of(st.integers(min_value=-1, max_value=12), st.just(2.0), st.just(10**12)),
    st.one_of(
        st.floats(min_value=-1, max_value=100),
        st.integers(min_value=-1, max_value=100),
        st.just(1e-9),
        st.just("5"),
    ),
    st.one_of(st.none(), st.integers(min_value=0, max_value=12), st.just(1.5)),
    st.one_of(st.integers(min_value=0, max_value=6), st.just(None)),
)


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def _build(mod: Any, algo: str, args: tuple[Any, Any, Any, Any]) -> tuple[str, Any]:
    limit, window, burst, max_keys = args
    kwargs: dict[str, Any] = {"max_keys": max_keys} if max_keys is not None else {}
    if algo == "GCRA" and burst is not None:
        kwargs["burst"] = burst
    return _outcome(lambda: getattr(mod, algo)(limit, window, **kwargs))


def _run(obj: Any, op: tuple[Any, ...]) -> tuple[str, Any]:
    name, *args = op
    if name == "len":
        return _outcome(len, obj)
    return _outcome(getattr(obj, name), *args)


@pytest.mark.parametrize("algo", ALGOS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=ctor_args, program=st.lists(ops, max_size=60))
def test_random_programs_agree(algo: str, args: tuple[Any, Any, Any, Any], program: list) -> None:
    """Any sequence of operations (bad ones included) gives identical results and errors."""
    pure_state, pure = _build(IMPLS["pure"], algo, args)
    cy_state, cy = _build(IMPLS["cython"], algo, args)
    assert pure_state == cy_state
    if pure_state != "ok":
        assert pure == cy
        return
    assert (pure.limit, pure.window, pure.max_keys) == (cy.limit, cy.window, cy.max_keys)
    for op in program:
        assert _run(pure, op) == _run(cy, op), op
        assert len(pure) == len(cy)


@pytest.mark.parametrize("algo", ALGOS)
@settings(max_examples=100, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=6),
    window=st.sampled_from([0.3, 1, 2.5, 10]),
    steps=st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), max_size=80),
)
def test_increasing_clock_agrees(algo: str, limit: int, window: float, steps: list[float]) -> None:
    """A realistic increasing clock on one key: identical results at every step."""
    pure = getattr(IMPLS["pure"], algo)(limit, window)
    cy = getattr(IMPLS["cython"], algo)(limit, window)
    now = 1000.0
    for dt in steps:
        now += dt
        assert pure.hit("k", now) == cy.hit("k", now)
        assert pure.peek("k", now) == cy.peek("k", now)
