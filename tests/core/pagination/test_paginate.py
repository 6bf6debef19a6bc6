"""Offset and keyset pagination over SQLAlchemy 2 async on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import ColumnClause, DateTime, ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.exceptions import ConfigurationException, DatabaseException
from crown_nexus.core.pagination import (
    CursorPaginationParams,
    InvalidCursorException,
    InvalidPaginationParamsException,
    InvalidSortFieldException,
    OffsetPaginationParams,
    PaginationService,
    SortDirection,
    SortField,
    get_pagination_service,
    paginate_with_cursor,
    paginate_with_offset,
    query_fingerprint,
)

SUFFIX = uuid.uuid4().hex[:8]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Shelf(Base):
    __tablename__ = f"pg_shelves_{SUFFIX}"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(50))


class Book(Base):
    __tablename__ = f"pg_books_{SUFFIX}"
    __sortable_fields__ = ("title", "pages", "created_at", "note")
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    pages: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    shelf_id: Mapped[int] = mapped_column(ForeignKey(f"{Shelf.__tablename__}.id"))
    note: Mapped[str | None] = mapped_column(String(50), nullable=True)


class Account(Base):
    """A model with a secret column and no ``__sortable_fields__``: only ``id`` is sortable."""

    __tablename__ = f"pg_accounts_{SUFFIX}"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(100))
    hashed_password: Mapped[str] = mapped_column(String(200))


class _Unmigrated(DeclarativeBase):
    pass


class Ghost(_Unmigrated):
    """A mapped model whose table is never created."""

    __tablename__ = f"pg_ghost_{SUFFIX}"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class Misdeclared(_Unmigrated):
    """A model whose ``__sortable_fields__`` the tests set to bad values."""

    __tablename__ = f"pg_misdeclared_{SUFFIX}"
    __sortable_fields__: Any = ()
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(10))


class BookOut(BaseModel):
    id: int
    title: str
    pages: int


HASHES = {i: f"$argon2id$v=19$m=65536,t=3,p=4$salt{i}${'QWERTY'[i % 6] * 20}" for i in range(1, 8)}


def _book(i: int) -> Book:
    return Book(id=i, title=f"t{i % 4}", pages=100 + (i % 3) * 10, created_at=T0 + timedelta(hours=i % 5),
                shelf_id=1 + i % 2, note=None)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session on SQLite or PostgreSQL holding 2 shelves and 23 books (tables dropped afterwards)."""
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            session.add_all([Shelf(id=1, label="left"), Shelf(id=2, label="right")])
            await session.flush()
            session.add_all(_book(i) for i in range(1, 24))
            session.add_all(Account(id=i, email=f"a{i}@example.com", hashed_password=HASHES[i]) for i in HASHES)
            await session.commit()
            yield session
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()


def _expected(books: list[Book], sort: list[tuple[str, bool]]) -> list[int]:
    ordered = sorted(books, key=lambda b: b.id)
    for name, desc in reversed(sort):  # stable sorts, least significant key first
        ordered.sort(key=lambda b: getattr(b, name), reverse=desc)
    return [b.id for b in ordered]


async def test_offset_pages_cover_all_rows_in_order(db: AsyncSession) -> None:
    """Pages partition the query's rows in sort order (ties broken by id) with correct metadata."""
    sort = [SortField(field="pages", direction=SortDirection.DESC), SortField(field="created_at")]
    ids: list[int] = []
    for page in range(1, 5):
        result = await paginate_with_offset(
            db=db, model_class=Book, query=select(Book), params=OffsetPaginationParams(page=page, page_size=6, sort=sort),
            response_model=BookOut,
        )
        assert (result.total, result.pages, result.has_prev, result.has_next) == (23, 4, page > 1, page < 4)
        assert all(isinstance(i, BookOut) for i in result.items)
        ids += [i.id for i in result.items]
    books = [_book(i) for i in range(1, 24)]
    assert ids == _expected(books, [("pages", True), ("created_at", False)])


async def test_offset_respects_filters_and_default_order(db: AsyncSession) -> None:
    """The query's WHERE clause is kept (also in the count); without sort the order is the primary key."""
    result = await paginate_with_offset(db, Book, select(Book).where(Book.shelf_id == 1), OffsetPaginationParams(page_size=5))
    assert result.total == 11 and [b.id for b in result.items] == [2, 4, 6, 8, 10]
    past = await paginate_with_offset(db, Book, select(Book), OffsetPaginationParams(page=50, page_size=5))
    assert past.items == [] and past.total == 23 and past.has_next is False


async def test_custom_transform_on_joined_rows(db: AsyncSession) -> None:
    """transform_func receives each (Book, Shelf) row of a join, as the guide's example unpacks it."""
    query = select(Book, Shelf).join(Shelf, Book.shelf_id == Shelf.id).where(Book.pages > 100)

    def transform(row: Any) -> dict[str, Any]:
        book, shelf = row
        return {"id": book.id, "shelf": {"id": shelf.id, "label": shelf.label}}

    result = await paginate_with_offset(db=db, model_class=Book, query=query,
                                        params=OffsetPaginationParams(page=1, page_size=3), transform_func=transform)
    assert result.total == 16
    assert result.items == [{"id": 1, "shelf": {"id": 2, "label": "right"}}, {"id": 2, "shelf": {"id": 1, "label": "left"}},
                            {"id": 4, "shelf": {"id": 1, "label": "left"}}]
    cursor_page = await paginate_with_cursor(db, Book, query, CursorPaginationParams(limit=3), transform_func=transform,
                                             secret_key="k")
    nxt = await paginate_with_cursor(db, Book, query, CursorPaginationParams(limit=3, cursor=cursor_page.next_cursor),
                                     transform_func=transform, secret_key="k")
    assert [i["id"] for i in nxt.items] == [5, 7, 8]


async def test_unknown_or_disallowed_sort_field(db: AsyncSession) -> None:
    """Unknown and not-allowed sort fields raise InvalidSortFieldException naming the field."""
    with pytest.raises(InvalidSortFieldException) as info:
        await paginate_with_offset(db, Book, params=OffsetPaginationParams(sort=[SortField(field="nope")]))
    assert info.value.details["field"] == "nope"
    assert info.value.details["allowed"] == ["created_at", "id", "note", "pages", "title"]
    with pytest.raises(InvalidSortFieldException):  # a column, but not in Book.__sortable_fields__
        await paginate_with_offset(db, Book, params=OffsetPaginationParams(sort=[SortField(field="shelf_id")]))
    with pytest.raises(InvalidSortFieldException):
        await paginate_with_offset(db, Book, params=OffsetPaginationParams(sort=[SortField(field="pages")]),
                                   allowed_sort_fields=["title"])
    with pytest.raises(InvalidSortFieldException):  # nullable columns cannot drive a keyset
        await paginate_with_cursor(db, Book, params=CursorPaginationParams(sort=[SortField(field="note")]), secret_key="k")


@pytest.mark.parametrize("field", ["hashed_password", "email"])
async def test_attack_sort_by_unlisted_column_is_422_offset_and_cursor(db: AsyncSession, field: str) -> None:
    """Without an allow-list only the primary key sorts: a secret column is a 422 for offset and cursor paging."""
    sort = [SortField(field=field, direction=SortDirection.DESC)]
    with pytest.raises(InvalidSortFieldException) as offset:
        await paginate_with_offset(db, Account, select(Account), OffsetPaginationParams(sort=sort))
    with pytest.raises(InvalidSortFieldException) as cursor:
        await paginate_with_cursor(db, Account, select(Account), CursorPaginationParams(sort=sort), secret_key="k")
    for exc in (offset.value, cursor.value):
        assert exc.status_code == 422 and exc.code_value == "INVALID_SORT_FIELD"
        assert exc.details["field"] == field and exc.details["allowed"] == ["id"]  # no column names leak


async def test_primary_key_sorts_by_default_and_allow_list_opens_more(db: AsyncSession) -> None:
    """The primary key is sortable with no allow-list; an explicit allow-list (a list or one name) opens others."""
    by_id = await paginate_with_offset(db, Account, params=OffsetPaginationParams(
        sort=[SortField(field="id", direction=SortDirection.DESC)], page_size=3))
    assert [a.id for a in by_id.items] == [7, 6, 5]
    first = await paginate_with_cursor(db, Account, params=CursorPaginationParams(
        sort=[SortField(field="id", direction=SortDirection.DESC)], limit=3), secret_key="k")
    assert [a.id for a in first.items] == [7, 6, 5]
    for allowed in (["email"], "email"):
        page = await paginate_with_cursor(db, Account, params=CursorPaginationParams(
            sort=[SortField(field="email")], limit=2), allowed_sort_fields=allowed, secret_key="k")
        assert [a.email for a in page.items] == ["a1@example.com", "a2@example.com"]
    with pytest.raises(InvalidSortFieldException) as info:  # an explicit list is the whole list
        await paginate_with_offset(db, Account, params=OffsetPaginationParams(sort=[SortField(field="id")]),
                                   allowed_sort_fields=["email"])
    assert info.value.details["allowed"] == ["email"]


async def test_bad_sortable_fields_declaration_is_configuration_error(db: AsyncSession) -> None:
    """A __sortable_fields__ naming no column (or given as one string) is a server configuration error."""
    for declared in (("title", "nope"), "title", ("title", 3)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Misdeclared, "__sortable_fields__", declared)
            with pytest.raises(ConfigurationException):
                await paginate_with_offset(db, Misdeclared, params=OffsetPaginationParams())


async def test_wrong_params_type_and_non_model(db: AsyncSession) -> None:
    """Cursor params passed to offset pagination and a non-model class are typed errors."""
    with pytest.raises(InvalidPaginationParamsException):
        await paginate_with_offset(db, Book, params=CursorPaginationParams())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationException):
        await paginate_with_offset(db, dict, params=OffsetPaginationParams())


@pytest.mark.parametrize(
    "sort",
    [[], [("title", False)], [("pages", True), ("title", False)], [("created_at", True)], [("title", True), ("created_at", False)]],
)
async def test_cursor_walk_forward_and_back(db: AsyncSession, sort: list[tuple[str, bool]]) -> None:
    """Forward pages visit every row once in sort order; walking back with prev_cursor returns the same pages."""
    fields = [SortField(field=f, direction=SortDirection.DESC if d else SortDirection.ASC) for f, d in sort]
    service = PaginationService(db, secret_key="walk-key")
    pages: list[list[int]] = []
    cursor = None
    while True:
        result = await service.paginate_with_cursor(Book, select(Book), CursorPaginationParams(cursor=cursor, limit=5, sort=fields))
        pages.append([b.id for b in result.items])
        assert result.total == 23 and result.has_prev == (cursor is not None)
        if not result.has_next:
            assert result.next_cursor is None
            break
        cursor = result.next_cursor
    assert [i for p in pages for i in p] == _expected([_book(i) for i in range(1, 24)], sort)
    back_pages = [pages[-1]]
    prev = result.prev_cursor
    while prev is not None:
        back = await service.paginate_with_cursor(Book, select(Book), CursorPaginationParams(cursor=prev, limit=5, sort=fields))
        back_pages.append([b.id for b in back.items])
        prev = back.prev_cursor
    assert back_pages[::-1] == pages


async def test_cursor_stable_under_inserts_and_deletes(db: AsyncSession) -> None:
    """Rows inserted before the position and deleted rows never make the next page repeat or skip a surviving row."""
    params = CursorPaginationParams(limit=5, sort=[SortField(field="title")])
    first = await paginate_with_cursor(db, Book, select(Book), params, secret_key="k")
    seen = [b.id for b in first.items]
    assert seen == [4, 8, 12, 16, 20]  # every "t0"; the cursor sits at ("t0", 20)
    db.add(Book(id=0, title="t0", pages=1, created_at=T0, shelf_id=1))  # sorts before the cursor
    await db.delete(await db.get(Book, 1))  # the row right after the cursor ("t1", 1)
    await db.commit()
    rest: list[int] = []
    cursor = first.next_cursor
    while cursor:
        page = await paginate_with_cursor(db, Book, select(Book), params.model_copy(update={"cursor": cursor}), secret_key="k")
        rest += [b.id for b in page.items]
        cursor = page.next_cursor
    assert not set(seen) & set(rest) and 0 not in rest and 1 not in rest
    assert sorted(seen + rest) == list(range(2, 24))


async def test_cursor_errors(db: AsyncSession) -> None:
    """Garbage, another key's and another sort's cursors raise InvalidCursorException."""
    params = CursorPaginationParams(limit=3)
    first = await paginate_with_cursor(db, Book, params=params, secret_key="k")
    for bad in ("garbage", first.next_cursor + "x"):
        with pytest.raises(InvalidCursorException):
            await paginate_with_cursor(db, Book, params=CursorPaginationParams(cursor=bad), secret_key="k")
    with pytest.raises(InvalidCursorException):
        await paginate_with_cursor(db, Book, params=CursorPaginationParams(cursor=first.next_cursor), secret_key="other")
    with pytest.raises(InvalidCursorException):
        await paginate_with_cursor(db, Book, params=CursorPaginationParams(cursor=first.next_cursor, sort=[SortField(field="title")]),
                                   secret_key="k")


def _unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


async def _next_cursor(db: AsyncSession, model: Any, query: Any, **options: Any) -> str:
    page = await paginate_with_cursor(db, model, query, CursorPaginationParams(limit=2), secret_key="k", **options)
    assert page.next_cursor is not None
    return page.next_cursor


async def test_attack_cursor_replay_across_queries_is_422(db: AsyncSession) -> None:
    """A cursor is refused by a query with another filter value, filter, join, model, direction or scope."""
    shelf1 = select(Book).where(Book.shelf_id == 1)
    cursor = await _next_cursor(db, Book, shelf1)
    others: list[tuple[Any, Any, dict[str, Any]]] = [
        (Book, select(Book).where(Book.shelf_id == 2), {}),  # same SQL, another bound value (another tenant)
        (Book, select(Book), {}),  # the filter dropped
        (Book, select(Book).where(Book.shelf_id == 1, Book.pages > 0), {}),  # a filter added
        (Book, select(Book, Shelf).join(Shelf, Book.shelf_id == Shelf.id).where(Book.shelf_id == 1), {}),
        (Account, select(Account), {}),  # another model
        (Book, shelf1, {"cursor_scope": "tenant-2"}),  # same query, another caller scope
    ]
    for model, query, options in others:
        with pytest.raises(InvalidCursorException) as info:
            await paginate_with_cursor(db, model, query, CursorPaginationParams(cursor=cursor, limit=2),
                                       secret_key="k", **options)
        assert info.value.status_code == 422 and info.value.reason == "mismatch"
    with pytest.raises(InvalidCursorException):  # same field, other direction
        await paginate_with_cursor(db, Book, shelf1, CursorPaginationParams(
            cursor=cursor, sort=[SortField(field="id", direction=SortDirection.DESC)]), secret_key="k")
    # the same query built again (new objects, equal values) accepts its cursor
    again = await paginate_with_cursor(db, Book, select(Book).where(Book.shelf_id == 1),
                                       CursorPaginationParams(cursor=cursor, limit=2), secret_key="k")
    assert [b.id for b in again.items] == [6, 8]


async def test_cursor_scope_and_rich_filters_round_trip(db: AsyncSession) -> None:
    """Filters with IN lists and datetimes, and a caller scope, bind a cursor that the same query accepts."""

    def query() -> Any:
        return select(Book).where(Book.id.in_([1, 2, 3, 5, 8, 13]), Book.created_at >= T0)

    params = CursorPaginationParams(limit=2, sort=[SortField(field="title")])
    first = await paginate_with_cursor(db, Book, query(), params, secret_key="k", cursor_scope=b"user-7")
    nxt = await paginate_with_cursor(db, Book, query(), params.model_copy(update={"cursor": first.next_cursor}),
                                     secret_key="k", cursor_scope=b"user-7")
    assert [b.id for b in first.items + nxt.items] == [8, 1, 5, 13]
    with pytest.raises(InvalidCursorException):
        await paginate_with_cursor(db, Book, query().where(Book.id != 1), params.model_copy(
            update={"cursor": first.next_cursor}), secret_key="k", cursor_scope=b"user-7")
    with pytest.raises(InvalidCursorException):
        await paginate_with_cursor(db, Book, query(), params.model_copy(update={"cursor": first.next_cursor}),
                                   secret_key="k", cursor_scope="user-7")  # str and bytes scopes differ


async def test_attack_cursor_does_not_reveal_sorted_values(db: AsyncSession) -> None:
    """A cursor sorted on an (allowed) string column holds none of the row's values readably."""
    page = await paginate_with_cursor(db, Account, select(Account), CursorPaginationParams(
        limit=1, sort=[SortField(field="email")]), allowed_sort_fields=["email"], secret_key="k")
    assert page.items[0].email == "a1@example.com" and page.next_cursor
    raw = _unb64(page.next_cursor)
    assert b"a1@example.com" not in raw and b"example" not in raw and b"a1@" not in raw
    assert "example" not in page.next_cursor


async def test_attack_tampered_cursor_is_422(db: AsyncSession) -> None:
    """Every single-bit flip of a real cursor's bytes is a typed 422 through paginate_with_cursor."""
    cursor = await _next_cursor(db, Book, select(Book))
    raw = _unb64(cursor)
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 1 << (i % 8)
        forged = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
        with pytest.raises(InvalidCursorException) as info:
            await paginate_with_cursor(db, Book, select(Book), CursorPaginationParams(cursor=forged), secret_key="k")
        assert info.value.status_code == 422


async def test_include_total_false_skips_count(db: AsyncSession) -> None:
    """include_total=False leaves total as None."""
    result = await paginate_with_cursor(db, Book, params=CursorPaginationParams(limit=2), include_total=False, secret_key="k")
    assert result.total is None and len(result.items) == 2


async def test_metrics_recorded_per_call(db: AsyncSession) -> None:
    """Each call adds to pagination_operations_total and pagination_duration_seconds, errors labelled."""
    metrics = get_service("metrics_service")
    labels = {"type": "offset", "model": "Book", "error": ""}
    before = metrics.get_counter_sum("pagination_operations_total", labels)
    await paginate_with_offset(db, Book, params=OffsetPaginationParams())
    assert metrics.get_counter_sum("pagination_operations_total", labels) == before + 1
    assert metrics.get_histogram_quantile("pagination_duration_seconds", 1.0, labels) > 0
    err = {"type": "cursor", "model": "Book", "error": "InvalidCursorException"}
    before_err = metrics.get_counter_sum("pagination_operations_total", err)
    with pytest.raises(InvalidCursorException):
        await paginate_with_cursor(db, Book, params=CursorPaginationParams(cursor="bad"), secret_key="k")
    assert metrics.get_counter_sum("pagination_operations_total", err) == before_err + 1
    assert metrics.get_histogram_quantile("pagination_duration_seconds", 1.0, err) > 0


async def test_database_failure_is_database_exception(db: AsyncSession) -> None:
    """A failing query (missing table) raises DatabaseException, not a raw driver error."""
    try:
        with pytest.raises(DatabaseException):
            await paginate_with_offset(db, Ghost, params=OffsetPaginationParams())
    finally:
        await db.rollback()


async def test_service_registration_and_session(db: AsyncSession) -> None:
    """get_service('pagination_service', db=db) builds a service on that session; none without a session fails."""
    service = get_service("pagination_service", db=db)
    assert isinstance(service, PaginationService) and service.db is db
    assert (await service.paginate_with_offset(Book, select(Book), OffsetPaginationParams(page_size=1))).total == 23
    assert get_pagination_service(db).db is db
    with pytest.raises(ConfigurationException):
        await PaginationService().paginate_with_offset(Book, select(Book), OffsetPaginationParams())
    token = service.encode_cursor("fp", [1])
    assert service.decode_cursor(token, "fp") == ("n", [1])


_FUZZ_ENGINE: dict[str, Any] = {}


def _fuzz_session_factory() -> Any:
    """One in-memory SQLite (with the tables and a few books) shared by the fuzz examples."""
    if "loop" not in _FUZZ_ENGINE:
        loop = asyncio.new_event_loop()
        engine = create_async_engine("sqlite+aiosqlite://")

        async def setup() -> None:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            async with async_sessionmaker(engine)() as session:
                session.add_all([Shelf(id=1, label="l"), Shelf(id=2, label="r")])
                await session.flush()
                session.add_all(_book(i) for i in range(1, 6))
                await session.commit()

        loop.run_until_complete(setup())
        _FUZZ_ENGINE.update(loop=loop, engine=engine, factory=async_sessionmaker(engine))
    return _FUZZ_ENGINE


@pytest.fixture(scope="module", autouse=False)
def fuzz_db() -> Iterator[dict[str, Any]]:
    """The shared fuzz database, disposed after the module."""
    state = _fuzz_session_factory()
    yield state
    state["loop"].run_until_complete(state["engine"].dispose())
    state["loop"].close()
    _FUZZ_ENGINE.clear()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cursor=st.one_of(st.text(max_size=200), st.text(alphabet="ABCDEFabcdef0123456789-_.", max_size=120)),
       sort=st.lists(st.sampled_from(["title", "pages", "id", "created_at", "nope"]), max_size=2))
def test_fuzz_paginate_with_cursor_only_typed_errors(fuzz_db: dict[str, Any], cursor: str, sort: list[str]) -> None:
    """Any cursor string and sort list give a page or a typed 422 pagination error, never anything else."""

    async def run() -> None:
        async with fuzz_db["factory"]() as session:
            params = CursorPaginationParams(cursor=cursor or None, sort=[SortField(field=f) for f in sort])
            await paginate_with_cursor(session, Book, select(Book), params, secret_key="fuzz")

    try:
        fuzz_db["loop"].run_until_complete(run())
    except (InvalidCursorException, InvalidSortFieldException, InvalidPaginationParamsException) as exc:
        assert exc.status_code == 422
    else:
        assert not cursor  # only the first page (no cursor) can succeed: nothing forges a signature


_FINGERPRINT_SCRIPT = """
from datetime import datetime
from sqlalchemy import String, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from crown_nexus.core.pagination import query_fingerprint

class B(DeclarativeBase):
    pass

class Doc(B):
    __tablename__ = "fp_docs"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime]

query = select(Doc).where(Doc.owner == "alice", Doc.id.in_([3, 1, 2]), Doc.at > datetime(2024, 1, 1))
FP = query_fingerprint(Doc, [("at", True), ("id", False)], query, postgresql.dialect(), "tenant-1")
"""


def test_query_fingerprint_is_stable_across_processes() -> None:
    """Another process (another worker) computes the same fingerprint for the same query and scope."""
    import subprocess
    import sys

    here: dict[str, Any] = {}
    exec(compile(_FINGERPRINT_SCRIPT, "<fingerprint>", "exec", dont_inherit=True), here)  # noqa: S102 - fixed script
    out = subprocess.run([sys.executable, "-c", _FINGERPRINT_SCRIPT + "\nprint(FP)"], capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.strip() == here["FP"] and len(here["FP"]) == 64
    changed = here["query_fingerprint"](here["Doc"], [("at", True), ("id", False)],
                                        here["query"].where(here["Doc"].owner != "bob"))
    assert changed != here["FP"]


class _Uncacheable(ColumnClause[Any]):
    """A column element SQLAlchemy will not cache (no ``inherit_cache``): fingerprinted by full compile."""


@pytest.mark.filterwarnings("ignore:Class _Uncacheable will not make use of SQL compilation caching")
def test_query_fingerprint_of_uncacheable_statement_still_tells_filters_apart() -> None:
    """Statements without a SQLAlchemy cache key are compiled each time: equal ones match, other values differ."""

    def fp(value: str) -> str:
        query = select(Book).where(_Uncacheable("title") == value)
        assert query._generate_cache_key() is None
        return query_fingerprint(Book, [("id", False)], query)

    assert fp("t1") == fp("t1") and fp("t1") != fp("t2")
