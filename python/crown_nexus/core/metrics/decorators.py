"""Decorators that time database operations: ``track_db_select(entity=)`` and friends.

Each call of the decorated function (sync or async) is recorded with
``metrics_service.track_db_query(operation=..., entity=..., duration=..., error=...)`` where
``error`` is the exception type name when it raised (the exception still propagates).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

from crown_nexus.core.metrics.service import MetricsService, get_metrics_service
from crown_nexus.logging import get_logger

__all__ = [
    "track_db_delete",
    "track_db_insert",
    "track_db_operation",
    "track_db_select",
    "track_db_update",
]

F = TypeVar("F", bound=Callable[..., Any])

_logger = get_logger("crown_nexus.core.metrics")


def _service() -> MetricsService:
    """The registered ``metrics_service`` (honours test overrides), else the shared one."""
    try:
        from crown_nexus.core.dependency_manager import get_service

        service = get_service("metrics_service")
    except Exception:
        return get_metrics_service()
    return service if hasattr(service, "track_db_query") else get_metrics_service()


def _record(operation: str, entity: str, start: float, error: str | None) -> None:
    try:
        _service().track_db_query(
            operation=operation, entity=entity, duration=time.perf_counter() - start, error=error
        )
    except Exception as exc:  # metrics never change the outcome of the query
        _logger.warning("Could not record a DB query metric", entity=entity, error=repr(exc))


def track_db_operation(operation: str, entity: str) -> Callable[[F], F]:
    """Decorate a (sync or async) function so each call is recorded as a DB ``operation`` on
    ``entity`` (count, duration, error type)."""
    op = str(operation).upper()

    def decorator(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                error: str | None = None
                try:
                    return await func(*args, **kwargs)
                except BaseException as exc:
                    error = type(exc).__name__
                    raise
                finally:
                    _record(op, entity, start, error)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            error: str | None = None
            try:
                return func(*args, **kwargs)
            except BaseException as exc:
                error = type(exc).__name__
                raise
            finally:
                _record(op, entity, start, error)

        return wrapper  # type: ignore[return-value]

    return decorator


def track_db_select(entity: str) -> Callable[[F], F]:
    """Record each call as a ``SELECT`` on ``entity``."""
    return track_db_operation("SELECT", entity)


def track_db_insert(entity: str) -> Callable[[F], F]:
    """Record each call as an ``INSERT`` on ``entity``."""
    return track_db_operation("INSERT", entity)


def track_db_update(entity: str) -> Callable[[F], F]:
    """Record each call as an ``UPDATE`` on ``entity``."""
    return track_db_operation("UPDATE", entity)


def track_db_delete(entity: str) -> Callable[[F], F]:
    """Record each call as a ``DELETE`` on ``entity``."""
    return track_db_operation("DELETE", entity)
