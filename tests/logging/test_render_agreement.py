"""Every log_render implementation gives the same log line for the same event (hypothesis)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus import accel
from crown_nexus.logging import build_processors
from crown_nexus.testing import freeze_time
from tests.conftest import implementations_of

KINDS = implementations_of("log_render")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(max_size=20),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.dates(),
    st.uuids(),
    st.decimals(allow_nan=False, places=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
events = st.dictionaries(st.text(min_size=1, max_size=12), values, max_size=6)


def _line(kind: str, event: dict) -> bytes:
    chain = build_processors("json", render_kind=kind)
    event_dict: object = {"logger": "prop", "event": "e", **event}
    for proc in chain:
        event_dict = proc(None, "info", event_dict)
    assert isinstance(event_dict, bytes)
    return event_dict


def test_both_renderers_are_available_when_native_is_built() -> None:
    """The pure renderer is always there; accel's choice is one of the available ones."""
    assert "pure" in KINDS
    assert accel.implementations()["log_render"] in KINDS


@settings(max_examples=150, deadline=None)
@given(event=events)
def test_renderers_agree_on_whole_log_lines(event: dict) -> None:
    """Through the full JSON chain, each implementation writes byte-identical lines."""
    with freeze_time():
        lines = {kind: _line(kind, event) for kind in KINDS}
    reference = lines["pure"]
    assert reference.endswith(b"\n") and reference.count(b"\n") == 1
    parsed = orjson.loads(reference)
    assert parsed["logger"] == "prop"
    for kind, line in lines.items():
        assert line == reference, kind


def test_renderers_agree_on_odd_objects() -> None:
    """Objects without a JSON form (sets, exceptions, arbitrary objects) render identically."""

    class Thing:
        def __str__(self) -> str:
            return "thing"

    event = {
        "s": {3},
        "exc": ValueError("v"),
        "obj": Thing(),
        "big": -(2**70),
        "d": decimal.Decimal("NaN"),
        "u": uuid.UUID(int=5),
    }
    with freeze_time():
        lines = {kind: _line(kind, event) for kind in KINDS}
    assert len(set(lines.values())) == 1


def test_fast_path_equals_the_processor_chain(json_logs) -> None:
    """A processor put before the chain's compiled renderer changes nothing on the line."""
    from crown_nexus.logging import config as log_config
    from crown_nexus.logging import get_logger, request_context

    log = get_logger("same").bind(component="x")
    fields = {
        "password": "pw",
        "note": "Bearer abcdefghijklmnop",
        "nested": {"token": 1, "ok": [1, {"secret": 2}]},
        "n": 1,
        "short": "abc",
        "when": dt.date(2024, 1, 1),
    }

    def emit() -> None:
        log.warning("card 4111 1111 1111 1111 used", **fields)

    def passthrough(logger, method, event_dict):
        return event_dict

    with freeze_time(), request_context(request_id="same-1", user_id="u"):
        emit()
        log_config._PROCESSORS.insert(0, passthrough)
        try:
            emit()
        finally:
            log_config._PROCESSORS.remove(passthrough)
    fast, generic = json_logs.raw().splitlines()
    assert fast == generic
    rec = orjson.loads(fast)
    assert rec["password"] == "[REDACTED]" and rec["nested"]["ok"][1]["secret"] == "[REDACTED]"
    assert rec["event"] == "card [REDACTED] used" and rec["component"] == "x"
