"""Pagination parameters and results (guide §7).

Constructing :class:`OffsetPaginationParams` / :class:`CursorPaginationParams` with values out of
range or of the wrong type raises :class:`InvalidPaginationParamsException` (422), not pydantic's
``ValidationError`` — so an endpoint building them from query parameters answers 422, never 500.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crown_nexus.core.pagination.exceptions import InvalidPaginationParamsException

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_CURSOR_LENGTH",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "CursorPaginationParams",
    "CursorPaginationResult",
    "OffsetPaginationParams",
    "OffsetPaginationResult",
    "PaginationResult",
    "SortDirection",
    "SortField",
]

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000
MAX_SORT_FIELDS = 8
MAX_CURSOR_LENGTH = 4096


class SortDirection(enum.StrEnum):
    """Sort order of one field."""

    ASC = "asc"
    DESC = "desc"


class _Params(BaseModel):
    """Common behaviour: bad values raise :class:`InvalidPaginationParamsException`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="wrap")
    @classmethod
    def _typed_errors(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise InvalidPaginationParamsException.from_errors(
                exc, message="Invalid pagination parameters"
            ) from None


class SortField(_Params):
    """One sort key: a field name and a direction (default ascending)."""

    field: str = Field(min_length=1, max_length=100)
    direction: SortDirection = SortDirection.ASC


class OffsetPaginationParams(_Params):
    """Page-number pagination: ``page`` from 1, ``page_size`` 1..``MAX_PAGE_SIZE``, sort keys."""

    page: int = Field(default=1, ge=1, le=MAX_PAGE)
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    sort: list[SortField] = Field(default_factory=list, max_length=MAX_SORT_FIELDS)

    @property
    def offset(self) -> int:
        """Rows skipped before this page."""
        return (self.page - 1) * self.page_size


class CursorPaginationParams(_Params):
    """Keyset pagination: an opaque ``cursor`` (``None`` = first page), ``limit``, sort keys."""

    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_LENGTH)
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    sort: list[SortField] = Field(default_factory=list, max_length=MAX_SORT_FIELDS)


class OffsetPaginationResult(BaseModel, Generic[T]):
    """One page: ``items`` plus ``page``, ``page_size``, ``total``, ``pages``, ``has_next``, ``has_prev``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    items: list[T]
    page: int
    page_size: int
    total: int
    pages: int
    has_next: bool
    has_prev: bool

    @classmethod
    def build(cls, items: list[Any], page: int, page_size: int, total: int) -> OffsetPaginationResult[Any]:
        """The result for ``items`` of ``page`` given the ``total`` row count."""
        pages = math.ceil(total / page_size) if total else 0
        return cls(
            items=items,
            page=page,
            page_size=page_size,
            total=total,
            pages=pages,
            has_next=page < pages,
            has_prev=page > 1,
        )


class CursorPaginationResult(BaseModel, Generic[T]):
    """One keyset page: ``items``, ``next_cursor``/``prev_cursor`` (``None`` at an end),
    ``has_next``, ``has_prev`` and ``total`` (``None`` when counting was skipped)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    items: list[T]
    limit: int
    total: int | None
    has_next: bool
    has_prev: bool
    next_cursor: str | None
    prev_cursor: str | None


#: The guide's generic name for an offset page.
PaginationResult = OffsetPaginationResult
