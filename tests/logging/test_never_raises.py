"""A log call never raises, whatever the values, processors or sink do."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import io
import math
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crown_nexus.logging import config as log_config
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings


class Colour(enum.Enum):
    """An enum value for logging."""

    RED = "red"


class Broken:
    """An object whose __str__ and __repr__ both raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _odd_values() -> dict[str, object]:
    cyclic: dict[str, object] = {"a": 1}
    cyclic["self"] = cyclic
    return {
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "day": dt.date(2024, 1, 2),
        "uid": uuid.UUID(int=1),
        "amount": decimal.Decimal("1.10"),
        "colour": Colour.RED,
        "raw": b"\xff\x00bytes",
        "error": ValueError("boom"),
        "broken": Broken(),
        "cyclic": cyclic,
        "tags": {"b", "a"},
        "big": 2**80,
        "nan": math.nan,
        "inf": -math.inf,
        "surrogate": "\udc80",
        (1, 2): "tuple key",
        None: "none key",
    }


def test_odd_values_render_as_one_json_line(json_logs) -> None:
    """datetime, UUID, Decimal, Enum, bytes, exceptions, broken objects, cycles: one valid line."""
    values = _odd_values()
    get_logger("odd").info("odd values", **{str(k): v for k, v in values.items()})
    rec = json_logs.last()
    assert rec["event"] == "odd values"
    assert rec["when"].startswith("2024-01-02T03:04:05")
    assert rec["uid"] == str(uuid.UUID(int=1))
    assert rec["amount"] == "1.10"
    assert rec["colour"] == "red"
    assert rec["nan"] is None


def test_odd_values_nested_in_a_dict(json_logs) -> None:
    """Odd keys and values nested inside a dict field still give one parseable line."""
    get_logger("odd").info("nested", payload=_odd_values())
    assert json_logs.last()["event"] == "nested"


def test_processor_failure_falls_back_to_a_minimal_line(json_logs) -> None:
    """A processor that raises yields a minimal line naming the failure, not an exception."""

    def boom(logger, method, event_dict):
        raise RuntimeError("processor bug")

    log_config._PROCESSORS.insert(0, boom)
    try:
        get_logger("fb").warning("still logged", password="pw")
    finally:
        log_config._PROCESSORS.remove(boom)
    rec = json_logs.last()
    assert rec["event"] == "still logged"
    assert rec["level"] == "warning"
    assert rec["logger"] == "fb"
    assert rec["log_error"] == "RuntimeError"
    assert b"pw" not in json_logs.raw()


def test_broken_event_object_is_survived(json_logs) -> None:
    """An event object whose str() raises still produces a line."""
    get_logger("fb").info(Broken())
    assert len(json_logs.lines()) == 1


def test_bad_format_args_do_not_raise(json_logs) -> None:
    """Mismatched %-args are appended instead of raising."""
    get_logger("fmt").info("%d apples", "not a number")
    assert "apples" in json_logs.last()["event"]


def test_reserved_keyword_names_do_not_raise(json_logs) -> None:
    """Fields named like internals (method_name, event_kw, self) are written as fields."""
    get_logger("kw").info("x", method_name="m", event_kw=1, logger_name="l")
    assert json_logs.last()["method_name"] == "m"


def test_closed_stream_does_not_raise(configure) -> None:
    """Writing to a closed stream never raises to the caller; the sink counts the failure."""
    stream = io.BytesIO()
    configure(Settings(ENVIRONMENT="test"), stream=stream, log_format="json")
    stream.close()
    before = log_config._SINK.failures
    get_logger("closed").error("nobody listens")
    assert log_config._SINK.failures == before + 1


@pytest.mark.parametrize("method", ["debug", "info", "warning", "error", "critical", "exception"])
def test_every_method_survives_odd_values(json_logs, method: str) -> None:
    """Each level method writes one parseable line for odd values."""
    getattr(get_logger("m"), method)("event", value=Broken(), when=dt.time(1, 2))
    assert orjson.loads(json_logs.raw().splitlines()[-1])["event"] == "event"


class _Weird:
    """An arbitrary object with a plain repr."""

    def __repr__(self) -> str:
        return "<weird>"


_anything = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(),
        st.binary(max_size=16),
        st.datetimes(),
        st.uuids(),
        st.decimals(),
        st.just(Colour.RED),
        st.builds(Broken),
        st.builds(_Weird),
        st.builds(ValueError, st.text(max_size=5)),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.frozensets(st.integers(), max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3),
    ),
    max_leaves=10,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    event=st.one_of(st.text(), _anything),
    # "event" is the method's own parameter: Python rejects it as a keyword before the call
    fields=st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda k: k != "event"), _anything, max_size=5
    ),
)
def test_any_values_give_exactly_one_json_line(json_logs, event, fields) -> None:
    """Whatever the event and field values, a log call returns and adds one parseable line."""
    before = json_logs.raw().count(b"\n")
    get_logger("prop").info(event, **fields)
    raw = json_logs.raw()
    assert raw.count(b"\n") == before + 1
    orjson.loads(raw.splitlines()[-1])
