"""``GET /demo/errors/{kind}``: raise each exception type so every error body can be seen."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.exceptions import HTTPException

from crown_nexus.core.error import InMemoryReporter, register_reporter
from crown_nexus.core.exceptions import (
    AuthenticationException,
    BusinessException,
    ConfigurationException,
    DatabaseException,
    InvalidStateException,
    NetworkException,
    OperationNotAllowedException,
    PermissionDeniedException,
    RateLimitException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    SecurityException,
    ServiceException,
    ValidationException,
)

__all__ = ["RECENT_ERRORS", "ErrorKind", "router"]

router = APIRouter(prefix="/demo/errors", tags=["demo: errors"])

#: The in-memory ring of recently reported errors this service shows at /demo/errors/recent
#: (bounded, redacted summaries: it never keeps an exception, nor the request it came from).
RECENT_ERRORS = register_reporter(InMemoryReporter(capacity=200))


class ErrorKind(enum.StrEnum):
    """The errors this endpoint can raise (anything else is a 422 request validation error)."""

    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    AUTHENTICATION = "authentication"
    PERMISSION_DENIED = "permission_denied"
    VALIDATION = "validation"
    BUSINESS = "business"
    INVALID_STATE = "invalid_state"
    OPERATION_NOT_ALLOWED = "operation_not_allowed"
    SECURITY = "security"
    RATE_LIMIT = "rate_limit"
    DATABASE = "database"
    CONFIGURATION = "configuration"
    SERVICE = "service"
    NETWORK = "network"
    HTTP = "http"
    UNEXPECTED = "unexpected"


def _unexpected() -> Exception:
    # the text stands for internals that must never reach a client in production
    return RuntimeError("connection to db://admin:hunter2@10.0.0.5 refused")


_FACTORIES: dict[ErrorKind, Callable[[], Exception]] = {
    ErrorKind.NOT_FOUND: lambda: ResourceNotFoundException(
        resource_type="User", resource_id="123", message="User not found"
    ),
    ErrorKind.ALREADY_EXISTS: lambda: ResourceAlreadyExistsException(
        resource_type="User", identifier="user@example.com", field="email"
    ),
    ErrorKind.AUTHENTICATION: lambda: AuthenticationException(
        message="Invalid credentials", details={"reason": "expired_token"}
    ),
    ErrorKind.PERMISSION_DENIED: lambda: PermissionDeniedException(
        action="edit", resource_type="Document", permission="documents:write"
    ),
    ErrorKind.VALIDATION: lambda: ValidationException(
        message="Validation failed",
        errors=[
            {
                "loc": ["username"],
                "msg": "Username must be at least 3 characters",
                "type": "value_error.length",
            },
            {"loc": ["email"], "msg": "Invalid email format", "type": "value_error.email"},
        ],
    ),
    ErrorKind.BUSINESS: lambda: BusinessException(
        message="Cannot complete order", details={"reason": "insufficient_inventory"}
    ),
    ErrorKind.INVALID_STATE: lambda: InvalidStateException(
        message="Cannot cancel approved order", current_state="approved", expected_state="pending"
    ),
    ErrorKind.OPERATION_NOT_ALLOWED: lambda: OperationNotAllowedException(
        message="Cannot delete system user", operation="delete", reason="system_account"
    ),
    ErrorKind.SECURITY: lambda: SecurityException(
        message="CSRF validation failed", details={"error": "Invalid or expired CSRF token"}
    ),
    ErrorKind.RATE_LIMIT: lambda: RateLimitException(
        message="Too many requests", headers={"Retry-After": "60"}
    ),
    ErrorKind.DATABASE: lambda: DatabaseException(
        message="Failed to insert record", details={"table": "users"}
    ),
    ErrorKind.CONFIGURATION: lambda: ConfigurationException(message="Missing SMTP host"),
    ErrorKind.SERVICE: lambda: ServiceException(
        message="Payment service unavailable", service_name="stripe"
    ),
    ErrorKind.NETWORK: lambda: NetworkException(message="Upstream unreachable"),
    ErrorKind.HTTP: lambda: HTTPException(status_code=418, detail="I'm a teapot"),
    ErrorKind.UNEXPECTED: _unexpected,
}


@router.get("")
async def list_error_kinds() -> dict[str, list[str]]:
    """The kinds ``GET /demo/errors/{kind}`` can raise."""
    return {"kinds": [kind.value for kind in ErrorKind]}


@router.get("/recent")
async def recent_errors(
    request: Request, limit: int = Query(default=20, ge=0, le=RECENT_ERRORS.capacity)
) -> dict[str, list[dict[str, Any]]]:
    """The last reported errors (type, code, where, request id, time; never their text).

    Not served in production (404): even without messages, error listings help attackers.
    """
    if request.app.state.settings.is_production:
        raise ResourceNotFoundException(resource_type="Page", resource_id=request.url.path)
    limit = max(0, min(limit, RECENT_ERRORS.capacity))
    items = []
    for entry in reversed(RECENT_ERRORS.recent(limit)):
        items.append(
            {
                "type": entry.type,
                "code": entry.code,
                "function": entry.context.function,
                "request_id": entry.context.request_id,
                "timestamp": entry.context.timestamp.isoformat(),
            }
        )
    return {"errors": items}


#: every status ``GET /demo/errors/{kind}`` answers, documented on the operation
_KIND_STATUSES: dict[int | str, dict[str, Any]] = {
    status: {"description": "the SPEC §3 body of the raised exception"}
    for status in sorted({getattr(factory(), "status_code", 500) for factory in _FACTORIES.values()})
}


@router.get("/{kind}", responses=_KIND_STATUSES)
async def raise_error(kind: ErrorKind) -> dict[str, str]:
    """Raise the exception named by ``kind``; the response is its SPEC §3 error body."""
    raise _FACTORIES[kind]()
