"""The logger's one path, the cached timestamp and the redaction precheck.

Each fast path is checked against the slow, obvious computation it replaces: the logger's line
against ``EventPreparer`` + ``render`` (the line's definition), the cached stamp against
``datetime``, the scrubbers' prechecks against the full pattern.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crown_nexus._redaction import scrub_reference
from crown_nexus.logging import configure_logging, get_logger, request_context
from crown_nexus.logging import processors as P
from crown_nexus.logging.config import _PROCESSORS
from crown_nexus.logging.redaction import Redactor
from crown_nexus.logging.render import load_render
from crown_nexus.settings import Settings
from crown_nexus.testing import freeze_time

# --------------------------------------------------------------------------- timestamps


def _reference_stamp(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms // 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_stamp_matches_datetime_for_any_millisecond(ms: int) -> None:
    """stamp_ms gives the ISO-8601 UTC stamp datetime computes, cache or no cache."""
    assert P.stamp_ms(ms) == _reference_stamp(ms)
    assert P.stamp_ms(ms) == _reference_stamp(ms)  # second call: served from the cache


def test_stamp_cache_follows_a_second_boundary() -> None:
    """The cached date prefix is replaced when the second changes (…59.999 -> …00.000)."""
    base = 1_767_225_599_000  # 2025-12-31T23:59:59Z
    seq = [base + 998, base + 999, base + 1000, base + 1001, base + 999, base + 2000]
    got = [P.stamp_ms(ms) for ms in seq]
    assert got == [_reference_stamp(ms) for ms in seq]
    assert got[1] == "2025-12-31T23:59:59.999Z"
    assert got[2] == "2026-01-01T00:00:00.000Z"


def test_log_lines_follow_the_clock_across_a_second(json_logs: Any) -> None:
    """Lines logged on both sides of a second boundary carry their own stamps."""
    with freeze_time() as clock:
        clock.advance(0.9995 - (clock.time() % 1))
        log = get_logger("t")
        log.info("before")
        clock.advance(0.001)
        log.info("after")
    before, after = json_logs.lines()[-2:]
    assert before["timestamp"][:19] != after["timestamp"][:19]
    assert before["timestamp"].endswith("Z") and after["timestamp"].endswith(".000Z")


# --------------------------------------------------------------------------- redaction precheck

_SECRETISH = st.sampled_from(
    [
        "Bearer abc.def-ghi",
        "bEaReR tok3n/xyz==",
        "BEARER\tq",
        "eyJhbGciOi.eyJzdWIiOi.sig_x",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4012888888881881",
        "1234567890123",
        "٤١١١١١١١١١١١١١١١",  # Arabic-Indic digits: \d matches them too
        "postgres://admin:hunter2@db",
        "redis://:p@h",
        "a://b:c@",
        "ck_0a1b2c3d.AbCdEfGhIjKlMnOpQr",
        "Basic dXNlcjpwYXNz",
        "basic YWJjZGVmZ2g=",
        "Authorization: ",
        "password=",
        "pwd=x",
        "pw: ",
        "&pin=1",
        "'secret': '",
        '"token":"',
        '\\"passwd\\": \\"',
        "\\",
        "X-Api-Key=",
        "company=",
        "=",
        ":",
        "@",
        "://",
        "ok",
        " ",
        "-",
    ]
)
_TEXT = st.lists(st.one_of(_SECRETISH, st.text(max_size=12)), max_size=5).map("".join)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_precheck_never_misses_what_the_pattern_redacts(text: str) -> None:
    """scrub_text (substring prechecks, reduced patterns) equals the full pattern for every text."""
    assert P.scrub_text(text) == scrub_reference(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_TEXT, st.text(max_size=12)).filter(lambda t: len(t) < 13))
def test_short_values_need_a_separator_to_hold_a_secret(text: str) -> None:
    """What the renderers rely on: a text under 13 characters without "=" or ":" is never changed
    (EventPreparer and the compiled LineRenderer hand only longer str values, or ones with a
    separator, to the redactor)."""
    if "=" not in text and ":" not in text:
        assert scrub_reference(text) == text


def test_mixed_case_bearer_is_redacted() -> None:
    """A bearer scheme in any letter case is redacted (the pattern ignores case)."""
    assert P.scrub_text("auth BeArEr abcdefghijkl") == "auth [REDACTED]"


# --------------------------------------------------------------------------- logger == definition

_KEYS = st.sampled_from(
    ["user", "path", "status", "password", "X-Api-Key", "note", "items", "level", "timestamp"]
)
_VALUES = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    _TEXT,
    st.lists(_TEXT, max_size=3),
    st.dictionaries(_KEYS, _TEXT, max_size=3),
)


def _without_location(line: bytes) -> list[tuple[str, Any]]:
    record = orjson.loads(line)
    assert record.pop("func_name")
    assert record.pop("filename") == __file__
    assert isinstance(record.pop("lineno"), int)
    return list(record.items())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    event=_TEXT,
    fields=st.dictionaries(_KEYS, _VALUES, max_size=5),
    bound=st.dictionaries(_KEYS, _VALUES, max_size=2),
    extra=st.dictionaries(st.sampled_from(["trace_id", "span_id"]), _TEXT, max_size=2),
)
def test_logger_line_equals_the_general_path(
    render_kind: str,
    event: str,
    fields: dict[str, Any],
    bound: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    """logger.info writes what EventPreparer + render write for the same event (the chain's
    compiled last step included)."""
    stream = io.BytesIO()
    configure_logging(
        Settings(ENVIRONMENT="test"),
        stream=stream,
        log_format="json",
        stdlib=False,
        render_kind=render_kind,
    )
    try:
        (renderer,) = _PROCESSORS
        log = get_logger("fast").bind(**bound)
        with freeze_time(), request_context(request_id="r-1", user_id="u-1", **extra):
            log.info(event, **fields)
            expected = load_render(render_kind)(
                P.EventPreparer(Redactor())(
                    None, "info", {"logger": "fast", **bound, **fields, "event": event}
                )
            )
        assert _without_location(stream.getvalue()) == _without_location(expected)
        assert type(renderer).__module__.endswith("log_render")
    finally:
        configure_logging(Settings(ENVIRONMENT="test"))


def test_bound_fields_follow_a_reconfigured_redactor() -> None:
    """A logger whose bound fields were clean redacts them once the key becomes secret."""
    stream = io.BytesIO()
    log = get_logger("bound").bind(note="plain words", n=1)
    try:
        configure_logging(
            Settings(ENVIRONMENT="test"), stream=stream, log_format="json", stdlib=False
        )
        log.info("first", password="hunter2")
        configure_logging(
            Settings(ENVIRONMENT="test"),
            stream=stream,
            log_format="json",
            stdlib=False,
            redact_add=["note"],
        )
        log.info("second", extra_note="x")
    finally:
        configure_logging(Settings(ENVIRONMENT="test"))
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert first["note"] == "plain words" and first["password"] == P.REDACTED
    assert second["note"] == P.REDACTED and second["extra_note"] == P.REDACTED
    assert second["n"] == 1


def test_bound_secrets_are_redacted_on_every_line(json_logs: Any) -> None:
    """Bound secrets (by key or by value) stay redacted whatever the call adds."""
    log = get_logger("bound").bind(api_key="k-123", auth="Bearer abcdefghijklmnop")
    log.info("a")
    log.info("b", api_key="override", user=1)
    a, b = json_logs.lines()[-2:]
    assert a["api_key"] == P.REDACTED and a["auth"] == "[REDACTED]"
    assert b["api_key"] == P.REDACTED and b["auth"] == "[REDACTED]" and b["user"] == 1
    assert list(b)[6:9] == ["api_key", "auth", "user"]
