"""Offset and keyset (cursor) pagination over SQLAlchemy 2 async ``select()`` queries.

Ordering comes from ``params.sort`` followed by the model's primary key (the tie-breaker that
makes every order total and stable); the query's own ``ORDER BY`` is replaced.

Sorting is allow-listed, for offset and cursor pagination alike: a sort field must be a mapped
column of ``model_class`` named in ``allowed_sort_fields`` when the caller gives it, otherwise
the primary key or a name in the model's ``__sortable_fields__`` class attribute. Any other
field (``hashed_password``, an unlisted column, a typo) raises ``InvalidSortFieldException``
(422) before a query runs. Cursor pagination also needs the fields non-nullable.

Cursors (see :mod:`crown_nexus.core.pagination._cursor`) are AES-256-GCM encrypted and bound
to :func:`query_fingerprint`: the model, the sort fields and directions, the query's SQL and
bound values, and the caller's ``cursor_scope``. A client cannot read the position's values in
a cursor, nor use a cursor with any query but the one that made it (422 ``INVALID_CURSOR``).

Every call records ``pagination_duration_seconds`` and ``pagination_operations_total`` (labels
``type``, ``model``, ``error``) in the metrics service.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from sqlalchemy import and_, false, func, inspect, or_, select
from sqlalchemy.engine import default
from sqlalchemy.exc import NoInspectionAvailable, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from crown_nexus.core.exceptions import ConfigurationException, DatabaseException
from crown_nexus.core.pagination._cursor import CursorCodec, _default_secret, _encode_value
from crown_nexus.core.pagination.exceptions import (
    InvalidCursorException,
    InvalidPaginationParamsException,
    InvalidSortFieldException,
)
from crown_nexus.core.pagination.models import (
    CursorPaginationParams,
    CursorPaginationResult,
    OffsetPaginationParams,
    OffsetPaginationResult,
    SortDirection,
    SortField,
)
from crown_nexus.core.tracing import Span, SpanKind, end_span, span, start_span, tracing_enabled
from crown_nexus.logging import get_logger

__all__ = [
    "SORTABLE_ATTRIBUTE",
    "paginate_with_cursor",
    "paginate_with_offset",
    "query_fingerprint",
    "record_pagination_metrics",
    "sortable_fields",
]

_logger = get_logger("crown_nexus.core.pagination")

R = TypeVar("R")

DURATION_METRIC = "pagination_duration_seconds"
OPERATIONS_METRIC = "pagination_operations_total"

#: Class attribute a model may set to the column names clients may sort it by by default.
SORTABLE_ATTRIBUTE = "__sortable_fields__"


@dataclass(frozen=True, slots=True)
class _Key:
    name: str
    column: Any
    descending: bool


def record_pagination_metrics(kind: str, model: str, duration: float, error: str = "") -> None:
    """Record one pagination call in ``pagination_duration_seconds`` and
    ``pagination_operations_total`` (labels ``type``, ``model``, ``error``)."""
    from crown_nexus.core.dependency_manager import get_service

    labels = {"type": kind, "model": model, "error": error}
    try:
        metrics = get_service("metrics_service")
        metrics.observe_histogram(DURATION_METRIC, duration, labels)
        metrics.increment_counter(OPERATIONS_METRIC, labels=labels)
    except Exception as exc:  # metrics never break a listing
        _logger.warning("Pagination metrics not recorded", error=type(exc).__name__)


def _mapper(model_class: Any) -> Any:
    try:
        return inspect(model_class)
    except NoInspectionAvailable:
        raise ConfigurationException(f"{model_class!r} is not a mapped SQLAlchemy model") from None


def _primary_key_names(mapper: Any) -> list[str]:
    return [mapper.get_property_by_column(c).key for c in mapper.primary_key]


def sortable_fields(model_class: Any, allowed: Iterable[str] | None = None) -> frozenset[str]:
    """The column names a caller may sort ``model_class`` by.

    ``allowed`` given: those of its names that are mapped columns (a plain string counts as one
    name). Otherwise the primary key columns, plus the names the model lists in its
    ``__sortable_fields__`` class attribute, if it has one. No other column is ever sortable by
    default, so a column the developer did not list (a password hash, a token, an email) can
    neither order a page nor end up inside a cursor. Raises :class:`ConfigurationException` when
    ``__sortable_fields__`` is not a collection of mapped column names.
    """
    mapper = _mapper(model_class)
    columns = {attr.key for attr in mapper.column_attrs}
    if allowed is not None:
        names = {allowed} if isinstance(allowed, str) else set(allowed)
        return frozenset(names & columns)
    permitted = set(_primary_key_names(mapper))
    declared = getattr(mapper.class_, SORTABLE_ATTRIBUTE, None)
    if declared is not None:
        if isinstance(declared, str) or not all(isinstance(n, str) for n in declared):
            raise ConfigurationException(
                f"{mapper.class_.__name__}.{SORTABLE_ATTRIBUTE} must be a collection of column names"
            )
        unknown = sorted(set(declared) - columns)
        if unknown:
            raise ConfigurationException(
                f"{mapper.class_.__name__}.{SORTABLE_ATTRIBUTE} names no mapped column: {unknown}"
            )
        permitted |= set(declared)
    return frozenset(permitted)


def _sort_keys(
    model_class: Any,
    sort: Sequence[SortField],
    allowed: Iterable[str] | None,
    *,
    non_null: bool,
) -> list[_Key]:
    """The ORDER BY keys: the requested sort fields, then the primary key columns (ascending).

    A requested field outside :func:`sortable_fields` (or nullable, for a keyset) raises
    :class:`InvalidSortFieldException`, whose ``allowed`` lists only the permitted names.
    """
    mapper = _mapper(model_class)
    columns = {attr.key: attr for attr in mapper.column_attrs}
    permitted = set(sortable_fields(model_class, allowed))
    if non_null:
        permitted = {
            k for k in permitted if not any(getattr(c, "nullable", False) for c in columns[k].columns)
        }
    keys: list[_Key] = []
    seen: set[str] = set()
    for item in sort:
        if item.field not in permitted:
            raise InvalidSortFieldException(item.field, permitted)
        if item.field in seen:
            continue
        seen.add(item.field)
        keys.append(
            _Key(item.field, getattr(mapper.class_, item.field), item.direction is SortDirection.DESC)
        )
    for name in _primary_key_names(mapper):
        if name not in seen:
            seen.add(name)
            keys.append(_Key(name, getattr(mapper.class_, name), False))
    return keys


def _select_all(model_class: Any) -> Any:
    """``select(model_class)`` (typed loosely: the model class is only known at run time)."""
    select_: Any = select
    return select_(model_class)


def _order_by(keys: Sequence[_Key], reverse: bool = False) -> list[Any]:
    return [k.column.asc() if k.descending == reverse else k.column.desc() for k in keys]


def _single_entity(query: Any, model_class: Any) -> bool:
    descriptions = query.column_descriptions
    return len(descriptions) == 1 and descriptions[0].get("type") is model_class


def _entity_of(row: Any, model_class: Any) -> Any:
    if isinstance(row, model_class):
        return row
    for element in row:
        if isinstance(element, model_class):
            return element
    return None


def _value(row: Any, model_class: Any, name: str) -> Any:
    entity = _entity_of(row, model_class)
    if entity is not None:
        return getattr(entity, name)
    try:
        return row._mapping[name]
    except (AttributeError, KeyError):
        raise ConfigurationException(
            f"cursor pagination: the query's rows carry neither a {model_class.__name__} nor a {name!r} column"
        ) from None


def _transform(
    rows: Sequence[Any], response_model: Any, transform_func: Callable[[Any], Any] | None
) -> list[Any]:
    items: list[Any] = list(rows)
    if transform_func is not None:
        items = [transform_func(r) for r in items]
    if response_model is not None:
        items = [response_model.model_validate(i, from_attributes=True) for i in items]
    return items


def _query_span(name: str) -> Span | None:
    """A ``CLIENT`` span for one pagination query (tracer ``crown_nexus.pagination``)."""
    if not tracing_enabled():
        return None
    return start_span(
        name,
        tracer="crown_nexus.pagination",
        kind=SpanKind.CLIENT,
        attributes={"db.operation.name": "SELECT"},
    )


async def _rows(db: AsyncSession, query: Any, model_class: Any) -> list[Any]:
    sp = _query_span("pagination.rows")
    try:
        result = await db.execute(query)
    except BaseException as exc:
        end_span(sp, exc)
        raise
    end_span(sp)
    if _single_entity(query, model_class):
        return list(result.scalars().all())
    return list(result.all())


async def _count(db: AsyncSession, query: Any) -> int:
    count_query = select(func.count()).select_from(query.order_by(None).subquery())
    sp = _query_span("pagination.count")
    try:
        total = int(await db.scalar(count_query) or 0)
    except BaseException as exc:
        end_span(sp, exc)
        raise
    end_span(sp)
    return total


def _check_params(params: Any, expected: type) -> Any:
    if params is None:
        return expected()
    if not isinstance(params, expected):
        raise InvalidPaginationParamsException(
            f"Expected {expected.__name__}, got {type(params).__name__}"
        )
    return params


async def _timed(kind: str, model_class: Any, call: Coroutine[Any, Any, R]) -> R:
    if tracing_enabled():  # one span per page, its queries as children
        with span(
            f"pagination.{kind}",
            tracer="crown_nexus.pagination",
            attributes={"crown_nexus.pagination.model": getattr(model_class, "__name__", "?")},
        ):
            return await _timed_plain(kind, model_class, call)
    return await _timed_plain(kind, model_class, call)


async def _timed_plain(kind: str, model_class: Any, call: Coroutine[Any, Any, R]) -> R:
    start = time.monotonic()
    error = ""
    try:
        return await call
    except SQLAlchemyError as exc:
        error = type(exc).__name__
        _logger.error("Pagination query failed", model=getattr(model_class, "__name__", "?"), error=error)
        raise DatabaseException("Database error while paginating") from exc
    except Exception as exc:
        error = type(exc).__name__
        raise
    finally:
        record_pagination_metrics(
            kind, getattr(model_class, "__name__", str(model_class)), time.monotonic() - start, error
        )


async def paginate_with_offset(
    db: AsyncSession,
    model_class: Any,
    query: Any = None,
    params: OffsetPaginationParams | None = None,
    response_model: Any = None,
    transform_func: Callable[[Any], Any] | None = None,
    *,
    allowed_sort_fields: Iterable[str] | None = None,
) -> OffsetPaginationResult[Any]:
    """One page of ``query`` (default ``select(model_class)``) by page number.

    Returns an :class:`OffsetPaginationResult` whose ``items`` are the rows (entities, or
    ``Row`` tuples for multi-entity queries) passed through ``transform_func`` and then
    ``response_model.model_validate(..., from_attributes=True)`` when given. ``total`` counts the
    whole query. ``params.sort`` may only name :func:`sortable_fields` of the model:
    ``allowed_sort_fields`` when given, else the primary key and ``__sortable_fields__``. Raises :class:`InvalidSortFieldException` / :class:`InvalidPaginationParamsException`
    (422) for bad parameters and :class:`DatabaseException` when the database fails.
    """
    checked: OffsetPaginationParams = _check_params(params, OffsetPaginationParams)
    return await _timed(
        "offset",
        model_class,
        _offset_page(db, model_class, query, checked, response_model, transform_func, allowed_sort_fields),
    )


async def _offset_page(
    db: AsyncSession,
    model_class: Any,
    query: Any,
    params: OffsetPaginationParams,
    response_model: Any,
    transform_func: Callable[[Any], Any] | None,
    allowed_sort_fields: Iterable[str] | None,
) -> OffsetPaginationResult[Any]:
    keys = _sort_keys(model_class, params.sort, allowed_sort_fields, non_null=False)
    base = query if query is not None else _select_all(model_class)
    total = await _count(db, base)
    page_query = (
        base.order_by(None).order_by(*_order_by(keys)).offset(params.offset).limit(params.page_size)
    )
    rows = await _rows(db, page_query, model_class) if params.offset < total else []
    items = _transform(rows, response_model, transform_func)
    return OffsetPaginationResult.build(items, params.page, params.page_size, total)


def _canonical(value: Any) -> Any:
    """A JSON-able, process-independent form of a bound parameter value."""
    if value is None or type(value) is str or (type(value) is int and abs(value) < 2**53):
        return value  # JSON keeps these apart from each other and from the tagged forms below
    if isinstance(value, list | tuple | set | frozenset):
        items = [_canonical(v) for v in value]
        return ["set", sorted(items, key=repr)] if isinstance(value, set | frozenset) else ["seq", items]
    if isinstance(value, dict):
        return ["map", sorted(([str(k), _canonical(v)] for k, v in value.items()), key=repr)]
    if isinstance(value, bytes | bytearray | memoryview):
        return ["bytes", bytes(value).hex()]
    try:
        return _encode_value(value)
    except ConfigurationException:
        return [type(value).__qualname__, repr(value)]


def _dialect(db: Any, model_class: Any) -> Any:
    """The dialect ``db`` talks to for ``model_class`` (SQLAlchemy's default one if it has no bind)."""
    try:
        return db.get_bind(mapper=_mapper(model_class)).dialect
    except (SQLAlchemyError, AttributeError, TypeError):
        return default.DefaultDialect()


def query_fingerprint(
    model_class: Any,
    sort: Sequence[tuple[str, bool]],
    query: Any,
    dialect: Any = None,
    scope: str | bytes | None = None,
) -> str:
    """The identity a cursor is bound to: SHA-256 (hex) of the model and its table, every sort
    key (``(field, descending)`` pairs, in order), the compiled ``query`` (``ORDER BY``
    removed: its ``SELECT``, ``FROM``/joins, ``WHERE``, ... as SQL for ``dialect``, default
    SQLAlchemy's generic one) with its bound parameter values, and the caller's ``scope``.

    Two queries that can return different rows give different fingerprints, so a cursor from
    one is refused by the other; the same query built again gives the same one (also in
    another process). A bound value of a type without a stable representation (an object
    whose ``repr`` holds its address) makes the fingerprint differ per process: such cursors
    are then refused (422), never accepted for another query."""
    mapper = _mapper(model_class)
    sql, params = _sql_and_params(query.order_by(None), dialect or default.DefaultDialect())
    table = mapper.local_table
    spec = {
        "model": mapper.class_.__name__,
        "table": str(getattr(table, "fullname", table)),
        "sort": [[name, "d" if descending else "a"] for name, descending in sort],
        "sql": sql,
        "params": params,
        "scope": ["b", scope.hex()] if isinstance(scope, bytes) else ["s", scope],
    }
    return hashlib.sha256(orjson.dumps(spec)).hexdigest()


_SQL_CACHE: dict[Any, str] = {}
_SQL_CACHE_SIZE = 1024


def _sql_and_params(statement: Any, dialect: Any) -> tuple[str, list[Any]]:
    """SQLAlchemy's "offline string" of a statement (``CacheKey.to_offline_string``): its SQL
    for ``dialect`` — compiled once per statement structure and kept — and its bound values in
    traversal order, in :func:`_canonical` form. Statements SQLAlchemy cannot cache are compiled
    every time, their parameters taken by compiled name."""
    cache_key = statement._generate_cache_key()
    if cache_key is None:
        compiled = statement.compile(dialect=dialect)
        return str(compiled), sorted(([k, _canonical(v)] for k, v in compiled.params.items()), key=repr)
    slot = (type(dialect), cache_key.key)
    sql = _SQL_CACHE.get(slot)
    if sql is None:
        if len(_SQL_CACHE) >= _SQL_CACHE_SIZE:
            _SQL_CACHE.clear()
        sql = _SQL_CACHE[slot] = str(statement.compile(dialect=dialect))
    return sql, [_canonical(b.effective_value) for b in cache_key.bindparams]


def _after(keys: Sequence[_Key], values: Sequence[Any], backwards: bool) -> Any:
    """Rows strictly after ``values`` in the order of ``keys`` (before them when ``backwards``)."""
    clauses = []
    for i, key in enumerate(keys):
        greater = key.descending == backwards
        value = values[i]
        step = key.column > value if greater else key.column < value
        equal = [keys[j].column == values[j] for j in range(i)]
        clauses.append(and_(*equal, step) if equal else step)
    return or_(*clauses) if clauses else false()


async def paginate_with_cursor(
    db: AsyncSession,
    model_class: Any,
    query: Any = None,
    params: CursorPaginationParams | None = None,
    response_model: Any = None,
    transform_func: Callable[[Any], Any] | None = None,
    *,
    allowed_sort_fields: Iterable[str] | None = None,
    include_total: bool = True,
    secret_key: str | bytes | None = None,
    cursor_scope: str | bytes | None = None,
) -> CursorPaginationResult[Any]:
    """One keyset page of ``query`` (default ``select(model_class)``) after ``params.cursor``.

    ``next_cursor`` continues after the last item, ``prev_cursor`` goes back before the first.
    Both are encrypted and authenticated (AES-256-GCM, key derived from ``secret_key``, default
    the settings' secret key): the sort values in them cannot be read or changed by a client.
    Both are bound to :func:`query_fingerprint` of this call — the model, the sort fields and
    directions, the query's SQL and bound values (its filter) and ``cursor_scope`` (anything
    else the caller wants a cursor tied to, e.g. the tenant or user id) — so a cursor is
    refused by any other query. ``params.sort`` may only name non-nullable
    :func:`sortable_fields` of the model. Rows inserted or deleted between requests never make
    a page repeat or skip a surviving row. ``total`` counts the whole query unless
    ``include_total=False``. Raises :class:`InvalidCursorException`,
    :class:`InvalidSortFieldException` or :class:`InvalidPaginationParamsException` (all 422)
    for bad input.
    """
    checked: CursorPaginationParams = _check_params(params, CursorPaginationParams)
    codec = CursorCodec(secret_key or _default_secret())
    return await _timed(
        "cursor",
        model_class,
        _cursor_page(
            db, model_class, query, checked, response_model, transform_func,
            allowed_sort_fields, include_total, codec, cursor_scope,
        ),
    )


async def _cursor_page(
    db: AsyncSession,
    model_class: Any,
    query: Any,
    params: CursorPaginationParams,
    response_model: Any,
    transform_func: Callable[[Any], Any] | None,
    allowed_sort_fields: Iterable[str] | None,
    include_total: bool,
    codec: CursorCodec,
    cursor_scope: str | bytes | None,
) -> CursorPaginationResult[Any]:
    keys = _sort_keys(model_class, params.sort, allowed_sort_fields, non_null=True)
    base = (query if query is not None else _select_all(model_class)).order_by(None)
    fingerprint = query_fingerprint(
        model_class, [(k.name, k.descending) for k in keys], base, _dialect(db, model_class), cursor_scope
    )
    backwards = False
    page_query = base
    if params.cursor is not None:
        direction, values = codec.decode(params.cursor, fingerprint)
        if len(values) != len(keys):
            raise InvalidCursorException(reason="mismatch")
        backwards = direction == "p"
        page_query = page_query.where(_after(keys, values, backwards))
    page_query = page_query.order_by(*_order_by(keys, reverse=backwards)).limit(params.limit + 1)
    rows = await _rows(db, page_query, model_class)
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    if backwards:
        rows.reverse()
        has_prev, has_next = more, True
    else:
        has_next, has_prev = more, params.cursor is not None

    def cursor_at(row: Any, direction: str) -> str:
        return codec.encode(fingerprint, [_value(row, model_class, k.name) for k in keys], direction)

    next_cursor = cursor_at(rows[-1], "n") if rows and has_next else None
    prev_cursor = cursor_at(rows[0], "p") if rows and has_prev else None
    total = await _count(db, base) if include_total else None
    return CursorPaginationResult(
        items=_transform(rows, response_model, transform_func),
        limit=params.limit,
        total=total,
        has_next=has_next and next_cursor is not None,
        has_prev=has_prev and prev_cursor is not None,
        next_cursor=next_cursor,
        prev_cursor=prev_cursor,
    )
