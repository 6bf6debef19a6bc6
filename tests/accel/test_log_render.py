"""log_render hot path: the same cases against every implementation, and twins agree byte for byte
(``render`` and the chain's last step ``LineRenderer``)."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import enum
import os
import sys
import uuid
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus import accel
from crown_nexus._pure import log_render as pure_render
from crown_nexus._pure.log_render import MAX_DEPTH
from crown_nexus.logging import processors as _P
from crown_nexus.logging.context import request_context
from crown_nexus.logging.redaction import Redactor
from crown_nexus.logging.render import json_renderer
from crown_nexus.testing import freeze_time
from tests.accel.test_cache_keys import (
    Broken,
    Color,
    Label,
    Level,
    Model,
    Opaque,
    Point,
    hashable_leaves,
    text,
    values_with_bad,
)
from tests.conftest import implementations_of

MARKER = "<max depth exceeded>"


@pytest.fixture(params=implementations_of("log_render"))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """Each available implementation of the log_render hot path."""
    return accel.available("log_render")[request.param]


def parse(line: bytes) -> Any:
    """The single JSON document in a rendered line (asserting it is exactly one line)."""
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    return orjson.loads(line)


def nest(levels: int) -> Any:
    """``levels`` lists nested around an int."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def depth_of(value: Any) -> int:
    """Nesting levels of lists in a parsed value."""
    levels = 0
    while isinstance(value, list):
        levels += 1
        value = value[0]
    return levels


# ---------------------------------------------------------------------------------------------
# the same cases against every implementation


def test_plain_event_is_compact_ordered_json_line(impl: ModuleType) -> None:
    """A plain event renders exactly as orjson does: compact, insertion order, newline."""
    event = {
        "timestamp": "2024-05-01T12:00:00Z",
        "level": "info",
        "event": "user logged in",
        "user_id": 42,
        "ratio": 0.25,
        "ok": True,
        "missing": None,
        "tags": ["a", "b"],
        "nested": {"z": 1, "a": [1.5, {"deep": "é ✓ \U0001f600"}]},
    }
    line = impl.render(event)
    assert line == orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
    assert list(parse(line)) == list(event)
    assert b": " not in line
    assert b", " not in line


def test_non_ascii_is_utf8_and_control_characters_are_escaped(impl: ModuleType) -> None:
    """Non-ASCII stays raw UTF-8; quotes, backslashes and control characters are escaped."""
    value = 'é\u2028"\\/\n\r\t\x08\x0c\x00\x1f\x7f'
    line = impl.render({"s": value})
    assert line == '{"s":"é\u2028\\"\\\\/\\n\\r\\t\\b\\f\\u0000\\u001f\x7f"}\n'.encode()
    assert parse(line) == {"s": value}


@pytest.mark.parametrize(
    "number",
    [0.0, -0.0, 1.0, 0.1, 1e15, 1e16, 1.5e-5, 1e-7, 5e-324, 1.7976931348623157e308, 123.456, -2.5],
)
def test_floats_render_like_orjson(impl: ModuleType, number: float) -> None:
    """Floats use orjson's shortest round-trip format."""
    assert impl.render({"f": number}) == orjson.dumps(
        {"f": number}, option=orjson.OPT_APPEND_NEWLINE
    )


def test_nan_and_infinity_are_null(impl: ModuleType) -> None:
    """NaN and infinities have no JSON form: null."""
    assert parse(impl.render({"a": float("nan"), "b": float("inf"), "c": -float("inf")})) == {
        "a": None,
        "b": None,
        "c": None,
    }


def test_int_range_and_big_ints(impl: ModuleType) -> None:
    """64-bit ints are numbers; bigger ones are decimal strings (hex past Python's digit limit)."""
    event = {
        "lo": -(2**63),
        "hi": 2**64 - 1,
        "over": 2**64,
        "under": -(2**63) - 1,
        "huge": 2**20000,
    }
    parsed = parse(impl.render(event))
    assert parsed["lo"] == -(2**63)
    assert parsed["hi"] == 2**64 - 1
    assert parsed["over"] == str(2**64)
    assert parsed["under"] == str(-(2**63) - 1)
    assert parsed["huge"] == hex(2**20000)


def test_odd_values_have_their_documented_form(impl: ModuleType) -> None:
    """Every odd type renders as the pure module's docstring says."""
    when = dt.datetime(2024, 5, 1, 12, 30, 0, 123, tzinfo=dt.UTC)
    uid = uuid.UUID(int=5)
    event = {
        "datetime": when,
        "date": when.date(),
        "time": dt.time(1, 2, 3),
        "timedelta": dt.timedelta(days=1, seconds=2),
        "uuid": uid,
        "decimal": decimal.Decimal("1.50"),
        "enum": Color.RED,
        "int_enum": Level.HIGH,
        "bytes": b"ok\xff",
        "bytearray": bytearray(b"x"),
        "memoryview": memoryview(b"y"),
        "error": ValueError("bad thing"),
        "set": {1},
        "frozenset": frozenset({"a"}),
        "tuple": (1, 2),
        "dataclass": Point(1, [2]),
        "model": Model(name="m", value={"k": 1}),
        "label": Label("lbl"),
        "ordered": collections.OrderedDict(b=1),
        "broken": Broken(),
        "opaque": Opaque(),
    }
    parsed = parse(impl.render(event))
    assert parsed["datetime"] == when.isoformat()
    assert parsed["date"] == "2024-05-01"
    assert parsed["time"] == "01:02:03"
    assert parsed["timedelta"] == "1 day, 0:00:02"
    assert parsed["uuid"] == str(uid)
    assert parsed["decimal"] == "1.50"
    assert parsed["enum"] == "red"
    assert parsed["int_enum"] == 2
    assert parsed["bytes"] == "ok\\xff"
    assert parsed["bytearray"] == "x"
    assert parsed["memoryview"] == "y"
    assert parsed["error"] == {"type": "ValueError", "message": "bad thing"}
    assert parsed["set"] == [1]
    assert parsed["frozenset"] == ["a"]
    assert parsed["tuple"] == [1, 2]
    assert parsed["dataclass"] == {"x": 1, "y": [2]}
    assert parsed["model"] == {"name": "m", "value": {"k": 1}}
    assert parsed["label"] == "lbl"
    assert parsed["ordered"] == {"b": 1}
    assert parsed["broken"] == "<unprintable Broken>"
    assert parsed["opaque"].startswith("<tests.accel.test_cache_keys.Opaque object at")


def test_non_str_keys_are_stringified(impl: ModuleType) -> None:
    """None, bools, ints, floats, Enums and objects as keys become strings."""
    event = {None: 1, True: 2, 7: 3, 2.5: 4, Color.BLUE: 5, uuid.UUID(int=1): 6, 2**70: 7}
    assert list(parse(impl.render(event))) == [
        "null",
        "true",
        "7",
        "2.5",
        "2",
        str(uuid.UUID(int=1)),
        str(2**70),
    ]


def test_lone_surrogates_become_replacement_characters(impl: ModuleType) -> None:
    """A str that is not valid UTF-8 still renders: each lone surrogate becomes U+FFFD."""
    assert parse(impl.render({"a\udc80": "x\ud800y"})) == {"a\ufffd": "x\ufffdy"}


def test_self_containing_and_too_deep_values_are_cut(impl: ModuleType) -> None:
    """Nesting stops at MAX_DEPTH levels with a marker string; cycles cannot hang or raise."""
    loop: list[Any] = []
    loop.append(loop)
    parse(impl.render({"loop": loop}))
    ok = parse(impl.render({"x": nest(MAX_DEPTH - 1)}))
    assert depth_of(ok["x"]) == MAX_DEPTH - 1
    cut = parse(impl.render({"x": nest(MAX_DEPTH + 10)}))
    inner = cut["x"]
    for _ in range(MAX_DEPTH - 1):
        inner = inner[0]
    assert inner == MARKER


def test_non_dict_events_are_wrapped(impl: ModuleType) -> None:
    """Anything that is not a dict renders as {"event": value}; a dict subclass as a dict."""
    assert parse(impl.render("just text")) == {"event": "just text"}
    assert parse(impl.render([1, 2])) == {"event": [1, 2]}
    assert parse(impl.render(None)) == {"event": None}
    assert parse(impl.render(collections.OrderedDict(a=1))) == {"a": 1}


@pytest.mark.skipif(
    os.environ.get("CROWN_NEXUS_EXPECT_COMPILED", "") in ("", "0"),
    reason="CROWN_NEXUS_EXPECT_COMPILED is not set (only CI and `nox -s tests` require compiled builds)",
)
def test_native_twin_is_in_use_when_expected() -> None:
    """CI must not silently fall back to pure Python."""
    assert accel.implementations()["log_render"] == "native"


# ---------------------------------------------------------------------------------------------
# properties

keys = st.one_of(text, hashable_leaves)
events = st.dictionaries(keys, values_with_bad, max_size=6)


def _require_twins() -> dict[str, ModuleType]:
    impls = accel.available("log_render")
    if len(impls) < 2:
        pytest.skip("only the pure implementation is installed; nothing to compare")
    return impls


@settings(max_examples=200, deadline=None)
@given(event=events)
def test_twins_render_identical_bytes(event: dict[Any, Any]) -> None:
    """Every implementation gives byte-identical output for any event, odd values included."""
    impls = _require_twins()
    expected = impls["pure"].render(event)
    for name, module in impls.items():
        assert module.render(event) == expected, name


@settings(max_examples=200, deadline=None)
@given(event=events)
def test_output_is_one_parsable_line(event: dict[Any, Any]) -> None:
    """Whatever the values, each implementation returns one JSON object on one line."""
    for module in accel.available("log_render").values():
        assert isinstance(parse(module.render(event)), dict)


@settings(max_examples=200, deadline=None)
@given(event=events)
def test_pure_fast_path_equals_the_canonical_form(event: dict[Any, Any]) -> None:
    """render(d) is orjson.dumps(S(d)) exactly, as the docstring defines it."""
    canonical = orjson.dumps(pure_render._sanitize(event, 0), option=orjson.OPT_APPEND_NEWLINE)
    assert pure_render.render(event) == canonical


@settings(max_examples=200, deadline=None)
@given(number=st.floats(), string=st.text())
def test_floats_and_strings_match_orjson(number: float, string: str) -> None:
    """Plain floats and strings render exactly as orjson renders them."""
    event = {"f": number, "s": string, string: [number]}
    expected = orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
    for module in accel.available("log_render").values():
        assert module.render(event) == expected


@pytest.mark.parametrize("special", ['"', "\\", "\n", "\x01", "\x1f", "é", "\x7f", "\u2028"])
def test_escapes_at_every_position_match_orjson(impl: ModuleType, special: str) -> None:
    """A special character anywhere in strings of 0-40 chars is written exactly as orjson does."""
    for length in range(41):
        for pos in range(length):
            text = "ab" * (length // 2) + "c" * (length % 2)
            text = text[:pos] + special + text[pos + 1 :]
            event = {text: text}
            assert impl.render(event) == orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)


def test_twins_agree_on_enum_and_date_edge_cases() -> None:
    """Enum members with container, big-int or surrogate values, and datetime subclasses."""
    import enum

    class Odd(enum.Enum):
        """Enum values that are not plain scalars."""

        LIST = (1, [2, 3])
        BIG = 2**80
        SURROGATE = "x\ud800"

    class MyDate(dt.date):
        """A date subclass (rendered by the pure rules, not the fast path)."""

    event = {
        "list": Odd.LIST,
        "big": Odd.BIG,
        "surrogate": Odd.SURROGATE,
        "mydate": MyDate(2024, 1, 2),
        "aware": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        "td": dt.timedelta(days=-1, microseconds=5),
        "dec": decimal.Decimal("-0E-7"),
    }
    impls = _require_twins()
    expected = impls["pure"].render(event)
    for module in impls.values():
        assert module.render(event) == expected
    assert parse(expected)["big"] == str(2**80)


class Mutator:
    """A value whose __str__ resizes the event dict that holds it."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target

    def __str__(self) -> str:
        self.target.update({f"x{i}": i for i in range(20)})
        return "mutated"


def test_an_event_resized_while_rendering_gives_the_fallback_line(impl: ModuleType) -> None:
    """A conversion that resizes the dict being rendered never crashes or raises."""
    event: dict[str, Any] = {"a": 1}
    event["m"] = Mutator(event)
    assert impl.render(event) == b'{"event":"<unrenderable event>"}\n'


def test_top_level_keys_made_per_event_render_like_pure(impl: ModuleType) -> None:
    """Keys created fresh per event (freed, their memory reused by other strs) never pick up
    another key's cached text: every line equals the pure renderer's."""
    for i in range(3000):
        key = "".join(["k", str(i % 977), "-é" * (i % 3)])
        other = "".join(["x", str(i)])
        event = {"level": "info", key: i, other: [key], "event": "e"}
        assert impl.render(event) == pure_render.render(event)
        del key, other, event


# ---------------------------------------------------------------------------------------------
# LineRenderer: the JSON chain's last step, (logger, method_name, event_dict) -> bytes
#
# The pure LineRenderer is the general path itself (EventPreparer + render); the compiled one
# writes the same bytes without building the prepared dict and hands what it does not cover to
# that path. Each renderer is called straight from the test function, so both see the same
# calling frame (the caller location on the line).


class _Shade(enum.Enum):
    """An Enum value in a log field."""

    DARK = "dark"


class _Unprintable:
    """A value whose text cannot be taken."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


_SECRETISH = st.sampled_from(
    [
        "Bearer abc.def-ghi-jkl",
        "eyJhbGciOi.eyJzdWIiOi.sig_x",
        "4111 1111 1111 1111",
        "a=b",
        "token=abc",
        "x:y",
        "pw=1",
        "short",
        "exactly-12ch",
        "thirteen-char",
        "postgres://u:hunter2@db/x",
        "lone \udc80 surrogate",
        "\ud800",
    ]
)
_FIELD_KEYS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        [
            "user",
            "password",
            "api-key",
            "Authorization",
            "my_token_id",
            "path",
            "card\udc80",
            "logger",
            "level",
            "lineno",
            "timestamp",
            "request_id",
            "func_name",
            "exception",
            "exc_info",
            "trace_id",
        ]
    ),
    st.integers(),
    st.none(),
)
_FIELD_VALUES = st.one_of(
    values_with_bad,
    _SECRETISH,
    st.sampled_from(
        [
            dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            _Shade.DARK,
            _Unprintable(),
            ValueError("boom Bearer abc.def-ghi-jkl"),
            b"\xffbytes token=abc",
        ]
    ),
)
_EVENT_VALUES = st.one_of(st.none(), st.text(max_size=20), _SECRETISH, st.integers(), st.just(b"x"))
_EXTRA = st.dictionaries(
    st.sampled_from(["trace_id", "span_id", "user", "path", "level", "event"]),
    st.one_of(st.text(max_size=8), _SECRETISH, st.integers()),
    max_size=2,
)
_METHODS = st.sampled_from(
    ["debug", "info", "msg", "warn", "error", "exception", "critical", "trace"]
)


def _line_renderers() -> dict[str, Any]:
    """One LineRenderer per available implementation, each with its own redactor."""
    return {kind: json_renderer(Redactor(), kind) for kind in accel.available("log_render")}


def _outcome(renderer: Any, method: str, event_dict: Any) -> Any:
    """The rendered line, or the type and text of what the call raised."""
    try:
        return renderer(None, method, event_dict)
    except Exception as exc:
        return (type(exc), str(exc))


def _render_all(method: str, event_dict: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Each implementation's outcome for one event, at one frozen instant and context."""
    results = {}
    with freeze_time(), request_context(request_id="req-1", user_id="u-1", **extra):
        for kind, renderer in _line_renderers().items():
            copy = dict(event_dict) if isinstance(event_dict, dict) else event_dict
            results[kind] = _outcome(renderer, method, copy)
    return results


@settings(max_examples=300, deadline=None)
@given(
    method=_METHODS,
    event=_EVENT_VALUES,
    logger=st.one_of(st.none(), st.text(max_size=8), st.integers()),
    fields=st.dictionaries(_FIELD_KEYS, _FIELD_VALUES, max_size=6),
    extra=_EXTRA,
)
def test_line_renderers_agree_on_any_event(
    method: str, event: Any, logger: Any, fields: dict[Any, Any], extra: dict[str, Any]
) -> None:
    """Native and pure LineRenderer give the same line (or raise alike) for any event dict:
    reserved, non-str and surrogate keys, secrets, odd and unprintable values, context fields."""
    _require_twins()
    event_dict = {"logger": logger, **fields, "event": event}
    results = _render_all(method, event_dict, extra)
    assert len({repr(v) for v in results.values()}) == 1, results
    line = results["pure"]
    if isinstance(line, bytes):
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        orjson.loads(line)


@pytest.mark.parametrize(
    "event_dict",
    [
        [("event", "x")],
        "just text",
        None,
        collections.OrderedDict(event="ordered", n=1),
        {"event": "x", "exc_info": None},
        {"event": "x", "exc_info": ValueError("Bearer abc.def-ghi-jkl")},
        {"event": "\udc80 lone"},
        {"event": "x", 1: "int key", None: "none key"},
    ],
    ids=["list", "str", "none", "ordered", "exc-none", "exc", "surrogate-event", "odd-keys"],
)
def test_line_renderers_agree_on_bad_input(event_dict: Any) -> None:
    """Events the compiled renderer hands to the general path give the same outcome."""
    _require_twins()
    results = _render_all("info", event_dict, {})
    assert len({repr(v) for v in results.values()}) == 1, results


def test_line_renderer_writes_the_documented_line() -> None:
    """Core fields in order, context fields, fields redacted, then the caller's location."""
    event_dict = {
        "logger": "app.api",
        "password": "hunter2",
        "note": "Bearer abc.def-ghi-jkl",
        "q": "a=b",
        "nested": {"token": 1},
        "status": 200,
        "event": "request handled",
    }
    for kind, renderer in _line_renderers().items():
        with freeze_time(), request_context(request_id="r", user_id="u", trace_id="t1"):
            line, here = renderer(None, "warn", dict(event_dict)), sys._getframe().f_lineno
        assert line == (
            b'{"timestamp":"2024-01-01T00:00:00.000Z","level":"warning","logger":"app.api",'
            b'"event":"request handled","request_id":"r","user_id":"u","trace_id":"t1",'
            b'"password":"[REDACTED]","note":"[REDACTED]","q":"a=b",'
            b'"nested":{"token":"[REDACTED]"},"status":200,"filename":'
            + orjson.dumps(__file__)
            + b',"lineno":'
            + str(here).encode()
            + b',"func_name":"test_line_renderer_writes_the_documented_line"}\n'
        ), kind


def test_short_values_with_a_separator_are_scrubbed() -> None:
    """A value of 12 characters or fewer holding "=" or ":" goes through the redactor."""
    for kind, renderer in _line_renderers().items():
        with freeze_time():
            line = renderer(
                None, "info", {"event": "e", "q": "token=abc", "u": "u:pw@h", "s": "plain"}
            )
        record = orjson.loads(line)
        assert record["q"] == "token=[REDACTED]", kind
        assert record["s"] == "plain", kind


def test_compiled_renderer_covers_the_common_event_itself() -> None:
    """The compiled LineRenderer writes a plain event without calling the general path."""
    impls = _require_twins()
    calls: list[Any] = []
    redactor = Redactor()

    def general(method: Any, event_dict: Any, frame: Any) -> bytes:
        calls.append(event_dict)
        return b"general\n"

    renderer = impls["native"].LineRenderer(
        redactor,
        general=general,
        now=_P.now_iso,
        clock=vars(_P),
        stamp=_P.stamp_ms,
        context_fields=lambda: {"trace_id": "t"},
        context_hooks={"_span_ids": object()},
        extra_get=lambda: None,
        request_id=lambda: "r",
        user_id=lambda: None,
        skip_files=_P.SKIP_FILES,
        event_cache=_P._EVENT_CACHE,
        scrub_event=_P.scrub_event,
        level_names=_P.LEVEL_NAMES,
    )
    plain = {"logger": "a", "method": "GET", "path": "/x", "status": 200, "ms": 1.5, "event": "e"}
    assert renderer(None, "info", plain) != b"general\n"
    assert calls == []
    for odd in ({"event": "e", "exc_info": True}, {"event": "e", "level": 1}, {"event": 1}):
        assert renderer(None, "info", odd) == b"general\n"
    assert renderer(None, "info", {"event": "e", "trace_id": "clash"}) == b"general\n"
    assert len(calls) == 4


def test_collaborator_errors_propagate_alike() -> None:
    """An exception of the redactor propagates from every LineRenderer (the logger then writes
    its fallback line); short strings and scalars never reach redact_value."""

    class FailingKeys(Redactor):
        def is_sensitive_key(self, key: Any) -> bool:
            raise LookupError(f"no verdict for {key}")

    class FailingValues(Redactor):
        def redact_value(self, value: Any, depth: int = 0) -> Any:
            raise LookupError("cannot redact")

    for kind in accel.available("log_render"):
        with pytest.raises(LookupError, match="no verdict for k"):
            json_renderer(FailingKeys(), kind)(None, "info", {"event": "e", "k": 1})
        for value in ([1], "a string longer than twelve", "k=v"):
            with pytest.raises(LookupError, match="cannot redact"):
                json_renderer(FailingValues(), kind)(None, "info", {"event": "e", "k": value})
        line = json_renderer(FailingValues(), kind)(None, "info", {"event": "e", "k": "ok", "n": 1})
        assert b'"k":"ok","n":1' in line


def test_real_frames_give_their_own_lines() -> None:
    """Calls from different lines of one function (the compiled location cache is keyed per
    instruction) carry their own line numbers."""
    for kind, renderer in _line_renderers().items():
        lines = []
        for _ in range(3):  # later rounds are served from the location cache
            first = renderer(None, "info", {"event": "e"})
            second = renderer(None, "info", {"event": "e"})
            lines.append((orjson.loads(first)["lineno"], orjson.loads(second)["lineno"]))
        here = sys._getframe().f_lineno
        assert lines == [(here - 3, here - 2)] * 3, kind
