"""cache_keys hot path: the same cases against every implementation, and twins agree.

Also hosts the hypothesis strategies (nested values, odd values, bad values) that
``test_log_render`` reuses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import os
import subprocess
import sys
import uuid
from types import ModuleType
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus import accel
from crown_nexus._pure.cache_keys import MAX_DEPTH, UnhashableValueError
from tests.conftest import implementations_of


class Color(enum.Enum):
    """A plain Enum."""

    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    """An int-valued Enum (also an int)."""

    LOW = 1
    HIGH = 2


@dataclasses.dataclass(frozen=True)
class Point:
    """A dataclass with nested values."""

    x: Any
    y: Any


class Model(pydantic.BaseModel):
    """A pydantic model with a nested value."""

    name: str
    value: Any = None


class Opaque:
    """An arbitrary object (no stable hash, str() holds an address)."""


class Label(str):
    """A str subclass."""


class Broken:
    """An object whose __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("boom")


TZ = st.sampled_from(
    [
        None,
        dt.UTC,
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(-dt.timedelta(hours=8)),
    ]
)

text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, float("nan"), -float("nan"), 1e16, 1.5e-5, 1e-7, 5e-324]),
    text,
    st.binary(max_size=12),
)

odd = st.one_of(
    st.datetimes(timezones=TZ),
    st.dates(),
    st.times(timezones=TZ),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from(list(Color) + list(Level)),
    st.builds(Label, text),
    st.builds(bytearray, st.binary(max_size=8)),
)

hashable_leaves = st.one_of(
    scalars,
    st.datetimes(timezones=TZ),
    st.dates(),
    st.uuids(),
    st.decimals(allow_nan=False),
    st.sampled_from(list(Color) + list(Level)),
    st.builds(Label, text),
)


def nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nested lists, tuples, dicts, sets, dataclasses and pydantic models of ``leaves``."""

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=4).map(tuple),
            st.dictionaries(st.one_of(text, hashable_leaves), children, max_size=4),
            st.sets(hashable_leaves, max_size=4),
            st.frozensets(hashable_leaves, max_size=4),
            st.builds(Point, children, children),
            st.builds(Model, name=text.filter(lambda s: s.isprintable()), value=children),
        )

    return st.recursive(leaves, extend, max_leaves=12)


values = nested(st.one_of(scalars, odd))
bad = st.sampled_from([Opaque(), Broken(), object(), complex(1, 2), len, type, memoryview(b"x")])
values_with_bad = nested(st.one_of(scalars, odd, bad))


# ---------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(params=implementations_of("cache_keys"))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """Each available implementation of the cache_keys hot path."""
    return accel.available("cache_keys")[request.param]


def _all_impls() -> dict[str, ModuleType]:
    return accel.available("cache_keys")


def outcome(fn: Any, *args: Any) -> tuple[Any, ...]:
    """Result of ``fn(*args)``, or the exception's type and message."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("err", type(exc), str(exc))


def nest(depth: int) -> Any:
    """A list nested ``depth`` levels below the root (depth 0 is a bare int)."""
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------------------------------------
# the same cases against every implementation


def test_digest_is_64_lowercase_hex(impl: ModuleType) -> None:
    """Both functions return 64 lowercase hex characters."""
    for digest in (impl.make_key("m.f", (1,), {"a": 2}), impl.hash_value({"a": [1, 2]})):
        assert len(digest) == 64
        assert set(digest) <= set("0123456789abcdef")


def test_distinguishes_one_float_true_and_str(impl: ModuleType) -> None:
    """1, 1.0, True and "1" (and their zero-ish cousins) give four different keys."""
    for group in ([1, 1.0, True, "1"], [0, 0.0, -0.0, False, None, "", b"", "0"]):
        keys = {impl.make_key("m.f", (v,), {}) for v in group}
        assert len(keys) == len(group)


def test_containers_of_different_types_differ(impl: ModuleType) -> None:
    """list vs tuple, set vs frozenset, bytes vs str vs bytearray are different values."""
    pairs = [([1, 2], (1, 2)), ({1}, frozenset({1})), (b"x", "x"), (b"x", bytearray(b"x"))]
    for left, right in pairs:
        assert impl.hash_value(left) != impl.hash_value(right)


def test_args_and_kwargs_and_qualname_all_count(impl: ModuleType) -> None:
    """Moving a value between args and kwargs, or renaming the function, changes the key."""
    base = impl.make_key("m.f", (1,), {})
    assert base != impl.make_key("m.g", (1,), {})
    assert base != impl.make_key("m.f", (), {"x": 1})
    assert base != impl.make_key("m.f", (1, None), {})
    assert impl.make_key("m.f", (), {"a": 1, "b": 2}) != impl.make_key("m.f", (), {"a": 2, "b": 1})


def test_kwargs_order_does_not_matter(impl: ModuleType) -> None:
    """kwargs in any order give the same key."""
    assert impl.make_key("m.f", (), {"a": 1, "b": [2], "c": None}) == impl.make_key(
        "m.f", (), {"c": None, "b": [2], "a": 1}
    )


def test_dict_and_set_order_does_not_matter(impl: ModuleType) -> None:
    """Dicts, sets and frozensets built in different orders hash the same."""
    words = [f"w{i}" for i in range(50)]
    assert impl.hash_value(set(words)) == impl.hash_value(set(reversed(words)))
    assert impl.hash_value(frozenset(words)) == impl.hash_value(frozenset(reversed(words)))
    forward = {w: i for i, w in enumerate(words)}
    backward = {w: forward[w] for w in reversed(words)}
    assert impl.hash_value(forward) == impl.hash_value(backward)
    assert impl.hash_value({1: "a", "1": "b"}) == impl.hash_value({"1": "b", 1: "a"})


def test_nan_is_one_value_and_negative_zero_is_not_zero(impl: ModuleType) -> None:
    """Every NaN hashes alike; -0.0 keeps its sign."""
    nan = float("nan")
    assert impl.hash_value(nan) == impl.hash_value(-nan) == impl.hash_value(float("-nan"))
    assert impl.hash_value(0.0) != impl.hash_value(-0.0)
    assert impl.hash_value(float("inf")) != impl.hash_value(float("-inf"))


def test_ints_of_any_size(impl: ModuleType) -> None:
    """Ints beyond 64 bits, and beyond Python's int-to-str digit limit, hash and stay distinct."""
    values = [2**63 - 1, 2**63, 2**64, -(2**64), 2**200, -(2**200), 2**20000, -(2**20000)]
    digests = {impl.hash_value(v) for v in values}
    assert len(digests) == len(values)
    assert impl.hash_value(2**200) == impl.hash_value(int("1" + "0" * 60, 10) * 0 + 2**200)


def test_odd_types_hash_by_value(impl: ModuleType) -> None:
    """datetime, date, time, timedelta, UUID, Decimal, Enum, dataclass and pydantic hash by value."""
    pairs = [
        (dt.datetime(2024, 5, 1, 12, 0), dt.datetime(2024, 5, 1, 12, 0, 1)),
        (dt.datetime(2024, 5, 1, tzinfo=dt.UTC), dt.datetime(2024, 5, 1)),
        (dt.date(2024, 5, 1), dt.datetime(2024, 5, 1)),
        (dt.time(1, 2, 3), dt.time(1, 2, 4)),
        (dt.timedelta(days=1), dt.timedelta(seconds=86401)),
        (uuid.UUID(int=1), uuid.UUID(int=2)),
        (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
        (Color.RED, "red"),
        (Level.LOW, 1),
        (Color.BLUE, Level.HIGH),
        (Point(1, 2), (1, 2)),
        (Point(1, 2), Point(2, 1)),
        (Model(name="a"), Model(name="b")),
        (Model(name="a"), {"name": "a", "value": None}),
    ]
    for left, right in pairs:
        assert impl.hash_value(left) != impl.hash_value(right), (left, right)
    assert impl.hash_value(uuid.UUID(int=7)) == impl.hash_value(uuid.UUID(int=7))
    assert impl.hash_value(Point([1], {"a": 2})) == impl.hash_value(Point([1], {"a": 2}))
    assert impl.hash_value(Model(name="a", value=[1])) == impl.hash_value(
        Model(name="a", value=[1])
    )


def test_subclasses_hash_as_their_builtin_base(impl: ModuleType) -> None:
    """A str subclass, namedtuple or OrderedDict hashes like the builtin value it holds."""
    import collections

    pair = collections.namedtuple("pair", "a b")
    assert impl.hash_value(Label("x")) == impl.hash_value("x")
    assert impl.hash_value(pair(1, 2)) == impl.hash_value((1, 2))
    assert impl.hash_value(collections.OrderedDict(a=1)) == impl.hash_value({"a": 1})


@pytest.mark.parametrize(
    "value", [Opaque(), object(), complex(1, 2), len, Opaque, memoryview(b"x")]
)
def test_unhashable_values_raise_a_typed_error_naming_the_type(
    impl: ModuleType, value: Any
) -> None:
    """Anything without a stable encoding raises UnhashableValueError, never a repr with an address."""
    with pytest.raises(UnhashableValueError) as info:
        impl.hash_value([1, {"k": value}])
    message = str(info.value)
    assert type(value).__qualname__ in message
    assert "0x" not in message
    assert isinstance(info.value, TypeError)


def test_cycles_and_excessive_depth_raise(impl: ModuleType) -> None:
    """A self-containing value and nesting past MAX_DEPTH raise UnhashableValueError."""
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(UnhashableValueError, match="levels deep"):
        impl.hash_value(loop)
    impl.hash_value(nest(MAX_DEPTH))
    with pytest.raises(UnhashableValueError, match="levels deep"):
        impl.hash_value(nest(MAX_DEPTH + 1))


def test_bad_arguments_raise_type_error(impl: ModuleType) -> None:
    """make_key wants a str qualname, a tuple of args and a dict of kwargs."""
    with pytest.raises(TypeError, match="qualname must be a str"):
        impl.make_key(1, (), {})
    with pytest.raises(TypeError, match="args must be a tuple"):
        impl.make_key("f", [1], {})
    with pytest.raises(TypeError, match="kwargs must be a dict"):
        impl.make_key("f", (), [("a", 1)])


GOLDEN = {
    "key": ("m.f", (1, "a", None), {"b": [1.5, True], "c": {2, 3}}),
    "value": {"id": uuid.UUID(int=1), "when": dt.date(2024, 1, 2), "tags": frozenset({"x", "y"})},
}


GOLDEN_KEY = "a463f341b9de90477fd43a6b275ca8626425512315d61c633cbfe67f4179a1e3"
GOLDEN_VALUE = "cb8493a9149ce37ed1cc638d2c6ca526fa636585361fc96bba24d383273f9518"


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def _doc_node(tag: bytes, head: bytes = b"", children: list[bytes] | None = None) -> bytes:
    """A node as the docstring writes it: leaf, container or composite, by tag."""
    if tag in (b"l", b"t", b"d", b"S", b"z"):
        kids = children or []
        return tag + _u32(len(kids)) + b"".join(kids)
    if tag in (b"E", b"C", b"P"):
        kids = children or []
        return tag + _u32(len(head)) + head + _u32(len(kids)) + b"".join(kids)
    return tag + _u32(len(head)) + head


def _doc_digest(node: bytes) -> str:
    import hashlib

    return hashlib.blake2b(b"cnv1" + node, digest_size=32).hexdigest()


def test_encoding_is_the_documented_one(impl: ModuleType) -> None:
    """hash_value follows the node encoding written in the pure module's docstring."""
    one = _doc_node(b"i", b"1")
    two = _doc_node(b"i", b"2")
    cases = [
        (None, _doc_node(b"N")),
        (True, _doc_node(b"T")),
        (255, _doc_node(b"i", b"ff")),
        (-255, _doc_node(b"i", b"-ff")),
        (1.0, _doc_node(b"f", bytes.fromhex("3ff0000000000000"))),
        (float("nan"), _doc_node(b"f", bytes.fromhex("7ff8000000000000"))),
        ("é", _doc_node(b"s", "é".encode())),
        ("\ud800", _doc_node(b"s", b"\xed\xa0\x80")),
        ([1, 2], _doc_node(b"l", b"", [one, two])),
        ({2, 1}, _doc_node(b"S", b"", sorted([one, two]))),
        ({"a": 1}, _doc_node(b"d", b"", [_doc_node(b"s", b"a"), one])),
        (uuid.UUID(int=1), _doc_node(b"u", uuid.UUID(int=1).bytes)),
        (Color.BLUE, _doc_node(b"E", f"{__name__}.Color".encode(), [two])),
        (
            Point(1, 2),
            _doc_node(
                b"C",
                f"{__name__}.Point".encode(),
                [_doc_node(b"s", b"x"), one, _doc_node(b"s", b"y"), two],
            ),
        ),
        (dt.date(2024, 1, 2), _doc_node(b"a", b"2024-01-02")),
        (decimal.Decimal("1.50"), _doc_node(b"c", b"1.50")),
    ]
    for value, node in cases:
        assert impl.hash_value(value) == _doc_digest(node), value


def test_digests_are_pinned(impl: ModuleType) -> None:
    """The encoding is part of the contract: a change would silently invalidate every cache."""
    assert impl.make_key(*GOLDEN["key"]) == GOLDEN_KEY
    assert impl.hash_value(GOLDEN["value"]) == GOLDEN_VALUE


_SCRIPT = """
import datetime, uuid
from crown_nexus import accel
m = accel.get("cache_keys")
print(accel.implementations()["cache_keys"])
print(m.make_key("m.f", (1, "a", None), {"b": [1.5, True], "c": {2, 3}}))
print(m.hash_value({"id": uuid.UUID(int=1), "when": datetime.date(2024, 1, 2), "tags": frozenset({"x", "y"})}))
print(m.hash_value({f"s{i}" for i in range(100)}))
"""


@pytest.mark.parametrize(("seed", "mode"), [("1", "pure"), ("4242", "auto")])
def test_same_digest_in_another_process(impl: ModuleType, seed: str, mode: str) -> None:
    """A fresh interpreter with another PYTHONHASHSEED (and either implementation) agrees."""
    env = {**os.environ, "PYTHONHASHSEED": seed, "CROWN_NEXUS_IMPL": mode}
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    kind, key, value, strings = result.stdout.split()
    compiled = "native" if "native" in accel.available("cache_keys") else "pure"
    assert kind == ("pure" if mode == "pure" else compiled)
    assert key == impl.make_key(*GOLDEN["key"])
    assert value == impl.hash_value(GOLDEN["value"])
    assert strings == impl.hash_value({f"s{i}" for i in range(100)})


@pytest.mark.skipif(
    os.environ.get("CROWN_NEXUS_EXPECT_COMPILED", "") in ("", "0"),
    reason="CROWN_NEXUS_EXPECT_COMPILED is not set (only CI and `nox -s tests` require compiled builds)",
)
def test_native_twin_is_in_use_when_expected() -> None:
    """CI must not silently fall back to pure Python."""
    assert accel.implementations()["cache_keys"] == "native"
    assert "native" in accel.available("cache_keys")


# ---------------------------------------------------------------------------------------------
# properties: every implementation agrees with the pure one, bad input included


def _require_twins() -> dict[str, ModuleType]:
    impls = _all_impls()
    if len(impls) < 2:
        pytest.skip("only the pure implementation is installed; nothing to compare")
    return impls


@settings(max_examples=150, deadline=None)
@given(value=values_with_bad)
def test_twins_agree_on_hash_value(value: Any) -> None:
    """hash_value: same digest or same exception (type and message) in every implementation."""
    impls = _require_twins()
    expected = outcome(impls["pure"].hash_value, value)
    for name, module in impls.items():
        assert outcome(module.hash_value, value) == expected, name


@settings(max_examples=150, deadline=None)
@given(
    qualname=st.one_of(text, st.integers()),
    args=st.one_of(st.lists(values_with_bad, max_size=3).map(tuple), st.lists(st.integers())),
    kwargs=st.one_of(st.dictionaries(text, values_with_bad, max_size=3), st.integers()),
)
def test_twins_agree_on_make_key(qualname: Any, args: Any, kwargs: Any) -> None:
    """make_key: same digest or same exception for any arguments, wrong types included."""
    impls = _require_twins()
    expected = outcome(impls["pure"].make_key, qualname, args, kwargs)
    for name, module in impls.items():
        assert outcome(module.make_key, qualname, args, kwargs) == expected, name


@settings(max_examples=100, deadline=None)
@given(kwargs=st.dictionaries(text, values, min_size=2, max_size=5), data=st.data())
def test_kwargs_order_property(kwargs: dict[str, Any], data: st.DataObject) -> None:
    """Any permutation of kwargs gives the same key, in every implementation."""
    order = data.draw(st.permutations(list(kwargs)))
    shuffled = {k: kwargs[k] for k in order}
    for module in _all_impls().values():
        assert module.make_key("m.f", (), kwargs) == module.make_key("m.f", (), shuffled)


@settings(max_examples=100, deadline=None)
@given(
    members=st.lists(st.one_of(st.integers(), text), min_size=0, max_size=40, unique=True),
    data=st.data(),
)
def test_twins_agree_on_dicts_and_sets_either_side_of_the_stack_size(
    members: list[Any], data: st.DataObject
) -> None:
    """Dicts and sets of 0-40 members (the compiled twin keeps up to 16 on the stack) agree."""
    impls = _require_twins()
    order = data.draw(st.permutations(members))
    as_dict = {m: i for i, m in enumerate(members)}
    shuffled = {m: as_dict[m] for m in order}
    for value in (as_dict, set(members), frozenset(members), [as_dict, set(members)]):
        expected = impls["pure"].hash_value(value)
        for name, module in impls.items():
            assert module.hash_value(value) == expected, name
    for name, module in impls.items():
        assert module.make_key("m.f", (), shuffled) == impls["pure"].make_key("m.f", (), as_dict)
        assert module.hash_value(shuffled) == module.hash_value(as_dict), name


def test_reentrant_call_from_python_code_during_encoding(impl: ModuleType) -> None:
    """A value whose field read calls make_key itself (re-entering the encoder) hashes right."""
    inner: list[str] = []

    @dataclasses.dataclass
    class Sneaky:
        """A dataclass that computes another key while its fields are read for this one."""

        a: Any

        def __getattribute__(self, name: str) -> Any:
            if name == "a":
                inner.append(impl.make_key("inner", (list(range(50)),), {"x": {1, 2, 3}}))
            return object.__getattribute__(self, name)

    def plain(x: Any) -> Any:
        return Point(x, None)

    sneaky = [1, {"k": Sneaky([2, 3])}, "tail"]
    digest = impl.hash_value(sneaky)
    assert inner == [impl.make_key("inner", (list(range(50)),), {"x": {1, 2, 3}})]
    inner.clear()
    # the outer encoding was not disturbed: same digest with the inner call answered once more
    assert impl.hash_value(sneaky) == digest
    assert digest != impl.hash_value([1, {"k": plain([2, 3])}, "tail"])
    assert impl.make_key("f", (sneaky,), {}) == impls_pure_key(sneaky)


def impls_pure_key(value: Any) -> str:
    """The pure twin's key of ``f(value)`` (the reference)."""
    return accel.available("cache_keys")["pure"].make_key("f", (value,), {})
