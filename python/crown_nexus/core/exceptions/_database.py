"""Which database errors mean "the database cannot serve now, try again" (503, not 500).

A driver error that reaches the exception handlers is a server-side error. Most are bugs (a
missing table, a bad statement): 500. Some say only that the database is unavailable for the
moment — the server is down or restarting, the connection was lost, the pool or the server is
out of connections, a lock or a serialization conflict could not be resolved in time, SQLite's
single write lock stayed busy past its timeout. Those answer ``503`` with ``Retry-After`` (as a
rate-limiter or cache outage does), so clients and load balancers retry instead of treating the
request as broken. :func:`transient_database_error` decides; :func:`unavailable_code` adds
connection errors raised bare (asyncpg raises ``ConnectionRefusedError`` itself when nothing
listens, unwrapped by SQLAlchemy; an HTTP client's refused connection is the same case), which
SPEC §3 files under ``NETWORK_ERROR`` (503); :func:`render_exception` uses it.
"""

from __future__ import annotations

from crown_nexus.core.exceptions._base import ErrorCode

__all__ = ["RETRY_AFTER_SECONDS", "transient_database_error", "unavailable_code"]

#: ``Retry-After`` of a 503 for a transient database error
RETRY_AFTER_SECONDS = 1

#: SQLSTATE classes that are transient as a whole: connection exception, insufficient resources
#: (too many connections, out of memory or disk), operator intervention (shutdown, restart,
#: cannot connect now, statement cancelled by timeout)
_TRANSIENT_CLASSES = frozenset({"08", "53", "57"})
#: single transient SQLSTATEs: serialization failure, deadlock, lock not available
_TRANSIENT_STATES = frozenset({"40001", "40P01", "55P03"})
#: SQLite's messages for a lock it could not get within its busy timeout
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def _sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE a driver error carries (asyncpg ``sqlstate``, psycopg ``pgcode``/``sqlstate``),
    looked for on the error and on what it was raised from."""
    seen = 0
    while error is not None and seen < 4:
        for attr in ("sqlstate", "pgcode"):
            value = getattr(error, attr, None)
            if isinstance(value, str) and len(value) == 5:
                return value
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def transient_database_error(exc: BaseException) -> bool:
    """True when ``exc`` is a SQLAlchemy error that says the database is unavailable for now.

    That is: the pool timed out waiting for a connection; the connection was invalidated (lost);
    the driver error carries a transient SQLSTATE (classes 08, 53, 57; 40001, 40P01, 55P03);
    the driver could not reach the server at all (``OSError`` under it: refused, reset,
    unreachable); SQLite reports its lock busy; or a bare driver error (not wrapped by
    SQLAlchemy) carries a transient SQLSTATE. Everything else is not transient. Never raises.
    """
    try:
        from sqlalchemy import exc as sa_exc
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return False
    if not isinstance(exc, sa_exc.SQLAlchemyError):
        # a driver error raised bare (asyncpg's connect-time errors are not wrapped)
        state = _sqlstate(exc) if not isinstance(exc, OSError) else None
        return state is not None and (state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES)
    if isinstance(exc, sa_exc.TimeoutError):  # QueuePool limit reached, connection timed out
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    state = _sqlstate(orig)
    if state is not None:
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    cause: BaseException | None = orig
    for _ in range(4):
        if cause is None:
            break
        if isinstance(cause, OSError):  # connection refused/reset/unreachable, not a file error
            return not isinstance(cause, (FileNotFoundError, PermissionError, IsADirectoryError))
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, sa_exc.OperationalError):
        text = str(orig).lower()
        return any(text.startswith(busy) for busy in _SQLITE_BUSY)
    return False


def unavailable_code(exc: BaseException) -> ErrorCode | None:
    """The code of a 503 for ``exc`` when it means "unavailable now, retry", else ``None``.

    ``DATABASE_UNAVAILABLE`` for :func:`transient_database_error`; ``NETWORK_ERROR`` for a bare
    :class:`ConnectionError` (refused, reset, aborted, broken pipe) -- a dependency that could
    not be reached, wherever it was raised.
    """
    if transient_database_error(exc):
        return ErrorCode.DATABASE_UNAVAILABLE
    if isinstance(exc, ConnectionError):
        return ErrorCode.NETWORK_ERROR
    return None
