"""Pagination: the encrypted cursor codec against itsdangerous, and a deep page by offset vs by keyset.

Groups:

* ``pagination-cursor``: encode + authenticate/decode one cursor of three typed values with
  :class:`~crown_nexus.core.pagination.CursorCodec` (AES-256-GCM, orjson) and with the peer
  ``itsdangerous.URLSafeSerializer`` (HMAC-SHA1 by default, JSON, signed but readable: it
  does less than the codec). ``extra_info["round_trip"]``
  records whether each gets the original values back with their types (itsdangerous turns a
  datetime into a string).
* ``pagination-deep-page``: page 400 (20 per page) of 10 000 SQLite rows sorted by
  ``(score, id)``, by OFFSET and by keyset (a cursor at the same position); both must return the
  same ids (``extra_info["same_rows"]``).

Run: ``python -m pytest benches/bench_pagination.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Integer, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus import accel
from crown_nexus.core.pagination import (
    CursorCodec,
    CursorPaginationParams,
    OffsetPaginationParams,
    SortField,
    paginate_with_cursor,
    paginate_with_offset,
    query_fingerprint,
)

VALUES = [42, "widget", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)]
SECRET = "bench-secret-key"


def test_cursor_codec(benchmark: Any) -> None:
    """crown-nexus cursor: encode then verify + decode."""
    codec = CursorCodec(SECRET)
    benchmark.group = "pagination-cursor"
    benchmark.extra_info["implementations"] = accel.implementations()

    def round_trip() -> Any:
        return codec.decode(codec.encode("fingerprint", VALUES), "fingerprint")

    result = benchmark(round_trip)
    benchmark.extra_info["round_trip"] = result == ("n", VALUES)
    assert benchmark.extra_info["round_trip"]


def test_cursor_itsdangerous(benchmark: Any) -> None:
    """Peer: itsdangerous URLSafeSerializer dumps then loads."""
    itsdangerous = pytest.importorskip("itsdangerous")
    serializer = itsdangerous.URLSafeSerializer(SECRET, salt="cursor")
    benchmark.group = "pagination-cursor"
    benchmark.extra_info["implementations"] = accel.implementations()
    payload = {"k": "fingerprint", "d": "n", "v": [VALUES[0], VALUES[1], VALUES[2].isoformat()]}

    def round_trip() -> Any:
        return serializer.loads(serializer.dumps(payload))

    result = benchmark(round_trip)
    benchmark.extra_info["round_trip"] = result["v"] == VALUES  # False: the datetime comes back a str


class _Base(DeclarativeBase):
    pass


class Row(_Base):
    __tablename__ = "bench_rows"
    __sortable_fields__ = ("score",)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    score: Mapped[int] = mapped_column(Integer, index=True)


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[asyncio.AbstractEventLoop, AsyncSession]]:
    """An in-memory SQLite with 10 000 rows, its loop and one session."""
    loop = asyncio.new_event_loop()
    engine = create_async_engine("sqlite+aiosqlite://")

    async def setup() -> AsyncSession:
        async with engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)
        session = async_sessionmaker(engine)()
        session.add_all(Row(id=i, score=(i * 7919) % 1000) for i in range(1, 10_001))
        await session.commit()
        return session

    session = loop.run_until_complete(setup())
    yield loop, session
    loop.run_until_complete(session.close())
    loop.run_until_complete(engine.dispose())
    loop.close()


SORT = [SortField(field="score")]
PAGE = 400


def test_deep_page_offset(benchmark: Any, database: tuple[asyncio.AbstractEventLoop, AsyncSession]) -> None:
    """Page 400 by OFFSET (the database skips 7 980 rows; includes the total count)."""
    loop, session = database
    benchmark.group = "pagination-deep-page"
    benchmark.extra_info["implementations"] = accel.implementations()
    params = OffsetPaginationParams(page=PAGE, page_size=20, sort=SORT)

    def run() -> list[int]:
        result = loop.run_until_complete(paginate_with_offset(session, Row, select(Row), params))
        return [r.id for r in result.items]

    ids = benchmark(run)
    benchmark.extra_info["same_rows"] = ids == _expected(loop, session)
    assert benchmark.extra_info["same_rows"]


def _expected(loop: asyncio.AbstractEventLoop, session: AsyncSession) -> list[int]:
    rows = loop.run_until_complete(session.execute(select(Row.id).order_by(Row.score, Row.id)))
    all_ids = [r[0] for r in rows]
    return all_ids[(PAGE - 1) * 20 : PAGE * 20]


def test_deep_page_keyset(benchmark: Any, database: tuple[asyncio.AbstractEventLoop, AsyncSession]) -> None:
    """The same page by keyset: a cursor at the last row of page 399 (index seek, no skipping)."""
    loop, session = database
    benchmark.group = "pagination-deep-page"
    benchmark.extra_info["implementations"] = accel.implementations()
    before = loop.run_until_complete(
        paginate_with_offset(session, Row, select(Row), OffsetPaginationParams(page=PAGE - 1, page_size=20, sort=SORT))
    )
    last = before.items[-1]
    codec = CursorCodec(SECRET)
    from crown_nexus.core.pagination._paginate import _dialect

    keys = [("score", False), ("id", False)]  # the sort and its primary-key tie-breaker
    fingerprint = query_fingerprint(Row, keys, select(Row), _dialect(session, Row))
    cursor = codec.encode(fingerprint, [last.score, last.id])
    params = CursorPaginationParams(cursor=cursor, limit=20, sort=SORT)

    def run() -> list[int]:
        result = loop.run_until_complete(
            paginate_with_cursor(session, Row, select(Row), params, include_total=False, secret_key=SECRET)
        )
        return [r.id for r in result.items]

    ids = benchmark(run)
    benchmark.extra_info["same_rows"] = ids == _expected(loop, session)
    assert benchmark.extra_info["same_rows"]
