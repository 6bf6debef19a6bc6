"""Every exception of guide §2, with the constructor parameters the guide shows (SPEC §3 statuses)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from crown_nexus.core.exceptions._base import AppException, ErrorCode

__all__ = [
    "AuthenticationException",
    "BusinessException",
    "ConfigurationException",
    "DatabaseException",
    "DatabaseUnavailableException",
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
]

DEFAULT_RETRY_AFTER_SECONDS = 60


def _merge(
    base: Mapping[str, Any], details: dict[str, Any] | list[Any] | None
) -> dict[str, Any] | list[Any] | None:
    """Details built from named fields, with the caller's ``details`` on top (a list wins as-is).

    ``None`` when there is nothing to show.
    """
    if isinstance(details, list):
        return details
    merged = {k: v for k, v in base.items() if v is not None}
    if details:
        merged.update(details)
    return merged or None


# --- resources ----------------------------------------------------------------------------


class ResourceNotFoundException(AppException):
    """A resource looked up by id does not exist (404, ``RESOURCE_NOT_FOUND``)."""

    status_code = 404
    default_code = ErrorCode.RESOURCE_NOT_FOUND

    def __init__(
        self,
        resource_type: str = "Resource",
        resource_id: Any = None,
        message: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        code: ErrorCode | str | None = None,
    ) -> None:
        self.resource_type = resource_type
        self.resource_id = resource_id
        if message is None:
            message = (
                f"{resource_type} with id {resource_id} not found"
                if resource_id is not None
                else f"{resource_type} not found"
            )
        rid = None if resource_id is None else str(resource_id)
        super().__init__(
            message,
            code=code,
            details=_merge({"resource_type": resource_type, "resource_id": rid}, details),
            headers=headers,
        )


class ResourceAlreadyExistsException(AppException):
    """A resource with the same identifying field already exists (409, ``RESOURCE_ALREADY_EXISTS``)."""

    status_code = 409
    default_code = ErrorCode.RESOURCE_ALREADY_EXISTS

    def __init__(
        self,
        resource_type: str = "Resource",
        identifier: Any = None,
        field: str = "id",
        message: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        code: ErrorCode | str | None = None,
    ) -> None:
        self.resource_type = resource_type
        self.identifier = identifier
        self.field = field
        if message is None:
            message = f"{resource_type} with {field} {identifier} already exists"
        ident = None if identifier is None else str(identifier)
        super().__init__(
            message,
            code=code,
            details=_merge(
                {"resource_type": resource_type, "field": field, "identifier": ident}, details
            ),
            headers=headers,
        )


# --- authentication and authorization ----------------------------------------------------


class AuthenticationException(AppException):
    """Missing or invalid credentials (401, ``AUTHENTICATION_ERROR``, ``WWW-Authenticate: Bearer``)."""

    status_code = 401
    default_code = ErrorCode.AUTHENTICATION_ERROR
    default_message = "Authentication failed"

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        code: ErrorCode | str | None = None,
    ) -> None:
        merged = {"WWW-Authenticate": "Bearer"}
        merged.update(headers or {})
        super().__init__(message, code=code, details=details, headers=merged)


class PermissionDeniedException(AppException):
    """The caller is authenticated but may not do this (403, ``PERMISSION_DENIED``)."""

    status_code = 403
    default_code = ErrorCode.PERMISSION_DENIED

    def __init__(
        self,
        message: str | None = None,
        action: str | None = None,
        resource_type: str | None = None,
        permission: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        code: ErrorCode | str | None = None,
    ) -> None:
        self.action = action
        self.resource_type = resource_type
        self.permission = permission
        if message is None:
            if action and resource_type:
                message = f"Permission denied: cannot {action} {resource_type}"
            elif permission:
                message = f"Permission denied: {permission} required"
            else:
                message = "Permission denied"
        super().__init__(
            message,
            code=code,
            details=_merge(
                {"action": action, "resource_type": resource_type, "permission": permission},
                details,
            ),
            headers=headers,
        )


class SecurityException(AppException):
    """A request or token broke a security rule (403, ``SECURITY_ERROR``)."""

    status_code = 403
    default_code = ErrorCode.SECURITY_ERROR
    default_message = "Security check failed"

    def __init__(
        self,
        message: str | None = None,
        code: ErrorCode | str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(
            message, code=code, status_code=status_code, details=details, headers=headers
        )


# --- business logic -----------------------------------------------------------------------


class BusinessException(AppException):
    """A business rule was violated (400, ``BUSINESS_LOGIC_ERROR``)."""

    status_code = 400
    default_code = ErrorCode.BUSINESS_LOGIC_ERROR
    default_message = "Business rule violated"

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        code: ErrorCode | str | None = None,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            message, code=code, status_code=status_code, details=details, headers=headers
        )


class InvalidStateException(BusinessException):
    """An operation does not fit the resource's current state (409, ``INVALID_STATE``)."""

    status_code = 409
    default_code = ErrorCode.INVALID_STATE
    default_message = "Invalid state"

    def __init__(
        self,
        message: str | None = None,
        current_state: Any = None,
        expected_state: Any = None,
        details: dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        code: ErrorCode | str | None = None,
    ) -> None:
        self.current_state = current_state
        self.expected_state = expected_state
        super().__init__(
            message,
            details=_merge(
                {"current_state": current_state, "expected_state": expected_state}, details
            ),
            code=code,
            headers=headers,
        )


class OperationNotAllowedException(BusinessException):
    """The operation is never allowed here (403, ``OPERATION_NOT_ALLOWED``)."""

    status_code = 403
    default_code = ErrorCode.OPERATION_NOT_ALLOWED
    default_message = "Operation not allowed"

    def __init__(
        self,
        message: str | None = None,
        operation: str | None = None,
        reason: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        code: ErrorCode | str | None = None,
    ) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(
            message,
            details=_merge({"operation": operation, "reason": reason}, details),
            code=code,
            headers=headers,
        )


# --- validation ---------------------------------------------------------------------------


def _clean_error(item: Any) -> dict[str, Any]:
    """One validation error item with ``loc`` (a list), ``msg`` and ``type``, JSON-safe."""
    if not isinstance(item, Mapping):
        return {"loc": [], "msg": str(item), "type": "value_error"}
    loc = item.get("loc", [])
    if isinstance(loc, str) or not isinstance(loc, Sequence):
        loc = [loc]
    out: dict[str, Any] = {
        "loc": [p if isinstance(p, int | str) else str(p) for p in loc],
        "msg": str(item.get("msg", "")),
        "type": str(item.get("type", "value_error")),
    }
    return out


class ValidationException(AppException):
    """Input failed validation (422, ``VALIDATION_ERROR``); ``details`` is the ``errors`` list."""

    status_code = 422
    default_code = ErrorCode.VALIDATION_ERROR
    default_message = "Validation failed"

    def __init__(
        self,
        message: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        code: ErrorCode | str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.errors: list[dict[str, Any]] = [_clean_error(e) for e in (errors or [])]
        if details is None:
            body_details: dict[str, Any] | list[Any] | None = self.errors
        elif isinstance(details, dict) and self.errors:
            body_details = {**details, "errors": self.errors}
        else:
            body_details = details
        super().__init__(
            message, code=code, status_code=status_code, details=body_details, headers=headers
        )

    @classmethod
    def from_errors(cls, source: Any, message: str = "Validation failed") -> ValidationException:
        """A ``ValidationException`` from anything with ``.errors()`` (pydantic's
        ``ValidationError``, FastAPI's ``RequestValidationError``) or from an errors list;
        each item keeps only ``loc``, ``msg`` and ``type`` (never the rejected input).
        """
        errors = source.errors() if callable(getattr(source, "errors", None)) else source
        return cls(message=message, errors=list(errors or []))


# --- system -------------------------------------------------------------------------------


class DatabaseException(AppException):
    """A database operation failed (500, ``DATABASE_ERROR``)."""

    status_code = 500
    default_code = ErrorCode.DATABASE_ERROR
    default_message = "Database error"

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        original_error: BaseException | None = None,
        code: ErrorCode | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.original_error = original_error
        super().__init__(message, code=code, details=details, headers=headers)


class DatabaseUnavailableException(DatabaseException):
    """The database cannot serve now and a retry may succeed (503, ``DATABASE_UNAVAILABLE``,
    ``Retry-After``): down, connection lost, out of connections, lock busy. Driver errors of that
    kind that reach the handlers unwrapped render the same way."""

    status_code = 503
    default_code = ErrorCode.DATABASE_UNAVAILABLE
    default_message = "Database unavailable"

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        original_error: BaseException | None = None,
        code: ErrorCode | str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: int = 1,
    ) -> None:
        merged = {"Retry-After": str(max(1, int(retry_after))), **dict(headers or {})}
        super().__init__(message, details, original_error, code, merged)


class ConfigurationException(AppException):
    """The application is misconfigured (500, ``CONFIGURATION_ERROR``)."""

    status_code = 500
    default_code = ErrorCode.CONFIGURATION_ERROR
    default_message = "Configuration error"

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        config_key: str | None = None,
        code: ErrorCode | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.config_key = config_key
        super().__init__(
            message,
            code=code,
            details=_merge({"config_key": config_key}, details),
            headers=headers,
        )


class ServiceException(AppException):
    """An external or internal service failed (502, ``SERVICE_ERROR``)."""

    status_code = 502
    default_code = ErrorCode.SERVICE_ERROR
    default_message = "Service error"

    def __init__(
        self,
        message: str | None = None,
        service_name: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        code: ErrorCode | str | None = None,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.service_name = service_name
        super().__init__(
            message,
            code=code,
            status_code=status_code,
            details=_merge({"service_name": service_name}, details),
            headers=headers,
        )


class NetworkException(AppException):
    """A network operation failed (503, ``NETWORK_ERROR``)."""

    status_code = 503
    default_code = ErrorCode.NETWORK_ERROR
    default_message = "Network error"

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        code: ErrorCode | str | None = None,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            message, code=code, status_code=status_code, details=details, headers=headers
        )


class TimeoutException(NetworkException):
    """A request took longer than allowed (504, ``TIMEOUT``); TimeoutMiddleware raises this body."""

    status_code = 504
    default_code = ErrorCode.TIMEOUT
    default_message = "Request timed out"


def _retry_after(headers: Mapping[str, str], reset_seconds: float | None) -> str:
    """Whole seconds until a retry is admitted, at least 1 (SPEC §10).

    A ``Retry-After`` header that is not a finite number of seconds is ignored (``reset_seconds``
    or the default applies), so the header is always whole seconds.
    """
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return str(max(1, math.ceil(float(value))))
            except (TypeError, ValueError, OverflowError):
                break
    if reset_seconds is not None:
        try:
            return str(max(1, math.ceil(float(reset_seconds))))
        except (TypeError, ValueError, OverflowError):
            pass
    return str(DEFAULT_RETRY_AFTER_SECONDS)


class RateLimitException(AppException):
    """Too many requests (429, ``RATE_LIMIT_EXCEEDED``); ``Retry-After`` is always present.

    The headers are kept as ``.headers`` and in ``.details["headers"]`` (SPEC §10).
    """

    status_code = 429
    default_code = ErrorCode.RATE_LIMIT_EXCEEDED
    default_message = "Rate limit exceeded"

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        reset_seconds: float | None = None,
        code: ErrorCode | str | None = None,
    ) -> None:
        hdrs = {str(k): str(v) for k, v in (headers or {}).items()}
        retry_after = _retry_after(hdrs, reset_seconds)
        hdrs = {k: v for k, v in hdrs.items() if k.lower() != "retry-after"}
        hdrs["Retry-After"] = retry_after
        if reset_seconds is None:
            reset_seconds = float(retry_after) if retry_after.isdigit() else None
        self.reset_seconds: float = (
            float(reset_seconds)
            if reset_seconds is not None
            else float(DEFAULT_RETRY_AFTER_SECONDS)
        )
        if isinstance(details, list):
            body_details: dict[str, Any] | list[Any] = details
        else:
            body_details = dict(details or {})
            body_details["headers"] = dict(hdrs)
        super().__init__(message, code=code, details=body_details, headers=hdrs)

    @property
    def retry_after(self) -> int:
        """Seconds until a retry would be admitted (the ``Retry-After`` header as an int)."""
        try:
            return int(self.headers["Retry-After"])
        except ValueError:
            return DEFAULT_RETRY_AFTER_SECONDS


class RateLimitExceededException(RateLimitException):
    """The rate-limiting system's name for :class:`RateLimitException` (same status and body)."""
