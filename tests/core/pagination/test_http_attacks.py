"""Attacks on pagination over HTTP: an endpoint that passes the client's sort straight through,
on the demo's ``users`` table (which holds ``hashed_password``), with no allow-list of its own."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from crown_nexus.core.pagination import (
    CursorPaginationParams,
    OffsetPaginationParams,
    PaginationService,
    SortDirection,
    SortField,
)
from crown_nexus.demo.models_users import User
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

ERROR_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$"
STATE: dict[str, Any] = {}

router = APIRouter()


async def _db() -> AsyncIterator[AsyncSession]:
    async with STATE["factory"]() as session:
        yield session


def _sort(sort: str | None) -> list[SortField]:
    if not sort:
        return []
    return [SortField(field=s.lstrip("-"), direction=SortDirection.DESC if s.startswith("-") else SortDirection.ASC)
            for s in sort.split(",")]


def _service(request: Request, db: AsyncSession) -> PaginationService:
    return PaginationService(db, secret_key=request.app.state.settings.secret_key.get_secret_value())


@router.get("/people")
async def people(request: Request, page: int = 1, sort: str | None = None, role: str = "user",
                 db: AsyncSession = Depends(_db)) -> dict[str, Any]:
    """A careless offset listing: the client's sort goes straight in, no allowed_sort_fields."""
    result = await _service(request, db).paginate_with_offset(
        User, select(User).where(User.role == role), OffsetPaginationParams(page=page, page_size=3, sort=_sort(sort)),
        transform_func=User.to_response)
    return {"items": result.items, "total": result.total}


@router.get("/people/cursor")
async def people_cursor(request: Request, cursor: str | None = None, sort: str | None = None, role: str = "user",
                        db: AsyncSession = Depends(_db)) -> dict[str, Any]:
    """The same careless listing by keyset."""
    result = await _service(request, db).paginate_with_cursor(
        User, select(User).where(User.role == role), CursorPaginationParams(cursor=cursor, limit=3, sort=_sort(sort)),
        transform_func=User.to_response)
    return {"items": result.items, "next_cursor": result.next_cursor, "has_next": result.has_next}


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A client of an app serving the careless routes over 8 users (5 role ``user``, 3 ``admin``)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/people.db")
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: User.__table__.create(c))
    STATE["factory"] = async_sessionmaker(engine, expire_on_commit=False)
    async with STATE["factory"]() as session:
        session.add_all(
            User(id=f"user-{i:04d}", email=f"p{i}@example.com", name=f"Person {i}", hashed_password=HASH + "x" * i,
                 role="admin" if i % 3 == 0 else "user", permissions=[], is_active=True,
                 created_at=datetime(2024, 1, i, tzinfo=UTC))
            for i in range(1, 9)
        )
        await session.commit()
    app = FastAPI()
    app.include_router(router)
    setup_app(app, Settings(secret_key="http-attack-key"))
    try:
        async with app_client(app) as c:
            yield c
    finally:
        await engine.dispose()


def _error(resp: Any, code: str) -> dict[str, Any]:
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert set(body) == ERROR_KEYS and body["success"] is False and body["code"] == code
    return body


def _unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _data(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return body["data"] if body.get("success") is True and "data" in body else body


@pytest.mark.parametrize("path", ["/people", "/people/cursor"])
@pytest.mark.parametrize("sort", ["hashed_password", "-hashed_password", "email", "id,hashed_password"])
async def test_sort_by_unlisted_column_is_422(client: Any, path: str, sort: str) -> None:
    """Sorting by hashed_password (or any column the endpoint did not allow) answers 422 INVALID_SORT_FIELD
    for offset and cursor paging, naming only the primary key as allowed and leaking no hash."""
    resp = await client.get(path, params={"sort": sort})
    body = _error(resp, "INVALID_SORT_FIELD")
    assert body["details"]["field"] == sort.split(",")[-1].lstrip("-")
    assert body["details"]["allowed"] == ["id"]
    assert "argon2" not in resp.text


async def test_primary_key_sort_still_pages(client: Any) -> None:
    """Sorting by the primary key needs no allow-list: the cursor walk sees every user of the role once."""
    ids: list[str] = []
    cursor = None
    while True:
        params = {"sort": "-id"} | ({"cursor": cursor} if cursor else {})
        data = _data(await client.get("/people/cursor", params=params))
        ids += [u["id"] for u in data["items"]]
        if not data["has_next"]:
            break
        cursor = data["next_cursor"]
    assert ids == ["user-0008", "user-0007", "user-0005", "user-0004", "user-0002", "user-0001"]
    offset = _data(await client.get("/people", params={"sort": "-id", "page": 2}))
    assert [u["id"] for u in offset["items"]] == ["user-0004", "user-0002", "user-0001"]


async def test_cursor_replayed_on_another_filter_is_422(client: Any) -> None:
    """A cursor from role=user is refused by role=admin (same endpoint and sort, another filter)."""
    first = _data(await client.get("/people/cursor", params={"role": "user"}))
    cursor = first["next_cursor"]
    assert cursor and "user-0004" not in cursor
    assert b"user-0004" not in _unb64(cursor)  # the position's id is not readable either
    body = _error(await client.get("/people/cursor", params={"role": "admin", "cursor": cursor}), "INVALID_CURSOR")
    assert body["details"]["field"] == "cursor"
    _error(await client.get("/people/cursor", params={"role": "user", "sort": "-id", "cursor": cursor}),
           "INVALID_CURSOR")
    ok = _data(await client.get("/people/cursor", params={"role": "user", "cursor": cursor}))
    assert [u["id"] for u in ok["items"]] == ["user-0005", "user-0007", "user-0008"]


async def test_tampered_or_garbage_cursor_is_422(client: Any) -> None:
    """Bit flips, truncation and garbage cursors answer 422 INVALID_CURSOR, never 500."""
    cursor = _data(await client.get("/people/cursor"))["next_cursor"]
    raw = _unb64(cursor)
    forged = []
    for i in range(0, len(raw), 7):
        flipped = bytearray(raw)
        flipped[i] ^= 0x80
        forged.append(base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode())
    forged += [cursor[:-4], cursor[:10], "not-a-cursor", "eyJpZCI6IjEyMyJ9", cursor + "A", "." + cursor]
    for bad in forged:
        _error(await client.get("/people/cursor", params={"cursor": bad}), "INVALID_CURSOR")
