"""The fused ``log_render.render_event`` against the dict path it replaces.

``render_event`` (each implementation) must write exactly what ``render`` writes for the dict the
logger's general path builds and redacts, and a logger call must write the same line with the
fused path on and off.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import io
import sys
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crown_nexus import accel
from crown_nexus.logging import config as C
from crown_nexus.logging import configure_logging, get_logger, request_context
from crown_nexus.logging import processors as P
from crown_nexus.settings import Settings
from crown_nexus.testing import freeze_time
from tests.conftest import implementations_of

IMPLS = implementations_of("log_render")
CORE = ("timestamp", "level", "logger", "event", "request_id", "user_id")
LOCATION = ("filename", "lineno", "func_name")


class Color(enum.Enum):
    RED = "red"
    BIG = 2**70


class Odd:
    def __str__(self) -> str:
        return "odd \ud800 object"


class Broken:
    def __str__(self) -> str:
        raise RuntimeError("no str")


_SECRETISH = st.sampled_from(
    [
        "Bearer abc.def-ghi-jkl",
        "eyJhbGciOi.eyJzdWIiOi.sig_x",
        "4111 1111 1111 1111",
        "card 4012888888881881 here",
        "short",
        "exactly-12ch",
        "thirteen-char",
        "lone \udc80 surrogate value",
    ]
)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    _SECRETISH,
    st.sampled_from(
        [
            dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            dt.date(2026, 1, 2),
            decimal.Decimal("1.50"),
            uuid.UUID(int=7),
            b"\xffbytes",
            Color.RED,
            Color.BIG,
            Odd(),
            Broken(),
            ValueError("boom Bearer abc.def-ghi-jkl"),
        ]
    ),
)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.integers(), _SECRETISH), inner, max_size=3
        ),
    ),
    max_leaves=8,
)
_KEY = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        [
            "user",
            "password",
            "api-key",
            "Authorization",
            "my_token_id",
            "path",
            "card\udc80",
            "event",
            "level",
            "lineno",
            "timestamp",
        ]
    ),
)
_FIELDS = st.dictionaries(_KEY, _VALUE, max_size=6)
_CORE_VALUE = st.one_of(st.none(), st.text(max_size=12), st.integers(), _SECRETISH)


def _frame(filename: str, lineno: Any, name: str, lasti: int) -> Any:
    """A stand-in frame (a fresh code object each time): what render_event reads of a frame."""
    code = SimpleNamespace(co_filename=filename, co_name=name)
    return SimpleNamespace(f_code=code, f_lineno=lineno, f_lasti=lasti)


def _module(kind: str) -> Any:
    return accel.available("log_render")[kind]


def _old_dict(
    core: tuple[Any, ...], fields: dict[str, Any], location: Any, redactor: P.Redactor
) -> Any:
    """The dict the logger's general path builds for these parts (None: it would not fuse)."""
    out = dict(zip(CORE, core, strict=True))
    for key in fields:
        if type(key) is not str or key in CORE or key in LOCATION:
            return None
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return None
    out.update(fields)
    for key, value in fields.items():
        if key not in redactor._safe and redactor.is_sensitive_key(key):
            out[key] = P.REDACTED
        elif type(value) is str:
            if len(value) > 12:
                out[key] = P.scrub_text(value)
        elif type(value) not in P._SCALARS:
            out[key] = redactor.redact_value(value)
    if location is not None:
        frame = location
        code = frame.f_code
        out.update(zip(LOCATION, (code.co_filename, frame.f_lineno, code.co_name), strict=True))
    return out


def _call(
    kind: str, core: tuple[Any, ...], fields: Any, location: Any, redactor: P.Redactor
) -> Any:
    code = location.f_code if location is not None else None
    return _module(kind).render_event(*core, fields, location, code, redactor._safe, redactor)


@pytest.mark.parametrize("kind", IMPLS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    core=st.tuples(*[_CORE_VALUE] * 6),
    fields=_FIELDS,
    location=st.one_of(
        st.none(),
        st.builds(
            lambda filename, lineno, name, lasti: _frame(filename, lineno, name, lasti),
            st.one_of(st.text(max_size=10), _SECRETISH),
            st.one_of(st.none(), st.integers(0, 10**6)),
            st.text(max_size=6),
            st.integers(0, 10**4),
        ),
    ),
)
def test_render_event_equals_render_of_the_old_dict(
    kind: str, core: tuple[Any, ...], fields: dict[str, Any], location: Any
) -> None:
    """render_event writes render(<the general path's dict>) byte for byte, or None exactly
    when the general path must run (a reserved or surrogate key)."""
    expected_dict = _old_dict(core, fields, location, P.Redactor())
    got = _call(kind, core, fields, location, P.Redactor())
    if expected_dict is None:
        assert got is None
    else:
        assert got == _module(kind).render(expected_dict)
        assert got == _module("pure").render(expected_dict)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(core=st.tuples(*[_CORE_VALUE] * 6), fields=_FIELDS)
def test_implementations_agree(core: tuple[Any, ...], fields: dict[str, Any]) -> None:
    """Every implementation of render_event gives the same result for the same parts."""
    results = {kind: _call(kind, core, fields, sys._getframe(), P.Redactor()) for kind in IMPLS}
    assert len(set(results.values())) == 1, results


class _FailingRedactor(P.Redactor):
    def is_sensitive_key(self, key: Any) -> bool:
        raise LookupError(f"no verdict for {key}")


class _FailingValues(P.Redactor):
    def redact_value(self, value: Any, depth: int = 0) -> Any:
        raise LookupError("cannot redact")


@pytest.mark.parametrize("kind", IMPLS)
def test_redaction_errors_propagate_alike(kind: str) -> None:
    """An exception of a redaction call propagates (the logger turns it into its fallback line)."""
    core = ("t", "info", "x", "e", None, None)
    with pytest.raises(LookupError, match="no verdict for k"):
        _call(kind, core, {"k": 1}, None, _FailingRedactor())
    with pytest.raises(LookupError, match="cannot redact"):
        _call(kind, core, {"k": [1]}, None, _FailingValues())
    with pytest.raises(LookupError, match="cannot redact"):
        _call(kind, core, {"k": "a string longer than twelve"}, None, _FailingValues())
    # short strings and scalars never reach redact_value (the cheap precheck)
    assert _call(kind, core, {"k": "short", "n": 1.5}, None, _FailingValues()) is not None


@pytest.mark.parametrize("kind", IMPLS)
def test_redaction_in_the_fused_line(kind: str) -> None:
    """Sensitive keys become [REDACTED], tokens inside strings are scrubbed, nested values too."""
    core = ("t", "info", "x", "e", "r", "u")
    fields = {"password": "hunter2", "note": "Bearer abc.def-ghi-jkl", "nested": {"token": 1}}
    line = _call(kind, core, fields, _frame("f.py", 1, "fn", 0), P.Redactor())
    assert line == (
        b'{"timestamp":"t","level":"info","logger":"x","event":"e","request_id":"r",'
        b'"user_id":"u","password":"[REDACTED]","note":"[REDACTED]","nested":{"token":"[REDACTED]"},'
        b'"filename":"f.py","lineno":1,"func_name":"fn"}\n'
    )


@pytest.mark.parametrize("kind", IMPLS)
def test_not_a_dict_takes_the_general_path(kind: str) -> None:
    """Fields that are not an exact dict give None."""
    assert _call(kind, ("t",) * 6, [("a", 1)], None, P.Redactor()) is None


# --------------------------------------------------------------------------- through the logger


@pytest.fixture(params=IMPLS)
def both_paths(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A function logging one call with the fused path on, then off; returns both lines."""
    stream = io.BytesIO()
    configure_logging(
        Settings(ENVIRONMENT="test"),
        stream=stream,
        log_format="json",
        level="debug",
        render_kind=request.param,
        stdlib=False,
    )

    def run(method: str, event: Any, fields: dict[str, Any]) -> tuple[bytes, bytes]:
        log = get_logger("fused.test")
        lines = []
        for fused in (True, False):
            C.FUSED[0] = fused
            stream.seek(0)
            stream.truncate()
            with freeze_time():
                getattr(log, method)(event, **fields)
            lines.append(stream.getvalue())
        return lines[0], lines[1]

    try:
        yield run
    finally:
        C.FUSED[0] = True
        configure_logging(Settings(ENVIRONMENT="test"))


_LOG_KEY = _KEY.filter(lambda k: k != "event")


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["debug", "info", "warning", "error", "critical"]),
    event=st.one_of(st.text(max_size=20), _SECRETISH),
    fields=st.dictionaries(_LOG_KEY, _VALUE, max_size=5),
)
def test_logger_writes_the_same_line_fused_or_not(
    both_paths: Any, method: str, event: str, fields: dict[str, Any]
) -> None:
    """A logger call writes exactly the same bytes with the fused path as with the dict path."""
    fused, general = both_paths(method, event, fields)
    assert fused == general
    assert fused.endswith(b"\n") and fused.count(b"\n") == 1


def test_fused_path_is_taken_and_context_kept(both_paths: Any) -> None:
    """The common call goes through render_event; request ids and location are on the line."""
    calls = []
    renderer = C._PROCESSORS[1]
    original = renderer.render_event

    def spy(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    renderer.render_event = spy
    try:
        with request_context(request_id="req-9", user_id="u-9"):
            fused, general = both_paths("info", "hello", {"n": 1, "password": "x"})
    finally:
        renderer.render_event = original
    assert len(calls) == 1
    assert fused == general
    assert (
        b'"request_id":"req-9","user_id":"u-9","n":1,"password":"[REDACTED]","filename":' in fused
    )
    assert b'"func_name":"run"' in fused


@pytest.mark.parametrize("kind", IMPLS)
def test_real_frames_give_their_own_lines(kind: str) -> None:
    """Calls from different lines of one function (cached per instruction) carry their lines."""
    core = ("t", "info", "x", "e", "r", "u")
    lines = []
    for _ in range(3):  # the second and third rounds are served from the location cache
        first = _call(kind, core, {}, sys._getframe(), P.Redactor())
        second = _call(kind, core, {}, sys._getframe(), P.Redactor())
        lines.append((first, second))
    here = sys._getframe().f_lineno
    first, second = lines[0]
    assert f'"lineno":{here - 3},'.encode() in first
    assert f'"lineno":{here - 2},'.encode() in second
    assert f'"filename":"{__file__}"'.encode() in first
    assert b'"func_name":"test_real_frames_give_their_own_lines"' in second
    assert lines[0] == lines[1] == lines[2]


@pytest.mark.parametrize("kind", IMPLS)
def test_frame_attribute_errors_propagate(kind: str) -> None:
    """A frame without the attributes read raises AttributeError from every implementation."""
    with pytest.raises(AttributeError):
        _call(kind, ("t",) * 6, {}, SimpleNamespace(f_code=None), P.Redactor())
