"""Decorators that log how long a function took: ``log_execution_time`` and its async twin.

One line per call, after it returns: ``"Function executed"`` with ``function`` (qualified name),
``module``, ``duration_ms``, ``started_at`` and ``finished_at`` (ISO-8601 UTC). When the function
raises, one ``"Function failed"`` line at ``error`` level adds ``error`` (the exception type) and
the exception propagates unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

from crown_nexus.logging.config import get_logger
from crown_nexus.logging.processors import LEVEL_NAMES, LEVEL_NUMBERS, now_iso

__all__ = ["log_execution_time", "log_execution_time_async"]

P = ParamSpec("P")
R = TypeVar("R")


def _resolve_logger(logger: Any, func: Callable[..., Any]) -> Any:
    if logger is None:
        return get_logger(getattr(func, "__module__", None) or "crown_nexus")
    if isinstance(logger, str):
        return get_logger(logger)
    return logger


def _level_name(level: int | str) -> str:
    if isinstance(level, int):
        name = "debug"
        for candidate, number in LEVEL_NUMBERS.items():
            if level >= number:
                name = candidate
        return name
    found = LEVEL_NAMES.get(level.strip().lower())
    if found is None:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(LEVEL_NUMBERS)}")
    name = found
    return name


def _emit(log: Any, level: str, event: str, fields: dict[str, Any]) -> None:
    # timing must never break the timed function (a user-supplied logger may raise)
    with contextlib.suppress(Exception):
        getattr(log, level)(event, **fields)


def _fields(func: Callable[..., Any], started_at: str, start: float) -> dict[str, Any]:
    return {
        "function": getattr(func, "__qualname__", repr(func)),
        "module": getattr(func, "__module__", None),
        "duration_ms": round((time.perf_counter() - start) * 1000.0, 3),
        "started_at": started_at,
        "finished_at": now_iso(),
    }


def _sync_wrapper(func: Callable[P, R], logger: Any, level: str) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        log = _resolve_logger(logger, func)
        started_at = now_iso()
        start = time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            fields = _fields(func, started_at, start)
            fields["error"] = type(exc).__name__
            _emit(log, "error", "Function failed", fields)
            raise
        _emit(log, level, "Function executed", _fields(func, started_at, start))
        return result

    return wrapper


def _async_wrapper(
    func: Callable[P, Awaitable[R]], logger: Any, level: str
) -> Callable[P, Awaitable[R]]:
    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        log = _resolve_logger(logger, func)
        started_at = now_iso()
        start = time.perf_counter()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            fields = _fields(func, started_at, start)
            fields["error"] = type(exc).__name__
            _emit(log, "error", "Function failed", fields)
            raise
        _emit(log, level, "Function executed", _fields(func, started_at, start))
        return result

    return wrapper


@overload
def log_execution_time(logger: Callable[P, R]) -> Callable[P, R]: ...
@overload
def log_execution_time(
    logger: Any = None, level: int | str = "INFO"
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def log_execution_time(logger: Any = None, level: int | str = "INFO") -> Any:
    """Decorate a function so each call logs its duration (see the module docstring).

    ``logger``: a crown-nexus logger, a logger name, or ``None`` (the function's module logger).
    ``level``: ``"INFO"`` by default (name or number). Works on ``async def`` functions too.
    Also usable bare (``@log_execution_time``).
    """
    if inspect.isfunction(logger) or inspect.ismethod(logger):
        func, logger = logger, None
        return log_execution_time(None, level)(func)
    name = _level_name(level)

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):
            return _async_wrapper(func, logger, name)  # type: ignore[return-value]
        return _sync_wrapper(func, logger, name)

    return decorator


def log_execution_time_async(logger: Any = None, level: int | str = "INFO") -> Any:
    """Decorate an ``async def`` function so each call logs its duration once awaited.

    Same parameters as :func:`log_execution_time`; also usable bare.
    """
    if inspect.isfunction(logger) or inspect.ismethod(logger):
        return log_execution_time_async(None, level)(logger)
    name = _level_name(level)

    def decorator(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(
                f"log_execution_time_async decorates async functions; {func!r} is not one "
                "(use log_execution_time)"
            )
        return _async_wrapper(func, logger, name)

    return decorator
