"""Paginated product listings (guide §7), built only from the public API.

* ``GET /catalog/products?page=&page_size=&sort=``: page-number pagination.
* ``GET /catalog/products/cursor?cursor=&limit=&sort=``: keyset pagination with signed cursors.

``sort`` is a comma-separated list of fields, ``-`` in front for descending
(``sort=-price_cents,name``); the primary key breaks ties. Bad parameters, unknown sort fields and
malformed or tampered cursors answer 422 with the SPEC §3 body and their own codes
(``INVALID_PAGINATION_PARAMS``, ``INVALID_SORT_FIELD``, ``INVALID_CURSOR``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crown_nexus.core.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    CursorPaginationParams,
    InvalidPaginationParamsException,
    OffsetPaginationParams,
    PaginationService,
    SortDirection,
    SortField,
)
from crown_nexus.core.pagination.models import MAX_CURSOR_LENGTH
from crown_nexus.demo.db import get_db
from crown_nexus.demo.models_products import Product

__all__ = ["SORTABLE", "parse_sort", "router"]

router = APIRouter(prefix="/catalog", tags=["demo: catalog (pagination)"])

#: Fields a client may sort the catalogue by.
SORTABLE = ("id", "name", "category", "price_cents")
_MAX_SORT_PARAM = 200
_SORT_KEY = "-?(" + "|".join(SORTABLE) + ")"
#: what ``sort`` accepts, as the OpenAPI document states it: comma-separated fields of
#: :data:`SORTABLE`, ``-`` for descending (spaces around a field are tolerated)
_SORT_DOC: dict[str, Any] = {
    "maxLength": _MAX_SORT_PARAM,
    "pattern": rf"^\s*{_SORT_KEY}\s*(,\s*{_SORT_KEY}\s*)*$",
}


def _bounds(minimum: int, maximum: int) -> dict[str, Any]:
    """The documented range of a pagination parameter. The pagination models enforce it (422
    ``INVALID_PAGINATION_PARAMS``, their own code), so FastAPI is not asked to check it first."""
    return {"minimum": minimum, "maximum": maximum}


class ProductOut(BaseModel):
    """A product as the catalogue lists it."""

    id: int
    name: str
    category: str
    price_cents: int


def parse_sort(sort: str | None) -> list[SortField]:
    """``"-price_cents,name"`` → sort fields (``-`` = descending); empty → no explicit sort."""
    if not sort:
        return []
    if len(sort) > _MAX_SORT_PARAM:
        raise InvalidPaginationParamsException(
            "Invalid pagination parameters",
            errors=[{"loc": ["query", "sort"], "msg": "sort is too long", "type": "value_error"}],
        )
    fields = []
    for part in sort.split(","):
        name = part.strip()
        direction = SortDirection.ASC
        if name.startswith("-"):
            name, direction = name[1:], SortDirection.DESC
        fields.append(SortField(field=name, direction=direction))
    return fields


def _service(request: Request, db: AsyncSession) -> PaginationService:
    settings = request.app.state.settings
    return PaginationService(db, secret_key=settings.secret_key.get_secret_value())


@router.get("/products")
async def list_products(
    request: Request,
    page: int = Query(default=1, json_schema_extra=_bounds(1, MAX_PAGE)),
    page_size: int = Query(default=DEFAULT_PAGE_SIZE, json_schema_extra=_bounds(1, MAX_PAGE_SIZE)),
    sort: str | None = Query(default=None, json_schema_extra=_SORT_DOC),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """One page of products by page number, with the guide's ``items`` + ``metadata`` shape."""
    params = OffsetPaginationParams(page=page, page_size=page_size, sort=parse_sort(sort))
    result = await _service(request, db).paginate_with_offset(
        model_class=Product,
        query=select(Product),
        params=params,
        response_model=ProductOut,
        allowed_sort_fields=SORTABLE,
    )
    return {
        "items": [item.model_dump() for item in result.items],
        "metadata": {
            "page": result.page,
            "page_size": result.page_size,
            "total": result.total,
            "pages": result.pages,
            "has_next": result.has_next,
            "has_prev": result.has_prev,
        },
    }


@router.get("/products/cursor")
async def list_products_cursor(
    request: Request,
    cursor: str | None = Query(default=None, json_schema_extra={"maxLength": MAX_CURSOR_LENGTH}),
    limit: int = Query(default=DEFAULT_PAGE_SIZE, json_schema_extra=_bounds(1, MAX_PAGE_SIZE)),
    sort: str | None = Query(default=None, json_schema_extra=_SORT_DOC),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """One keyset page of products; follow ``metadata.next_cursor`` / ``prev_cursor``."""
    params = CursorPaginationParams(cursor=cursor, limit=limit, sort=parse_sort(sort))
    result = await _service(request, db).paginate_with_cursor(
        model_class=Product,
        query=select(Product),
        params=params,
        response_model=ProductOut,
        allowed_sort_fields=SORTABLE,
    )
    return {
        "items": [item.model_dump() for item in result.items],
        "metadata": {
            "total": result.total,
            "has_next": result.has_next,
            "has_prev": result.has_prev,
            "next_cursor": result.next_cursor,
            "prev_cursor": result.prev_cursor,
        },
    }
