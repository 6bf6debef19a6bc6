"""``error_service`` and ``audit_service``: the registered services of the error system.

The audit service lives in :mod:`crown_nexus.core.audit` (a durable, hash-chained SQL trail);
it is re-exported here because the guide imports it from the error system.
"""

from __future__ import annotations

from typing import Any, TypeVar

from crown_nexus.core.audit.service import (
    AuditService,
    RecordedAction,
    get_audit_service,
)
from crown_nexus.core.dependency_manager import register_service
from crown_nexus.core.error import _api
from crown_nexus.core.error.base import ErrorContext, ErrorReporter
from crown_nexus.core.error.reporters import get_reporters, register_reporter
from crown_nexus.core.exceptions import (
    BusinessException,
    PermissionDeniedException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    ValidationException,
)

__all__ = [
    "AuditService",
    "ErrorService",
    "RecordedAction",
    "get_audit_service",
    "get_error_service",
]

T = TypeVar("T")


class ErrorService:
    """The error system as a service (``get_service("error_service")``): reporting and shortcuts."""

    async def report_error(
        self, exception: BaseException, context: ErrorContext | dict[str, Any] | None = None
    ) -> None:
        """See :func:`crown_nexus.core.error.report_error`."""
        await _api.report_error(exception, context)

    def handle_exception(
        self, exception: BaseException, *, capture_args: bool = False, **kwargs: Any
    ) -> ErrorContext:
        """See :func:`crown_nexus.core.error.handle_exception` (context is taken from the caller;
        its arguments only with ``capture_args=True``, redacted)."""
        return _api._handle(exception, 2, kwargs, capture_args=capture_args)

    def register_reporter(self, reporter: ErrorReporter) -> ErrorReporter:
        """Add a reporter (see :func:`crown_nexus.core.error.register_reporter`)."""
        return register_reporter(reporter)

    @property
    def reporters(self) -> list[ErrorReporter]:
        """The registered reporters."""
        return get_reporters()

    def ensure_not_none(
        self,
        value: T | None,
        resource_type: str = "Resource",
        resource_id: Any = None,
        message: str | None = None,
    ) -> T:
        """Return ``value`` or raise ``ResourceNotFoundException``."""
        return _api.ensure_not_none(value, resource_type, resource_id, message)

    def resource_not_found(
        self, resource_type: str, resource_id: Any = None, message: str | None = None
    ) -> ResourceNotFoundException:
        """A ``ResourceNotFoundException`` (to ``raise``)."""
        return _api.resource_not_found(resource_type, resource_id, message)

    def resource_already_exists(
        self, resource_type: str, identifier: Any, field: str = "id", message: str | None = None
    ) -> ResourceAlreadyExistsException:
        """A ``ResourceAlreadyExistsException`` (to ``raise``)."""
        return _api.resource_already_exists(resource_type, identifier, field, message)

    def validation_error(
        self, field: str | list[str | int], message: str, error_type: str = "value_error"
    ) -> ValidationException:
        """A ``ValidationException`` with one error at ``field`` (to ``raise``)."""
        return _api.validation_error(field, message, error_type)

    def permission_denied(
        self,
        action: str | None = None,
        resource_type: str | None = None,
        permission: str | None = None,
        message: str | None = None,
    ) -> PermissionDeniedException:
        """A ``PermissionDeniedException`` (to ``raise``)."""
        return _api.permission_denied(action, resource_type, permission, message)

    def business_logic_error(
        self, message: str, details: dict[str, Any] | list[Any] | None = None
    ) -> BusinessException:
        """A ``BusinessException`` (to ``raise``)."""
        return _api.business_logic_error(message, details)


@register_service(name="error_service")
def get_error_service() -> ErrorService:
    """The shared ``ErrorService``."""
    return ErrorService()
