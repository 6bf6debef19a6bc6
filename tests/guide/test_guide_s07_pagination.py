"""Guide §7 (Pagination System), every example run as written with the user's objects supplied."""
# ruff: noqa: I001, E402, F401, F811, E712, UP006, UP035, UP045, F841 - the guide's blocks are copied verbatim

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, Optional

import pytest
from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import ForeignKey, String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.testing import app_client
from tests.guide._support import assert_error_body, data_of, guide_app

# --- the user's own objects -------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class User(Base):
    """The user's User table (string ids, as the guide's UserResponse has)."""

    __tablename__ = "guide_s07_users"
    # the columns the user lets clients sort by (the guide's endpoints sort by these)
    __sortable_fields__ = ("username", "email", "created_at")
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    username: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    is_active: Mapped[bool]


class Category(Base):
    """The user's product categories."""

    __tablename__ = "guide_s07_categories"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Product(Base):
    """The user's products."""

    __tablename__ = "guide_s07_products"
    __sortable_fields__ = ("name", "price", "created_at")
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    price: Mapped[float]
    category_id: Mapped[int] = mapped_column(ForeignKey("guide_s07_categories.id"))
    is_active: Mapped[bool]
    created_at: Mapped[datetime]


SESSIONS: dict[str, Any] = {}
T0 = datetime(2024, 1, 1)


async def get_db() -> AsyncIterator[Any]:
    """The user's ``get_db`` dependency: a session on the test database."""
    async with SESSIONS["factory"]() as session:
        yield session


router = APIRouter()

# --- guide §7 "Pagination Models" -------------------------------------------------------------

from crown_nexus.core.pagination import (
    OffsetPaginationParams,
    CursorPaginationParams,
    SortDirection,
    SortField
)
from pydantic import BaseModel

# Create offset-based pagination parameters
offset_params = OffsetPaginationParams(
    page=2,
    page_size=20,
    sort=[
        SortField(field="created_at", direction=SortDirection.DESC),
        SortField(field="id", direction=SortDirection.ASC)
    ]
)

# Create cursor-based pagination parameters
cursor_params = CursorPaginationParams(
    cursor="eyJpZCI6IjEyMyIsImNyZWF0ZWRfYXQiOiIyMDIzLTA1LTE1VDEyOjMwOjAwIn0=",
    limit=20,
    sort=[
        SortField(field="created_at", direction=SortDirection.DESC),
        SortField(field="id", direction=SortDirection.ASC)
    ]
)

# Define a Pydantic model for the response
class UserResponse(BaseModel):
    id: str
    username: str
    email: str
    created_at: datetime

# --- guide §7 "Basic Usage" -------------------------------------------------------------------

from crown_nexus.core.pagination import paginate_with_offset, paginate_with_cursor
from sqlalchemy import select

# In a service or repository
async def get_users_paginated(db, params: OffsetPaginationParams):
    # Create a query
    query = select(User).where(User.is_active == True)

    # Apply pagination
    result = await paginate_with_offset(
        db=db,
        model_class=User,
        query=query,
        params=params,
        response_model=UserResponse
    )

    return result

# Converting pagination result to a response format
def to_response(pagination_result):
    return {
        "items": pagination_result.items,
        "metadata": {
            "page": pagination_result.page,
            "page_size": pagination_result.page_size,
            "total": pagination_result.total,
            "pages": pagination_result.pages,
            "has_next": pagination_result.has_next,
            "has_prev": pagination_result.has_prev
        }
    }

# --- guide §7 "Using the Pagination Service" --------------------------------------------------

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.pagination import get_pagination_service
from sqlalchemy.ext.asyncio import AsyncSession

# In FastAPI endpoints
@router.get("/users")
async def list_users(
    page: int = 1,
    page_size: int = 20,
    sort_by: str = "created_at",
    sort_order: SortDirection = SortDirection.DESC,
    db: AsyncSession = Depends(get_db)
):
    # Get pagination service with database session
    pagination_service = get_pagination_service(db)

    # Create pagination parameters
    params = OffsetPaginationParams(
        page=page,
        page_size=page_size,
        sort=[SortField(field=sort_by, direction=sort_order)]
    )

    # Create query
    query = select(User).where(User.is_active == True)

    # Apply pagination
    result = await pagination_service.paginate_with_offset(
        model_class=User,
        query=query,
        params=params,
        response_model=UserResponse
    )

    return {
        "items": result.items,
        "metadata": {
            "page": result.page,
            "page_size": result.page_size,
            "total": result.total,
            "pages": result.pages,
            "has_next": result.has_next,
            "has_prev": result.has_prev
        }
    }

# Cursor-based pagination example
@router.get("/users/cursor")
async def list_users_with_cursor(
    cursor: Optional[str] = None,
    limit: int = 20,
    sort_by: str = "created_at",
    sort_order: SortDirection = SortDirection.DESC,
    db: AsyncSession = Depends(get_db)
):
    pagination_service = get_pagination_service(db)

    params = CursorPaginationParams(
        cursor=cursor,
        limit=limit,
        sort=[SortField(field=sort_by, direction=sort_order)]
    )

    query = select(User).where(User.is_active == True)

    result = await pagination_service.paginate_with_cursor(
        model_class=User,
        query=query,
        params=params,
        response_model=UserResponse
    )

    return {
        "items": result.items,
        "metadata": {
            "total": result.total,
            "has_next": result.has_next,
            "has_prev": result.has_prev,
            "next_cursor": result.next_cursor
        }
    }

# --- guide §7 "Error Handling" ----------------------------------------------------------------


class ProductResponse(BaseModel):
    """The user's product response model."""

    id: int
    name: str
    price: float


from crown_nexus.core.pagination.exceptions import (
    PaginationException,
    InvalidPaginationParamsException,
    InvalidCursorException,
    InvalidSortFieldException
)

@router.get("/products")
async def list_products(
    page: int = 1,
    page_size: int = 20,
    sort_by: str = "name",
    sort_order: SortDirection = SortDirection.ASC,
    db: AsyncSession = Depends(get_db)
):
    try:
        pagination_service = get_pagination_service(db)

        params = OffsetPaginationParams(
            page=page,
            page_size=page_size,
            sort=[SortField(field=sort_by, direction=sort_order)]
        )

        query = select(Product)

        result = await pagination_service.paginate_with_offset(
            model_class=Product,
            query=query,
            params=params,
            response_model=ProductResponse
        )

        return to_response(result)
    except InvalidSortFieldException as e:
        # Handle invalid sort field
        raise HTTPException(
            status_code=422,
            detail=f"Invalid sort field: {e.details.get('field')}"
        )
    except InvalidPaginationParamsException as e:
        # Handle invalid pagination parameters
        raise HTTPException(
            status_code=422,
            detail=f"Invalid pagination parameters: {str(e)}"
        )
    except PaginationException as e:
        # Handle other pagination exceptions
        raise HTTPException(
            status_code=e.status_code,
            detail=str(e)
        )

# --- guide §7 "Custom Transformations" --------------------------------------------------------

from crown_nexus.core.pagination import paginate_with_offset
from sqlalchemy import select, func

async def get_products_with_categories(db, params):
    # Join with categories
    query = (
        select(Product, Category)
        .join(Category, Product.category_id == Category.id)
        .where(Product.is_active == True)
    )

    # Define a custom transform function
    def transform_product(result):
        product, category = result
        return {
            "id": str(product.id),
            "name": product.name,
            "price": product.price,
            "category": {
                "id": str(category.id),
                "name": category.name
            }
        }

    # Apply pagination with custom transformation
    result = await paginate_with_offset(
        db=db,
        model_class=Product,
        query=query,
        params=params,
        transform_func=transform_product
    )

    return result

# --- guide §7 "Integration with Metrics" ------------------------------------------------------

# the guide elides "Custom pagination logic" (the user's code that makes ``result``)
result = {"items": [], "custom": True}

# These metrics are recorded automatically when using the pagination service
# - pagination_duration_seconds (histogram)
# - pagination_operations_total (counter)

# Manual tracking for custom pagination implementations
from crown_nexus.core.dependency_manager import get_service

metrics_service = get_service("metrics_service")

async def custom_pagination(db, params):
    start_time = time.monotonic()
    error = None

    try:
        # Custom pagination logic
        # ...
        return result
    except Exception as e:
        error = type(e).__name__
        raise
    finally:
        duration = time.monotonic() - start_time
        metrics_service.observe_histogram(
            "custom_pagination_duration_seconds",
            duration,
            {"type": "custom", "error": str(error or "")}
        )

# --- the tests --------------------------------------------------------------------------------


@pytest.fixture
async def db(tmp_path) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """SQLite with 12 users (u11, u12 inactive), 2 categories and 9 products (p9 inactive)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/s07.db")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    SESSIONS["factory"] = async_sessionmaker(engine, expire_on_commit=False)
    async with SESSIONS["factory"]() as session:
        session.add_all(
            User(id=f"u{i:02d}", username=f"user{i}", email=f"user{i}@example.com",
                 created_at=T0 + timedelta(days=i % 6), is_active=i <= 10)
            for i in range(1, 13)
        )
        session.add_all([Category(id=1, name="tools"), Category(id=2, name="home")])
        await session.flush()
        session.add_all(
            Product(id=i, name=f"prod-{10 - i}", price=i * 1.5, category_id=1 + i % 2, is_active=i != 9,
                    created_at=T0 + timedelta(hours=i))
            for i in range(1, 10)
        )
        await session.commit()
        yield session
    await engine.dispose()


def test_models_as_written() -> None:
    """§7 Pagination Models: the guide's parameter objects hold what it passes."""
    assert (offset_params.page, offset_params.page_size, offset_params.offset) == (2, 20, 20)
    assert [(s.field, s.direction) for s in offset_params.sort] == [("created_at", SortDirection.DESC), ("id", SortDirection.ASC)]
    assert cursor_params.limit == 20 and cursor_params.cursor.startswith("eyJ")
    assert UserResponse(id="1", username="a", email="a@b.co", created_at=T0).id == "1"


async def test_basic_usage(db: Any) -> None:
    """§7 Basic Usage: active users paginated into UserResponse items; to_response builds the guide's shape."""
    params = OffsetPaginationParams(page=2, page_size=4, sort=[SortField(field="created_at", direction=SortDirection.DESC)])
    response = to_response(await get_users_paginated(db, params))
    assert response["metadata"] == {"page": 2, "page_size": 4, "total": 10, "pages": 3, "has_next": True, "has_prev": True}
    assert all(isinstance(u, UserResponse) for u in response["items"])
    everyone = to_response(await get_users_paginated(db, OffsetPaginationParams(page_size=100, sort=offset_params.sort)))
    keys = [(-u.created_at.timestamp(), u.id) for u in everyone["items"]]
    assert keys == sorted(keys) and len(keys) == 10
    assert [u.id for u in response["items"]] == [u.id for u in everyone["items"][4:8]]


async def test_service_endpoints(db: Any) -> None:
    """§7 Using the Pagination Service: offset and cursor endpoints over HTTP; the cursor walks all active users."""
    app = guide_app(router)
    async with app_client(app) as client:
        page = data_of((await client.get("/users", params={"page": 1, "page_size": 3, "sort_by": "username", "sort_order": "asc"})).json())
        ids: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 4}
            if cursor:
                params["cursor"] = cursor
            body = data_of((await client.get("/users/cursor", params=params)).json())
            ids += [u["id"] for u in body["items"]]
            if not body["metadata"]["has_next"]:
                break
            cursor = body["metadata"]["next_cursor"]
        guide_cursor = await client.get("/users/cursor", params={"cursor": cursor_params.cursor})
        bad_sort = await client.get("/users", params={"sort_by": "password"})
        bad_page = await client.get("/users", params={"page": 0})
    assert [u["username"] for u in page["items"]] == ["user1", "user10", "user2"]
    assert page["metadata"] == {"page": 1, "page_size": 3, "total": 10, "pages": 4, "has_next": True, "has_prev": False}
    assert len(ids) == 10 and len(set(ids)) == 10 and ids[0] in {"u05", "u10"}
    # the guide's sample cursor is not signed by this application: a typed 422, never a 500
    assert guide_cursor.status_code == 422
    assert_error_body(guide_cursor.json(), "INVALID_CURSOR")
    assert bad_sort.status_code == 422 and bad_sort.json()["details"]["field"] == "password"
    assert_error_body(bad_sort.json(), "INVALID_SORT_FIELD")
    assert bad_page.status_code == 422
    assert_error_body(bad_page.json(), "INVALID_PAGINATION_PARAMS")


async def test_error_handling_endpoint(db: Any) -> None:
    """§7 Error Handling: the guide's handlers turn pagination errors into 422 HTTPExceptions."""
    app = guide_app(router)
    async with app_client(app) as client:
        ok = await client.get("/products", params={"page_size": 3})
        bad_sort = await client.get("/products", params={"sort_by": "secret"})
        bad_params = await client.get("/products", params={"page_size": 1000})
    body = data_of(ok.json())
    assert [p["name"] for p in body["items"]] == ["prod-1", "prod-2", "prod-3"]
    assert body["metadata"]["total"] == 9
    assert bad_sort.status_code == 422 and bad_sort.json()["message"] == "Invalid sort field: secret"
    assert bad_params.status_code == 422
    assert bad_params.json()["message"] == "Invalid pagination parameters: Invalid pagination parameters"


async def test_custom_transformations(db: Any) -> None:
    """§7 Custom Transformations: joined rows become the guide's dicts; inactive products are left out."""
    result = await get_products_with_categories(db, OffsetPaginationParams(page=1, page_size=2))
    assert result.total == 8
    assert result.items == [
        {"id": "1", "name": "prod-9", "price": 1.5, "category": {"id": "2", "name": "home"}},
        {"id": "2", "name": "prod-8", "price": 3.0, "category": {"id": "1", "name": "tools"}},
    ]


async def test_metrics_integration(db: Any) -> None:
    """§7 Integration with Metrics: the service records both metrics; the manual pattern records its histogram."""
    labels = {"type": "offset", "model": "User", "error": ""}
    before = metrics_service.get_counter_sum("pagination_operations_total", labels)
    await get_pagination_service(db).paginate_with_offset(model_class=User, query=select(User), params=OffsetPaginationParams())
    assert metrics_service.get_counter_sum("pagination_operations_total", labels) == before + 1
    assert metrics_service.get_histogram_quantile("pagination_duration_seconds", 1.0, labels) > 0
    assert await custom_pagination(db, OffsetPaginationParams()) is result
    assert metrics_service.get_metric("custom_pagination_duration_seconds") is not None
    assert metrics_service.series_count("custom_pagination_duration_seconds") >= 1
