"""Hypothesis: the Cython permission registry behaves exactly like the pure one, bad input included."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crown_nexus import accel

IMPLS = accel.available("permissions")
pytestmark = pytest.mark.skipif("cython" not in IMPLS, reason="Cython twin not built")


class P(StrEnum):
    """Enum members as names."""

    A = "res0:act0"
    B = "res1:act1"


good_perm = st.one_of(
    st.builds(
        lambda r, a: f"res{r}:act{a}",
        st.integers(min_value=0, max_value=12),
        st.integers(min_value=0, max_value=12),
    ),
    st.builds(lambda r: f"res{r}:admin", st.integers(min_value=0, max_value=12)),
    st.just("system:admin"),
)
bad_perm = st.one_of(
    st.sampled_from(["", "x", ":y", "x:", "a:b:c", "a b:c", "nope:x"]),
    st.none(),
    st.integers(min_value=-3, max_value=3),
    st.just(["res0:act0"]),
    st.sampled_from([P.A, P.B]),
)
perm = st.one_of(good_perm, good_perm, bad_perm)
role = st.one_of(
    st.sampled_from(["r0", "r1", "r2", "r3", "r4"]), st.sampled_from(["", " r", None, 7])
)
masks = st.one_of(
    st.integers(min_value=0, max_value=2**200),
    st.integers(min_value=0, max_value=2**20),
    st.integers(min_value=-5, max_value=-1),
    st.just(True),
    st.just(1.0),
    st.just("3"),
)
perm_lists = st.one_of(st.lists(perm, max_size=6), perm, st.none(), st.just(5))

ops = st.one_of(
    st.tuples(st.just("register_permission"), perm),
    st.tuples(st.just("register_role"), role, perm_lists, st.lists(role, max_size=2)),
    st.tuples(st.just("mask_of"), perm_lists),
    st.tuples(st.just("role_mask"), role),
    st.tuples(st.just("user_mask"), role, perm_lists, st.booleans()),
    st.tuples(st.just("has"), masks, perm),
    st.tuples(st.just("has_all"), masks, perm_lists),
    st.tuples(st.just("has_any"), masks, perm_lists),
    st.tuples(st.just("permissions_of"), masks),
    st.tuples(
        st.just("object_allowed"), masks, perm, st.one_of(st.booleans(), st.none(), st.just(2))
    ),
    st.tuples(st.just("role_permissions"), role),
    st.tuples(st.just("inherits"), role),
    st.tuples(st.just("bit_of"), perm),
    st.tuples(st.just("contains"), perm),
    st.tuples(st.just("permissions")),
    st.tuples(st.just("roles")),
)


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def _run(reg: Any, op: tuple[Any, ...]) -> tuple[str, Any]:
    name, *args = op
    if name == "contains":
        return _outcome(lambda p: p in reg, *args)
    return _outcome(getattr(reg, name), *args)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(ops, max_size=50))
def test_random_programs_agree(program: list[tuple[Any, ...]]) -> None:
    """Any sequence of registrations and checks gives identical results and errors."""
    pure = IMPLS["pure"].PermissionRegistry()
    cy = IMPLS["cython"].PermissionRegistry()
    for op in program:
        assert _run(pure, op) == _run(cy, op), op


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=200),
    granted=st.sets(st.integers(min_value=0, max_value=199)),
    asked=st.lists(st.integers(min_value=0, max_value=199), max_size=8),
)
def test_checks_agree_with_set_semantics(n: int, granted: set[int], asked: list[int]) -> None:
    """has/has_all/has_any equal the set answers, on both twins, below and above 64 bits."""
    names = [f"p{i}:x" for i in range(n)]
    granted = {g for g in granted if g < n}
    asked = [a for a in asked if a < n]
    for impl in IMPLS.values():
        reg = impl.PermissionRegistry()
        for name in names:
            reg.register_permission(name)
        mask = reg.mask_of([names[g] for g in granted])
        assert [reg.has(mask, names[a]) for a in asked] == [a in granted for a in asked]
        assert reg.has_all(mask, [names[a] for a in asked]) == all(a in granted for a in asked)
        assert reg.has_any(mask, [names[a] for a in asked]) == any(a in granted for a in asked)
