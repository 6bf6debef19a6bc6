"""``error_service`` and ``audit_service``: the registered services of the error system."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any, TypeVar

from crown_nexus.core.dependency_manager import register_service
from crown_nexus.core.error import _api
from crown_nexus.core.error._redact import redact
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

    def handle_exception(self, exception: BaseException, **kwargs: Any) -> ErrorContext:
        """See :func:`crown_nexus.core.error.handle_exception` (context is taken from the caller)."""
        return _api._handle(exception, 2, kwargs)

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


class RecordedAction:
    """The result of ``log_action``: already recorded; awaiting it gives the stored entry."""

    __slots__ = ("entry",)

    def __init__(self, entry: dict[str, Any]) -> None:
        self.entry = entry

    def __await__(self) -> Generator[Any, None, dict[str, Any]]:
        return self.entry
        yield  # a generator that returns at once

    def __getitem__(self, key: str) -> Any:
        return self.entry[key]


_SHARED_ENTRIES: deque[dict[str, Any]] = deque(maxlen=1000)
_SHARED_LOCK = threading.Lock()


class AuditService:
    """Records who did what (``await audit_service.log_action(user_id, action, ...)``).

    Entries are logged and kept in a bounded in-memory ring (:meth:`recent`), shared by every
    instance unless ``capacity`` is given; details are redacted like error context. ``db`` is
    accepted (``get_service("audit_service", db=db)``, guide §4) and kept as ``.db``.
    """

    def __init__(self, db: Any = None, capacity: int | None = None) -> None:
        self.db = db
        if capacity is None:
            self._entries, self._lock = _SHARED_ENTRIES, _SHARED_LOCK
        else:
            self._entries = deque(maxlen=capacity)
            self._lock = threading.Lock()

    def log_action(
        self,
        user_id: Any = None,
        action: str = "",
        resource_id: Any = None,
        details: dict[str, Any] | None = None,
        **extra: Any,
    ) -> RecordedAction:
        """Record one action now; ``await`` the result for the stored entry.

        The entry is stored and logged before this returns, so the call also works unawaited
        from synchronous code (guide §4's ``log_user_action``) without a "never awaited" warning.
        """
        entry: dict[str, Any] = {
            "user_id": None if user_id is None else str(user_id),
            "action": str(action),
            "resource_id": None if resource_id is None else str(resource_id),
            "details": redact(dict(details or {})),
            "extra": redact(extra),
            "request_id": _api._request_id(),
            "timestamp": datetime.now(UTC).isoformat(),
        }
        with self._lock:
            self._entries.append(entry)
        try:
            from crown_nexus.logging import get_logger

            get_logger("crown_nexus.audit").info(
                "audit", **{k: v for k, v in entry.items() if k != "timestamp"}
            )
        except Exception:  # noqa: S110 - auditing never breaks the audited operation
            pass
        return RecordedAction(entry)

    async def log_user_update(
        self, user_id: Any, data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record a ``user_update`` action listing the updated fields."""
        return await self.log_action(
            user_id=user_id, action="user_update", details={"fields": sorted(data or {})}
        )

    def recent(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The most recent entries, newest last."""
        with self._lock:
            items = list(self._entries)
        return items if limit is None else items[-limit:] if limit > 0 else []


@register_service(name="error_service")
def get_error_service() -> ErrorService:
    """The shared ``ErrorService``."""
    return ErrorService()


@register_service(name="audit_service")
def get_audit_service(db: Any = None) -> AuditService:
    """An ``AuditService`` (bound to ``db`` when given); all share one ring of entries."""
    return AuditService(db)
