"""``ErrorCode`` and ``AppException``: the root of every error crown-nexus renders (SPEC §3).

This module sits at the bottom of the layers: it imports nothing from crown-nexus.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from time import time as _time
from typing import Any

__all__ = ["AppException", "ErrorCode", "error_body", "utc_timestamp"]


class ErrorCode(enum.StrEnum):
    """Machine-readable error codes; the ``code`` field of every error body.

    Subsystems may use their own string codes too (``AppException(code="MY_CODE")``).
    """

    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
    AUTHENTICATION_ERROR = "AUTHENTICATION_ERROR"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    BUSINESS_LOGIC_ERROR = "BUSINESS_LOGIC_ERROR"
    INVALID_STATE = "INVALID_STATE"
    OPERATION_NOT_ALLOWED = "OPERATION_NOT_ALLOWED"
    SECURITY_ERROR = "SECURITY_ERROR"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    DATABASE_ERROR = "DATABASE_ERROR"
    #: a transient database error: down, connection lost, out of connections, lock busy (503)
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    CONFIGURATION_ERROR = "CONFIGURATION_ERROR"
    SERVICE_ERROR = "SERVICE_ERROR"
    NETWORK_ERROR = "NETWORK_ERROR"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    # subsystems
    TIMEOUT = "TIMEOUT"
    CACHE_ERROR = "CACHE_ERROR"
    EVENT_ERROR = "EVENT_ERROR"
    PAGINATION_ERROR = "PAGINATION_ERROR"
    INVALID_CURSOR = "INVALID_CURSOR"
    INVALID_SORT_FIELD = "INVALID_SORT_FIELD"
    INVALID_PAGINATION_PARAMS = "INVALID_PAGINATION_PARAMS"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    FEATURE_DISABLED = "FEATURE_DISABLED"
    # plain HTTP errors (Starlette's HTTPException, unknown routes, wrong methods)
    BAD_REQUEST = "BAD_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    HTTP_ERROR = "HTTP_ERROR"


def _code_str(code: Any) -> str:
    """A code as its plain string (an Enum member's value, whatever its mixins)."""
    if isinstance(code, enum.Enum):
        return str(code.value)
    return str(code)


#: ``[(whole second, its "YYYY-MM-DDTHH:MM:SS" text)]`` of the last :func:`utc_timestamp`
#: call (one tuple swapped whole, so a thread never pairs one second with another's text)
_SECOND_TEXT: list[tuple[int, str]] = [(-1, "")]


def utc_timestamp() -> str:
    """The current time as ISO-8601 UTC with millisecond precision, e.g. ``2026-01-01T00:00:00.000Z``.

    What ``datetime.now(UTC).isoformat(timespec="milliseconds")`` writes (with ``Z``), the
    date and time formatted once per second (it is on every response's envelope).
    """
    now = _time()
    second = int(now)
    cached = _SECOND_TEXT[0]
    if cached[0] != second:
        cached = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _SECOND_TEXT[0] = cached
    return f"{cached[1]}.{int((now - second) * 1000):03d}Z"


def error_body(
    message: str,
    code: ErrorCode | str,
    details: Any = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Build the SPEC §3 error body: ``success``, ``message``, ``code``, ``details``, ``request_id``, ``timestamp``."""
    return {
        "success": False,
        "message": message,
        "code": _code_str(code),
        "details": details,
        "request_id": request_id,
        "timestamp": utc_timestamp(),
    }


class AppException(Exception):
    """Base of every application error: a message, a code, an HTTP status, details and headers.

    ``details`` is a dict, a list or ``None`` and appears as-is in the error body; ``headers``
    are sent with the error response.
    """

    status_code: int = 500
    default_code: ErrorCode | str = ErrorCode.INTERNAL_SERVER_ERROR
    default_message: str = "An unexpected error occurred"

    def __init__(
        self,
        message: str | None = None,
        code: ErrorCode | str | None = None,
        status_code: int | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message: str = str(message) if message is not None else self.default_message
        self.code: ErrorCode | str = code if code is not None else self.default_code
        if status_code is not None:
            self.status_code = int(status_code)
        self.details: dict[str, Any] | list[Any] | None = details
        self.headers: dict[str, str] = {str(k): str(v) for k, v in (headers or {}).items()}
        super().__init__(self.message)

    @property
    def code_value(self) -> str:
        """The code as a plain string."""
        return _code_str(self.code)

    def to_dict(self) -> dict[str, Any]:
        """The exception's fields: ``message``, ``code``, ``status_code``, ``details``."""
        return {
            "message": self.message,
            "code": self.code_value,
            "status_code": self.status_code,
            "details": self.details,
        }

    def to_response_body(self, request_id: str | None = None) -> dict[str, Any]:
        """The SPEC §3 error body for this exception."""
        return error_body(self.message, self.code, self.details, request_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(message={self.message!r}, code={self.code_value!r}, status_code={self.status_code})"
