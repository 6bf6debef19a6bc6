"""One renderer for every error body (SPEC §3), shared by the exception handlers and middleware."""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson

from crown_nexus.core.exceptions._base import AppException, ErrorCode, error_body
from crown_nexus.core.exceptions._database import RETRY_AFTER_SECONDS, unavailable_code

__all__ = [
    "current_request_id",
    "error_response_parts",
    "json_dumps",
    "render_asgi",
    "render_exception",
    "render_http_error",
    "render_validation_errors",
]

_HTTP_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.AUTHENTICATION_ERROR,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.RESOURCE_NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.RESOURCE_ALREADY_EXISTS,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMIT_EXCEEDED,
    500: ErrorCode.INTERNAL_SERVER_ERROR,
    502: ErrorCode.SERVICE_ERROR,
    503: ErrorCode.NETWORK_ERROR,
    504: ErrorCode.TIMEOUT,
}


def json_dumps(obj: Any) -> bytes:
    """Serialize with orjson; values orjson cannot encode become their ``str()``."""
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS)


def current_request_id() -> str | None:
    """The request id of the running request (``crown_nexus.logging``), or ``None``."""
    try:
        from crown_nexus.logging import get_current_request_id
    except ImportError:
        return None
    try:
        rid = get_current_request_id()
    except Exception:
        return None
    return str(rid) if rid else None


def _json_safe(value: Any) -> Any:
    """``value`` made JSON-safe (round-tripped through orjson with ``str`` fallback)."""
    try:
        return orjson.loads(json_dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return str(value)


def _shape_details(details: Any) -> dict[str, Any] | list[Any] | None:
    """``details`` as SPEC §3 allows: a dict, a list or ``None`` (JSON-safe)."""
    if details is None:
        return None
    if isinstance(details, tuple | set | frozenset):
        details = list(details)
    if not isinstance(details, dict | list):
        details = {"detail": details}
    shaped = _json_safe(details)
    return shaped if isinstance(shaped, dict | list) else {"detail": shaped}


#: codes sent as ``X-Error-Code`` (others, e.g. non-ASCII custom codes, stay in the body only)
_HEADER_SAFE_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def error_response_parts(
    status_code: int,
    message: str,
    code: ErrorCode | str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """``(status, body bytes, headers)`` of one SPEC §3 error response.

    The headers also carry ``X-Error-Code: <code>`` (the body's code), which the guide's §6
    metrics middleware and ``MetricsMiddleware`` read to label ``http_errors_total``.
    """
    rid = request_id if request_id is not None else current_request_id()
    body = error_body(message, code, _shape_details(details), rid)
    out = dict(headers or {})
    if _HEADER_SAFE_CODE.fullmatch(body["code"]):
        out.setdefault("X-Error-Code", body["code"])
    return status_code, json_dumps(body), out


def render_exception(
    exc: BaseException, *, production: bool = True, request_id: str | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """Render any exception as ``(status, body, headers)``.

    ``AppException`` keeps its status, code, details and headers; Starlette's ``HTTPException`` its
    status and headers; FastAPI's ``RequestValidationError`` becomes 422 with the errors list;
    a database error that only says the database is unavailable for now (see
    :func:`~crown_nexus.core.exceptions._database.transient_database_error`: lost connection,
    server down, pool or server out of connections, lock/serialization conflict, SQLite busy) is
    a 503 ``DATABASE_UNAVAILABLE`` with ``Retry-After``, a bare ``ConnectionError`` (a
    dependency refused or dropped the connection) a 503 ``NETWORK_ERROR``; anything else is a 500
    ``INTERNAL_SERVER_ERROR``. Neither message shows the exception's text (in development it
    names the exception type).

    In production a server-side error (status >= 500) says only its status phrase, with no
    details: table names, service names and other internals stay in the logs and error reports.
    Its ``code`` and headers (``Retry-After``) are kept.
    """
    if isinstance(exc, AppException):
        if production and exc.status_code >= 500:
            return error_response_parts(
                exc.status_code, _phrase(exc.status_code), exc.code, None, exc.headers, request_id
            )
        return error_response_parts(
            exc.status_code, exc.message, exc.code, exc.details, exc.headers, request_id
        )
    from fastapi.exceptions import RequestValidationError

    if isinstance(exc, RequestValidationError):
        return render_validation_errors(exc.errors(), request_id=request_id)
    from starlette.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return render_http_error(exc.status_code, exc.detail, exc.headers, request_id=request_id)
    unavailable = unavailable_code(exc)
    if unavailable is not None:
        return error_response_parts(
            503,
            "Service Unavailable" if production else f"Service unavailable ({type(exc).__name__})",
            unavailable,
            None,
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
            request_id,
        )
    message = "Internal server error"
    if not production:
        message = f"Internal server error ({type(exc).__name__})"
    return error_response_parts(
        500, message, ErrorCode.INTERNAL_SERVER_ERROR, None, None, request_id
    )


def render_validation_errors(
    errors: Any, *, request_id: str | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """422 ``VALIDATION_ERROR`` whose details are the errors (``loc``, ``msg``, ``type`` only)."""
    from crown_nexus.core.exceptions._types import _clean_error

    items = [_clean_error(e) for e in (errors or [])]
    return error_response_parts(
        422, "Validation failed", ErrorCode.VALIDATION_ERROR, items, None, request_id
    )


def _phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Server error"


def render_http_error(
    status_code: int,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    request_id: str | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """A plain HTTP error (unknown route, wrong method, ``HTTPException``) in the SPEC §3 body."""
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "HTTP error"
    code = _HTTP_CODES.get(status_code, ErrorCode.HTTP_ERROR)
    if isinstance(detail, dict | list | tuple):
        message, details = phrase, detail
    elif detail is None or detail == "":
        message, details = phrase, None
    else:
        message, details = str(detail), None
    return error_response_parts(status_code, message, code, details, headers, request_id)


def render_asgi(
    exc: BaseException, *, production: bool = True, request_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two ASGI messages (``http.response.start``, ``http.response.body``) answering ``exc``.

    For pure ASGI middleware that rejects a request itself (SPEC §10): same body as
    :func:`render_exception`, with Content-Type and Content-Length set. Header values that are
    not Latin-1 are sent with ``?`` in place of the characters HTTP cannot carry.
    """
    status, body, headers = render_exception(exc, production=production, request_id=request_id)
    raw = [
        (k.lower().encode("latin-1", "replace"), str(v).encode("latin-1", "replace"))
        for k, v in headers.items()
        if k.lower() not in ("content-type", "content-length")
    ]
    raw.append((b"content-type", b"application/json"))
    raw.append((b"content-length", str(len(body)).encode("ascii")))
    return (
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": body},
    )
