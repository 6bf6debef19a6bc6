"""Pagination exceptions (guide §7): every one is a 422 :class:`ValidationException` with its own code.

``details`` is a dict (``e.details.get("field")`` works, as the guide reads it) that also
carries the ``errors`` list (``loc``, ``msg``, ``type`` per item).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from crown_nexus.core.exceptions import ErrorCode, ValidationException

__all__ = [
    "InvalidCursorException",
    "InvalidPaginationParamsException",
    "InvalidSortFieldException",
    "PaginationException",
]


class PaginationException(ValidationException):
    """Base of the pagination errors (422, ``PAGINATION_ERROR``)."""

    default_code = ErrorCode.PAGINATION_ERROR
    default_message = "Pagination error"

    def __init__(
        self,
        message: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        details: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        code: ErrorCode | str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(
            message,
            errors=errors,
            details=dict(details or {}),
            headers=headers,
            code=code,
            status_code=status_code,
        )
        if isinstance(self.details, dict):
            self.details.setdefault("errors", self.errors)


class InvalidCursorException(PaginationException):
    """A cursor that is malformed, tampered with, or made for another query (``INVALID_CURSOR``)."""

    default_code = ErrorCode.INVALID_CURSOR
    default_message = "Invalid pagination cursor"

    def __init__(self, message: str | None = None, reason: str = "malformed") -> None:
        msg = message or self.default_message
        super().__init__(
            msg,
            errors=[{"loc": ["cursor"], "msg": msg, "type": f"cursor.{reason}"}],
            details={"field": "cursor", "reason": reason},
        )
        self.reason = reason


class InvalidSortFieldException(PaginationException):
    """A sort field the model does not have or does not allow (``INVALID_SORT_FIELD``).

    ``details["field"]`` is the rejected name and ``details["allowed"]`` the allowed ones.
    """

    default_code = ErrorCode.INVALID_SORT_FIELD
    default_message = "Invalid sort field"

    def __init__(self, field: str, allowed: Iterable[str] = (), message: str | None = None) -> None:
        shown = field if len(field) <= 100 else field[:100] + "..."
        msg = message or f"Invalid sort field: {shown}"
        super().__init__(
            msg,
            errors=[{"loc": ["sort", shown], "msg": msg, "type": "sort.invalid_field"}],
            details={"field": shown, "allowed": sorted(allowed)},
        )
        self.field = shown


class InvalidPaginationParamsException(PaginationException):
    """Page, page size, limit or sort parameters out of range or of the wrong type
    (``INVALID_PAGINATION_PARAMS``)."""

    default_code = ErrorCode.INVALID_PAGINATION_PARAMS
    default_message = "Invalid pagination parameters"
