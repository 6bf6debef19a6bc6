"""The production (JSON) log line: content, order, location, exceptions, levels."""

from __future__ import annotations

import datetime as dt
import inspect
import io
import logging

import orjson
import pytest

from crown_nexus.logging import get_logger, request_context
from crown_nexus.settings import Settings


def _lineno() -> int:
    """Line number of the caller."""
    return inspect.currentframe().f_back.f_lineno  # type: ignore[union-attr]


def test_json_line_has_the_documented_fields_in_order(json_logs) -> None:
    """One JSON line per event: timestamp, level, logger, event, ids, fields, caller location."""
    log = get_logger("app.your.module")
    with request_context(request_id="req-1", user_id="admin"):
        line = _lineno() + 1
        log.info("Operation completed", item_id=123, status="pending")
    raw = json_logs.raw()
    assert raw.count(b"\n") == 1 and raw.endswith(b"\n")
    rec = json_logs.last()
    assert list(rec)[:6] == ["timestamp", "level", "logger", "event", "request_id", "user_id"]
    assert rec["level"] == "info"
    assert rec["logger"] == "app.your.module"
    assert rec["event"] == "Operation completed"
    assert rec["request_id"] == "req-1" and rec["user_id"] == "admin"
    assert rec["item_id"] == 123 and rec["status"] == "pending"
    assert rec["filename"] == __file__
    assert rec["lineno"] == line
    assert rec["func_name"] == "test_json_line_has_the_documented_fields_in_order"
    ts = rec["timestamp"]
    assert ts.endswith("Z")
    parsed = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - parsed).total_seconds()) < 60


def test_ids_are_null_outside_a_request(json_logs) -> None:
    """Outside any request context request_id and user_id are present and null."""
    get_logger("x").warning("Something unexpected happened", details="connection timeout")
    rec = json_logs.last()
    assert rec["request_id"] is None and rec["user_id"] is None
    assert rec["level"] == "warning" and rec["details"] == "connection timeout"


def test_every_level_method_of_the_guide(json_logs) -> None:
    """debug/info/warning/error/critical/exception write their level names."""
    log = get_logger("levels")
    log.debug("d", item_id=1)
    log.info("i")
    log.warning("w")
    log.error("Operation failed", error_code="DB_CONN_ERROR", retry_count=3)
    log.critical("c")
    levels = [r["level"] for r in json_logs.lines()]
    assert levels == ["debug", "info", "warning", "error", "critical"]
    assert json_logs.lines()[3]["retry_count"] == 3


def test_exception_is_structured_with_frames(json_logs) -> None:
    """logger.exception inside except writes type, message and traceback frames."""
    log = get_logger("exc")

    def failing() -> None:
        raise ValueError("bad value")

    try:
        failing()
    except ValueError:
        log.exception("Exception occurred during processing")
    rec = json_logs.last()
    assert rec["level"] == "error"
    exc = rec["exception"]
    assert exc["type"] == "ValueError"
    assert exc["message"] == "bad value"
    names = [f["name"] for f in exc["frames"]]
    assert names[-1] == "failing"
    assert all({"filename", "lineno", "name"} <= set(f) for f in exc["frames"])
    assert "exc_info" not in rec


def test_exception_passed_as_exc_info_outside_except(json_logs) -> None:
    """The guide's form logger.exception(..., exc_info=exception) works after the except block."""
    try:
        raise KeyError("k")
    except KeyError as caught:
        exception = caught
    get_logger("exc").exception("Exception occurred during processing", exc_info=exception)
    exc = json_logs.last()["exception"]
    assert exc["type"] == "KeyError"
    assert exc["frames"]


def test_exception_chain_is_kept(json_logs) -> None:
    """A cause (raise ... from ...) appears in the exception's chain."""
    try:
        try:
            raise OSError("disk")
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError:
        get_logger("exc").exception("failed")
    exc = json_logs.last()["exception"]
    assert exc["type"] == "RuntimeError"
    assert [c["type"] for c in exc["chain"]] == ["OSError"]


def test_levels_below_the_configured_one_are_dropped(configure) -> None:
    """At INFO, debug lines are not written and is_enabled_for says so."""
    stream = io.BytesIO()
    configure(Settings(ENVIRONMENT="test"), stream=stream, log_format="json", level="INFO")
    log = get_logger("lvl")
    log.debug("hidden")
    log.info("shown")
    lines = [orjson.loads(x) for x in stream.getvalue().splitlines()]
    assert [r["event"] for r in lines] == ["shown"]
    assert not log.is_enabled_for("debug") and log.is_enabled_for(logging.ERROR)


def test_unknown_level_is_a_clear_error(configure) -> None:
    """configure_logging rejects an unknown level with ValueError naming the valid ones."""
    with pytest.raises(ValueError, match="unknown log level"):
        configure(Settings(ENVIRONMENT="test"), stream=io.BytesIO(), level="loud")


def test_percent_args_and_bound_values(json_logs) -> None:
    """Positional args are %-formatted; bind() adds fields to every line of that logger."""
    log = get_logger("fmt").bind(component="billing")
    log.info("user %s paid %d", "ann", 3)
    rec = json_logs.last()
    assert rec["event"] == "user ann paid 3"
    assert rec["component"] == "billing"
    assert rec["logger"] == "fmt"


def test_log_method_with_numeric_level(json_logs) -> None:
    """log(logging.WARNING, ...) writes a warning line."""
    get_logger("n").log(logging.WARNING, "numeric")
    assert json_logs.last()["level"] == "warning"


async def test_async_methods_write_immediately(json_logs) -> None:
    """ainfo/aerror are awaitable spellings that write the same line."""
    log = get_logger("async")
    await log.ainfo("hello", n=1)
    await log.aerror("bad")
    assert [r["event"] for r in json_logs.lines()] == ["hello", "bad"]


def test_get_logger_defaults_to_the_caller_module(json_logs) -> None:
    """get_logger() without a name uses the calling module's __name__."""
    get_logger().info("x")
    assert json_logs.last()["logger"] == __name__


def test_text_stream_receives_text_lines(configure) -> None:
    """A text stream (StringIO) receives decoded JSON lines."""
    stream = io.StringIO()
    configure(Settings(ENVIRONMENT="test"), stream=stream, log_format="json")
    get_logger("t").info("über", value="ü")
    rec = orjson.loads(stream.getvalue())
    assert rec["event"] == "über" and rec["value"] == "ü"


def test_development_renders_coloured_console_lines(configure) -> None:
    """ENVIRONMENT=development gives coloured console lines with the file and line."""
    stream = io.StringIO()
    configure(Settings(ENVIRONMENT="development"), stream=stream)
    line = _lineno() + 1
    get_logger("dev").info("Performing administrative operation", password="hunter2")
    out = stream.getvalue()
    assert "\x1b[" in out
    assert "Performing administrative operation" in out
    assert f"test_json_lines.py:{line} in test_development_renders_coloured_console_lines" in out
    assert "hunter2" not in out


def test_production_settings_pick_json(configure) -> None:
    """ENVIRONMENT=production picks JSON lines."""
    stream = io.BytesIO()
    configure(Settings(ENVIRONMENT="production", secret_key="x" * 40), stream=stream)
    get_logger("prod").info("hello")
    assert orjson.loads(stream.getvalue())["event"] == "hello"


def test_stdlib_logging_goes_through_the_same_pipeline(configure) -> None:
    """Records of stdlib loggers become crown-nexus JSON lines with ids and location."""
    stream = io.BytesIO()
    configure(Settings(ENVIRONMENT="test"), stream=stream, log_format="json", level="info")
    with request_context(request_id="std-1"):
        line = _lineno() + 1
        logging.getLogger("some.library").warning("connect %s failed", "db")
    rec = orjson.loads(stream.getvalue().splitlines()[-1])
    assert rec["logger"] == "some.library" and rec["level"] == "warning"
    assert rec["event"] == "connect db failed" and rec["request_id"] == "std-1"
    assert rec["filename"] == __file__ and rec["lineno"] == line


def test_stdlib_exception_is_structured(configure) -> None:
    """logging.exception in a stdlib logger yields the structured exception field."""
    stream = io.BytesIO()
    configure(Settings(ENVIRONMENT="test"), stream=stream, log_format="json", level="info")
    try:
        raise ZeroDivisionError("zero")
    except ZeroDivisionError:
        logging.getLogger("lib").exception("failed")
    rec = orjson.loads(stream.getvalue().splitlines()[-1])
    assert rec["exception"]["type"] == "ZeroDivisionError"


def test_logger_configures_itself_even_when_settings_fail() -> None:
    """With production settings that refuse to load, the first get_logger still logs JSON."""
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CROWN_NEXUS_")}
    env["ENVIRONMENT"] = "production"
    code = "from crown_nexus.logging import get_logger; get_logger('boot').info('up')"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, check=True, timeout=60
    ).stdout
    events = [orjson.loads(x)["event"] for x in out.splitlines()]
    assert events[-1] == "up"
    assert any("settings could not be loaded" in e for e in events)
