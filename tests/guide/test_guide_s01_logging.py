"""Guide §1 (Logging System) and its §13/§14 usages, run as written with the user's objects supplied."""
# ruff: noqa: I001, E402, F811, F841, E501 - the guide's blocks are copied verbatim (their imports and order)

from __future__ import annotations

import asyncio
import inspect
import io
import re
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi import APIRouter, FastAPI, Request
from starlette.middleware.base import BaseHTTPMiddleware

from crown_nexus.logging import configure_logging
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.conftest import implementations_of
from tests.guide._support import guide_app


@pytest.fixture(params=implementations_of("log_render"))
def lines(request: pytest.FixtureRequest) -> Iterator[Any]:
    """JSON logging at DEBUG into memory (each log_render implementation); yields a line reader."""
    stream = io.BytesIO()
    configure_logging(
        Settings(ENVIRONMENT="production", secret_key="s" * 64),
        stream=stream,
        log_format="json",
        level="debug",
        render_kind=str(request.param),
        stdlib=False,
    )

    def read() -> list[dict[str, Any]]:
        data = stream.getvalue()
        assert data == b"" or data.endswith(b"\n")
        return [orjson.loads(line) for line in data.splitlines()]

    yield read
    configure_logging(Settings(ENVIRONMENT="test"))


def _line_of(func: Any, needle: str) -> int:
    """The source line number in ``func`` that contains ``needle``."""
    source, start = inspect.getsourcelines(func)
    for offset, text in enumerate(source):
        if needle in text:
            return start + offset
    raise AssertionError(needle)


# --- the user's own objects ------------------------------------------------------------------------

result = {"rows": 3}
try:
    raise ConnectionError("db down at 10.0.0.7")
except ConnectionError as _caught:
    exception = _caught


# --- §1 'Basic Logging', verbatim ----------------------------------------------------------------


def basic_logging() -> None:
    """The guide's block, as a function so it can be re-run per test."""
    from crown_nexus.logging import get_logger

    # Create a logger for your module
    logger = get_logger("app.your.module")

    # Log at different levels
    logger.debug("Debug information with context", item_id=123, status="pending")
    logger.info("Operation completed successfully")
    logger.warning("Something unexpected happened", details="connection timeout")
    logger.error("Operation failed", error_code="DB_CONN_ERROR", retry_count=3)
    logger.exception("Exception occurred during processing", exc_info=exception)


def test_basic_logging_levels_fields_and_line_numbers(lines: Any) -> None:
    """Each call writes one JSON line with its level, fields, file and the line of the call."""
    basic_logging()
    debug, info, warning, error, exc = lines()
    assert [r["level"] for r in (debug, info, warning, error, exc)] == ["debug", "info", "warning", "error", "error"]
    assert debug["event"] == "Debug information with context"
    assert debug["item_id"] == 123 and debug["status"] == "pending"
    assert warning["details"] == "connection timeout"
    assert error["error_code"] == "DB_CONN_ERROR" and error["retry_count"] == 3
    assert exc["exception"]["type"] == "ConnectionError"
    assert exc["exception"]["message"] == "db down at 10.0.0.7"
    for line in (debug, info, warning, error, exc):
        assert line["logger"] == "app.your.module"
        assert line["filename"] == __file__
        assert line["func_name"] == "basic_logging"
        assert "request_id" in line and "user_id" in line
    assert debug["lineno"] == _line_of(basic_logging, "logger.debug(")
    assert exc["lineno"] == _line_of(basic_logging, "logger.exception(")


def test_development_console_lines_have_line_numbers() -> None:
    """Development: human-readable console lines that include the file and line number."""
    stream = io.StringIO()
    configure_logging(Settings(ENVIRONMENT="development"), stream=stream, level="debug", stdlib=False)
    try:
        basic_logging()
    finally:
        configure_logging(Settings(ENVIRONMENT="test"))
    text = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
    out = text.splitlines()
    assert len([ln for ln in out if "Operation failed" in ln]) == 1
    assert not text.lstrip().startswith("{")  # not JSON
    failed = next(ln for ln in out if "Operation failed" in ln)
    assert "DB_CONN_ERROR" in failed
    assert str(_line_of(basic_logging, "logger.error(")) in failed
    assert "ConnectionError" in text


# --- §1 'Request Context Tracking', verbatim ------------------------------------------------------

from crown_nexus.logging import get_logger

logger = get_logger("app.guide.s01")


def context_tracking() -> None:
    """The guide's block."""
    from crown_nexus.logging import request_context, set_user_id, clear_user_id

    # Create a custom context for a set of operations
    with request_context(request_id="manual-operation-123", user_id="admin"):
        logger.info("Performing administrative operation")
        # All logs within this context will include the specified request_id and user_id

    # Set just the user ID
    set_user_id("user-456")
    logger.info("User context operation")  # Will include user_id=user-456

    # Clear when done
    clear_user_id()


def test_request_context_tracking(lines: Any) -> None:
    """Inside request_context both ids are on the line; set_user_id adds user_id until clear_user_id."""
    context_tracking()
    logger.info("after")
    admin, user, after = lines()
    assert (admin["request_id"], admin["user_id"]) == ("manual-operation-123", "admin")
    assert user["user_id"] == "user-456" and user["request_id"] is None
    assert after["user_id"] is None and after["request_id"] is None


async def test_request_context_is_per_task(lines: Any) -> None:
    """Concurrent tasks each keep their own request context (contextvars, not globals)."""
    from crown_nexus.logging import request_context

    async def work(n: int) -> None:
        with request_context(request_id=f"req-{n}", user_id=f"u{n}"):
            await asyncio.sleep(0.001 * (3 - n))
            logger.info("step", n=n)

    await asyncio.gather(*(work(n) for n in range(3)))
    for line in lines():
        assert line["request_id"] == f"req-{line['n']}" and line["user_id"] == f"u{line['n']}"


# --- §1 'Performance Logging', verbatim ------------------------------------------------------------

from crown_nexus.logging import log_execution_time, log_execution_time_async

# For synchronous functions
@log_execution_time()  # Optional parameters: logger, level
def process_data(data):
    # Processing logic
    return result
    # Will log start/end times and duration automatically

# For asynchronous functions
@log_execution_time_async()
async def fetch_data():
    # Async processing logic
    return result


async def test_performance_logging(lines: Any) -> None:
    """Both decorators return the result and log start/end times and the duration."""
    assert process_data([1]) is result
    assert await fetch_data() is result
    sync_line, async_line = lines()
    for line, name in ((sync_line, "process_data"), (async_line, "fetch_data")):
        assert line["function"].endswith(name)
        assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
        assert line["started_at"] <= line["finished_at"]
    assert process_data.__name__ == "process_data" and inspect.iscoroutinefunction(fetch_data)


def test_execution_time_optional_parameters(lines: Any) -> None:
    """The optional ``logger`` and ``level`` parameters the comment mentions are honoured."""
    custom = get_logger("app.timing")

    @log_execution_time(logger=custom, level="warning")
    def work() -> int:
        return 7

    assert work() == 7
    [line] = lines()
    assert line["logger"] == "app.timing" and line["level"] == "warning"


# --- 'Request context is automatically managed by middleware' + §13 logging integration -----------


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/work")
    async def work() -> dict[str, str]:
        # §14 'Use Request Context When Available', verbatim
        logger.info("Processing request")  # Will include request_id and user_id automatically
        return {"ok": "yes"}

    return router


async def test_middleware_puts_request_id_on_every_line(lines: Any) -> None:
    """Under setup_app, lines logged in an endpoint carry the request's id, echoed as X-Request-ID."""
    app = guide_app(_router(), ENVIRONMENT="production", secret_key="k" * 64)
    async with app_client(app) as client:
        given = await client.get("/work", headers={"X-Request-ID": "abc-123"})
        fresh = await client.get("/work")
    assert given.headers["X-Request-ID"] == "abc-123"
    generated = fresh.headers["X-Request-ID"]
    assert generated and generated != "abc-123"
    mine = [ln for ln in lines() if ln["event"] == "Processing request"]
    assert [ln["request_id"] for ln in mine] == ["abc-123", generated]


# §13 'Logging System Integration', verbatim (a user's BaseHTTPMiddleware dispatch)
from crown_nexus.logging import get_logger, request_context
from fastapi import Request

# In your middleware
logger = get_logger("app.middleware.example")

async def dispatch(self, request: Request, call_next):
    request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
    with request_context(request_id=request_id):
        logger.info("Processing request", path=request.url.path)
        # Process request
        return await call_next(request)


class ExampleMiddleware(BaseHTTPMiddleware):
    """The user's middleware class holding the guide's ``dispatch``."""

    dispatch = dispatch


async def test_user_middleware_request_context(lines: Any) -> None:
    """The §13 logging dispatch, in a user's BaseHTTPMiddleware on a plain app, logs with the id."""
    app = FastAPI()
    app.include_router(_router())
    app.add_middleware(ExampleMiddleware)
    async with app_client(app) as client:
        response = await client.get("/work", headers={"X-Request-ID": "mw-7"})
    assert response.status_code == 200
    mine = [ln for ln in lines() if ln["logger"] == "app.middleware.example"]
    # the middleware's line and the endpoint's (the module's ``logger`` was rebound by the block)
    assert [ln.get("path") for ln in mine] == ["/work", None]
    assert all(ln["request_id"] == "mw-7" for ln in mine)


# --- §14 'Logging Best Practices' ------------------------------------------------------------------


class _User:
    id = "u-1"
    email = "ann@example.com"


def test_secrets_are_not_logged(lines: Any) -> None:
    """§14 point 7: even the 'BAD!' call does not write the password (secrets redacted)."""
    username, password = "ann", "hunter2-very-secret"
    user = _User()
    # Good - structured and searchable
    logger.info("User registered", user_id=user.id, email=user.email, registration_source="web")
    # Don't log passwords, tokens, or other secrets
    logger.info("User authentication", username=username)  # Good
    logger.info("User authentication", username=username, password=password)  # BAD!
    registered, good, bad = lines()
    assert registered["user_id"] == "u-1" and registered["registration_source"] == "web"
    assert good["username"] == "ann" and bad["username"] == "ann"
    assert password not in orjson.dumps(bad).decode()


async def test_service_boundary_logging(lines: Any) -> None:
    """§14 point 5: success and failure of an external call are logged; the failure with its traceback."""

    class StripeClient:
        async def create_payment(self, payment_data: dict[str, Any]) -> dict[str, Any]:
            if payment_data["amount"] < 0:
                raise ValueError("negative amount")
            return {"id": "pay-1"}

    stripe_client = StripeClient()
    duration = 12

    async def pay(payment_data: dict[str, Any]) -> Any:
        # Log at service boundaries and important events
        logger.info("Starting external API call", service="stripe", action="create_payment")
        try:
            result = await stripe_client.create_payment(payment_data)
            logger.info("External API call succeeded", service="stripe", duration_ms=duration)
            return result
        except Exception as e:
            logger.exception("External API call failed", service="stripe", error=str(e))
            raise

    assert await pay({"amount": 5}) == {"id": "pay-1"}
    with pytest.raises(ValueError):
        await pay({"amount": -1})
    events = [(ln["event"], ln["level"]) for ln in lines()]
    assert events == [
        ("Starting external API call", "info"),
        ("External API call succeeded", "info"),
        ("Starting external API call", "info"),
        ("External API call failed", "error"),
    ]
    failed = lines()[-1]
    assert failed["exception"]["type"] == "ValueError" and failed["error"] == "negative amount"


# --- 'Configuration': configured at application start-up, JSON in production ---------------------


@pytest.mark.parametrize(("environment", "json_lines"), [("production", True), ("development", False)])
def test_setup_app_configures_logging_for_its_environment(
    environment: str, json_lines: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    """An app built with production settings logs JSON lines (development: console) unless logging was configured explicitly."""
    from crown_nexus.integrations.fastapi import setup_app
    from crown_nexus.logging import config as logging_config

    logging_config._STATE.configured = False  # as in a fresh process: first use configures
    try:
        get_logger("app.boot").info("booting")  # automatic configuration from the loaded settings
        setup_app(FastAPI(), Settings(ENVIRONMENT=environment, secret_key="k" * 64))
        capfd.readouterr()
        get_logger("app.after").info("configured for the app", marker=environment)
        out = [ln for ln in capfd.readouterr().out.splitlines() if "configured for the app" in ln]
        assert len(out) == 1
        if json_lines:
            line = orjson.loads(out[0])
            assert line["event"] == "configured for the app" and line["marker"] == "production"
        else:
            assert not out[0].lstrip().startswith("{") and "marker" in out[0]

        # an explicit configuration is never overridden by an app's settings
        stream = io.BytesIO()
        configure_logging(Settings(ENVIRONMENT="test"), stream=stream, log_format="json", stdlib=False)
        setup_app(FastAPI(), Settings(ENVIRONMENT="development"))
        get_logger("app.after").info("still json")
        assert orjson.loads(stream.getvalue().splitlines()[-1])["event"] == "still json"
    finally:
        configure_logging(Settings(ENVIRONMENT="test"))
