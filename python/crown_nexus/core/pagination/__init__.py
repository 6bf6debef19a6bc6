"""Pagination (guide §7): offset and keyset (cursor) pagination over SQLAlchemy 2 async queries.

Parameters (:class:`OffsetPaginationParams`, :class:`CursorPaginationParams`, :class:`SortField`)
reject bad values with :class:`~crown_nexus.core.pagination.exceptions.InvalidPaginationParamsException`;
sort fields outside the allow-list raise ``InvalidSortFieldException`` and bad cursors
``InvalidCursorException`` (all 422 with their own codes).

Sorting is deny-by-default: without ``allowed_sort_fields`` only the model's primary key and the
names in its ``__sortable_fields__`` class attribute are sortable (see :func:`sortable_fields`).

Cursors are opaque base64url tokens, encrypted and authenticated with AES-256-GCM under a key
derived (HKDF) from the application's secret key: a client can neither read the sort values in
one nor change them, and each is bound to the query that made it (model, sort fields and
directions, the query's filter and bound values, an optional ``cursor_scope``), so replaying it
against another query, tampering with it or truncating it is a 422 ``INVALID_CURSOR``.
``get_service("pagination_service", db=db)`` or :func:`get_pagination_service` returns a
:class:`PaginationService`.
"""

from __future__ import annotations

from crown_nexus.core.pagination._cursor import CursorCodec, decode_cursor, encode_cursor
from crown_nexus.core.pagination._paginate import (
    paginate_with_cursor,
    paginate_with_offset,
    query_fingerprint,
    record_pagination_metrics,
    sortable_fields,
)
from crown_nexus.core.pagination._service import PaginationService, get_pagination_service
from crown_nexus.core.pagination.exceptions import (
    InvalidCursorException,
    InvalidPaginationParamsException,
    InvalidSortFieldException,
    PaginationException,
)
from crown_nexus.core.pagination.models import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    CursorPaginationParams,
    CursorPaginationResult,
    OffsetPaginationParams,
    OffsetPaginationResult,
    PaginationResult,
    SortDirection,
    SortField,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "CursorCodec",
    "CursorPaginationParams",
    "CursorPaginationResult",
    "InvalidCursorException",
    "InvalidPaginationParamsException",
    "InvalidSortFieldException",
    "OffsetPaginationParams",
    "OffsetPaginationResult",
    "PaginationException",
    "PaginationResult",
    "PaginationService",
    "SortDirection",
    "SortField",
    "decode_cursor",
    "encode_cursor",
    "get_pagination_service",
    "paginate_with_cursor",
    "paginate_with_offset",
    "query_fingerprint",
    "record_pagination_metrics",
    "sortable_fields",
]


def _register() -> None:
    from crown_nexus.core.dependency_manager import get_registry, register_service

    if "pagination_service" not in get_registry().names():
        register_service(get_pagination_service, name="pagination_service")


_register()
