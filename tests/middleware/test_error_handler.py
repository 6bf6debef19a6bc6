"""ErrorHandlerMiddleware: any exception becomes the SPEC §3 body."""

from __future__ import annotations

import orjson
import pytest

from crown_nexus.core.exceptions import AuthenticationException, DatabaseException
from crown_nexus.middleware import ErrorHandlerMiddleware
from crown_nexus.testing import capture_errors
from tests.middleware._apps import call, header, json_app, raising_app


async def test_app_exception_rendered_with_headers() -> None:
    """An AppException keeps its status, code and headers."""
    app = ErrorHandlerMiddleware(
        raising_app(AuthenticationException(message="nope")), production=True
    )
    start, body, _ = await call(app)
    assert start["status"] == 401
    assert header(start, "www-authenticate") == "Bearer"
    assert header(start, "content-length") == str(len(body))
    decoded = orjson.loads(body)
    assert decoded["code"] == "AUTHENTICATION_ERROR" and decoded["success"] is False


async def test_unexpected_exception_is_500_and_reported() -> None:
    """An unexpected exception is a 500 without internals, and goes to the reporters."""
    with capture_errors() as errors:
        app = ErrorHandlerMiddleware(raising_app(KeyError("db-password")), production=True)
        start, body, _ = await call(app, path="/orders")
    assert start["status"] == 500
    assert b"db-password" not in body and b"KeyError" not in body
    assert orjson.loads(body)["code"] == "INTERNAL_SERVER_ERROR"
    reported = errors.recent()
    assert len(reported) == 1 and issubclass(reported[0].exception_type, KeyError)
    assert reported[0].context.function == "GET /orders"


async def test_client_errors_not_reported_server_app_errors_are() -> None:
    """4xx AppExceptions are not reported; 5xx ones are."""
    with capture_errors() as errors:
        await call(ErrorHandlerMiddleware(raising_app(AuthenticationException()), production=True))
        await call(
            ErrorHandlerMiddleware(raising_app(DatabaseException(message="x")), production=True)
        )
    assert [e.exception_type for e in errors.recent()] == [DatabaseException]


async def test_development_names_exception_type() -> None:
    """Outside production the 500 message names the exception type."""
    app = ErrorHandlerMiddleware(raising_app(ValueError("x")), production=False)
    _, body, _ = await call(app)
    assert "ValueError" in orjson.loads(body)["message"]


async def test_exception_after_response_started_is_reraised() -> None:
    """Once headers are sent nothing else can be sent: the exception propagates."""
    app = ErrorHandlerMiddleware(raising_app(ValueError("late"), after_start=True), production=True)
    with pytest.raises(ValueError):
        await call(app)


async def test_success_passes_through() -> None:
    """A successful response is untouched."""
    start, body, _ = await call(ErrorHandlerMiddleware(json_app({"a": 1})))
    assert start["status"] == 200 and orjson.loads(body) == {"a": 1}


async def test_non_http_scopes_pass_through() -> None:
    """Lifespan and websocket scopes go straight to the app."""
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    await ErrorHandlerMiddleware(app)({"type": "lifespan"}, None, None)
    assert seen == ["lifespan"]


async def test_non_latin1_header_values_do_not_break_the_response() -> None:
    """An exception carrying a header value HTTP cannot encode still gets its error response."""
    from crown_nexus.core.exceptions import BusinessException

    exc = BusinessException(message="x", headers={"X-Note": "caf\u00e9 \u2603"})
    start, body, _ = await call(ErrorHandlerMiddleware(raising_app(exc), production=True))
    assert start["status"] == 400
    assert header(start, "x-note") == "caf\u00e9 ?"
    assert orjson.loads(body)["code"] == "BUSINESS_LOGIC_ERROR"
