"""Application exceptions, error codes and the FastAPI exception handlers (guide §2, SPEC §3).

Every exception derives from :class:`AppException` (``message``, ``code``, ``status_code``,
``details``, ``headers``); :func:`install_exception_handlers` renders each one, FastAPI's request
validation errors, Starlette's ``HTTPException`` and any other exception in one JSON body::

    {"success": false, "message": str, "code": str, "details": list|dict|null,
     "request_id": str|null, "timestamp": ISO-8601 UTC}
"""

from __future__ import annotations

from crown_nexus.core.exceptions._base import AppException, ErrorCode, error_body, utc_timestamp
from crown_nexus.core.exceptions._database import transient_database_error
from crown_nexus.core.exceptions._handlers import (
    ErrorReportHook,
    error_response,
    install_exception_handlers,
    is_production_app,
    set_error_report_hook,
)
from crown_nexus.core.exceptions._render import (
    current_request_id,
    error_response_parts,
    render_asgi,
    render_exception,
    render_http_error,
    render_validation_errors,
)
from crown_nexus.core.exceptions._types import (
    AuthenticationException,
    BusinessException,
    ConfigurationException,
    DatabaseException,
    DatabaseUnavailableException,
    InvalidStateException,
    NetworkException,
    OperationNotAllowedException,
    PermissionDeniedException,
    RateLimitExceededException,
    RateLimitException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    SecurityException,
    ServiceException,
    TimeoutException,
    ValidationException,
)

__all__ = [
    "AppException",
    "AuthenticationException",
    "BusinessException",
    "ConfigurationException",
    "DatabaseException",
    "DatabaseUnavailableException",
    "ErrorCode",
    "ErrorReportHook",
    "InvalidStateException",
    "NetworkException",
    "OperationNotAllowedException",
    "PermissionDeniedException",
    "RateLimitExceededException",
    "RateLimitException",
    "ResourceAlreadyExistsException",
    "ResourceNotFoundException",
    "SecurityException",
    "ServiceException",
    "TimeoutException",
    "ValidationException",
    "current_request_id",
    "error_body",
    "error_response",
    "error_response_parts",
    "install_exception_handlers",
    "is_production_app",
    "render_asgi",
    "render_exception",
    "render_http_error",
    "render_validation_errors",
    "set_error_report_hook",
    "transient_database_error",
    "utc_timestamp",
]
