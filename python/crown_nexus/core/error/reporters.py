"""Error reporters: logging (the default), an in-memory ring of recent errors, and the registry."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, TypeVar

from crown_nexus._redaction import scrub_text
from crown_nexus.core.error._redact import redact
from crown_nexus.core.error.base import ErrorContext, ErrorReporter

__all__ = [
    "InMemoryReporter",
    "LoggingErrorReporter",
    "LoggingReporter",
    "MemoryErrorReporter",
    "ReportedError",
    "clear_reporters",
    "get_reporters",
    "register_reporter",
    "unregister_reporter",
]


def _logger() -> Any:
    """crown-nexus's structured logger when it is available, else the stdlib one."""
    try:
        from crown_nexus.logging import get_logger

        return get_logger("crown_nexus.core.error")
    except Exception:
        return None


def _is_client_error(exc: BaseException) -> bool:
    status = getattr(exc, "status_code", 500)
    return isinstance(status, int) and status < 500


class LoggingErrorReporter:
    """Logs each error: client errors (status < 500) as warnings, the rest as errors with traceback."""

    def __init__(self, logger_name: str = "crown_nexus.core.error") -> None:
        self._stdlib = logging.getLogger(logger_name)

    def report_sync(self, exception: BaseException, context: ErrorContext) -> None:
        """Write one log event for ``exception`` with ``context`` (redacted again here: a
        reporter may be handed a context that did not go through ``report_error``); the
        exception's message is scrubbed (URL passwords, tokens, ``key=value`` secrets)."""
        fields = {k: v for k, v in context.to_dict().items() if v not in (None, [], {})}
        fields.pop("timestamp", None)
        fields = redact(fields)
        client = _is_client_error(exception)
        text = scrub_text(str(exception))
        message = f"{type(exception).__name__}: {text}"
        structured = _logger()
        if structured is not None:
            log = structured.warning if client else structured.error
            log(
                "error reported",
                error_type=type(exception).__name__,
                error=text,
                error_context=fields,
                exc_info=None if client else exception,
            )
            return
        self._stdlib.log(
            logging.WARNING if client else logging.ERROR,
            "error reported: %s context=%s",
            message,
            fields,
            exc_info=None if client else exception,
        )

    async def report(self, exception: BaseException, context: ErrorContext) -> None:
        """Async form of :meth:`report_sync`."""
        self.report_sync(exception, context)


LoggingReporter = LoggingErrorReporter


@dataclass(frozen=True)
class ReportedError:
    """One entry of :class:`InMemoryReporter`: the exception and its context."""

    exception: BaseException
    context: ErrorContext

    @property
    def type(self) -> str:
        """The exception's class name."""
        return type(self.exception).__name__

    @property
    def message(self) -> str:
        """``str(exception)`` with secrets scrubbed (URL passwords, tokens, ``key=value``
        secrets; see :func:`crown_nexus.core.error.redact`)."""
        return scrub_text(str(self.exception))


class InMemoryReporter:
    """Keeps the last ``capacity`` reported errors in memory; read them with :meth:`recent`."""

    def __init__(self, capacity: int = 100) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[ReportedError] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def report_sync(self, exception: BaseException, context: ErrorContext) -> None:
        """Remember ``exception`` with ``context`` (the oldest entry falls out when full)."""
        with self._lock:
            self._items.append(ReportedError(exception, context))

    async def report(self, exception: BaseException, context: ErrorContext) -> None:
        """Async form of :meth:`report_sync`."""
        self.report_sync(exception, context)

    def recent(self, limit: int | None = None) -> list[ReportedError]:
        """The most recent errors, newest last (at most ``limit`` of them)."""
        with self._lock:
            items = list(self._items)
        return items if limit is None else items[-limit:] if limit > 0 else []

    def clear(self) -> None:
        """Forget every stored error."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


MemoryErrorReporter = InMemoryReporter

_reporters: list[ErrorReporter] = [LoggingErrorReporter()]
_reporters_lock = threading.Lock()


_R = TypeVar("_R", bound=ErrorReporter)


def register_reporter(reporter: _R) -> _R:
    """Add ``reporter`` (an object with ``async report(exception, context)``); returns it.

    Registering the same object twice has no effect.
    """
    if not callable(getattr(reporter, "report", None)):
        raise TypeError("a reporter needs an async report(exception, context) method")
    with _reporters_lock:
        if not any(r is reporter for r in _reporters):
            _reporters.append(reporter)
    return reporter


def unregister_reporter(reporter: ErrorReporter) -> None:
    """Remove ``reporter`` if registered."""
    with _reporters_lock:
        _reporters[:] = [r for r in _reporters if r is not reporter]


def get_reporters() -> list[ErrorReporter]:
    """The registered reporters, in registration order."""
    with _reporters_lock:
        return list(_reporters)


def clear_reporters(keep_logging: bool = True) -> None:
    """Remove every reporter (except the default logging reporter when ``keep_logging``)."""
    with _reporters_lock:
        _reporters[:] = [
            r for r in _reporters if keep_logging and isinstance(r, LoggingErrorReporter)
        ]
