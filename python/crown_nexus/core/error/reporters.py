"""Error reporters: logging (the default), an in-memory ring of recent errors, and the registry.

A reporter that keeps errors keeps SUMMARIES (:class:`ReportedError`: type, scrubbed message,
formatted traceback text, bounded and redacted context), never the live exception: its
traceback holds every frame of the failed request, with the request and its parsed body.
"""

from __future__ import annotations

import builtins
import logging
import threading
import traceback
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

from crown_nexus._redaction import NOT_CONVERTED, REDACTED, is_sensitive_key, scrub_text, to_plain
from crown_nexus.core._redact import redact
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
    "summarize",
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


#: bounds of one :class:`ReportedError`: message and string values (characters), traceback
#: text (characters, the most recent end kept), items per container and nesting depth
MAX_MESSAGE_CHARS = 1_000
MAX_TRACEBACK_CHARS = 8_000
MAX_VALUE_CHARS = 500
MAX_ITEMS = 20
MAX_DEPTH = 4


def _cut(text: str, limit: int) -> str:
    """``text`` scrubbed of secrets and cut to ``limit`` characters (scrubbed before the cut,
    on a window a few times longer, so a secret straddling the cut is still recognised)."""
    text = scrub_text(text[: 4 * limit])
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit}+ chars cut]"


def _cut_tail(text: str, limit: int) -> str:
    """Like :func:`_cut` but keeps the END of ``text`` (a traceback's most recent call)."""
    text = scrub_text(text[-4 * limit :])
    if len(text) <= limit:
        return text
    return f"[{len(text) - limit}+ chars cut]...{text[-limit:]}"


def summarize(value: Any, _depth: int = 0) -> Any:
    """A plain, bounded and redacted copy of ``value`` that references nothing of the original.

    Strings are scrubbed and cut to :data:`MAX_VALUE_CHARS`; mappings and sequences keep their
    first :data:`MAX_ITEMS` items (values under sensitive keys redacted) down to
    :data:`MAX_DEPTH` levels; pydantic models, dataclasses and exceptions become dicts first;
    integers past 64 bits and bytes are described; any other object becomes ``<TypeName>``
    (never its ``repr``, which may be huge or hold secrets).
    """
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, str):
        return _cut(str.__str__(value), MAX_VALUE_CHARS)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if _depth >= MAX_DEPTH:
        return f"<{type(value).__qualname__}>"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for i, (key, item) in enumerate(value.items()):
            if i >= MAX_ITEMS:
                out["..."] = f"{len(value) - MAX_ITEMS} more"
                break
            name = key if isinstance(key, str) else str(summarize(key, MAX_DEPTH))
            name = _cut(name, MAX_VALUE_CHARS)
            out[name] = REDACTED if is_sensitive_key(key) else summarize(item, _depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset | deque):
        items = [summarize(v, _depth + 1) for v in islice(value, MAX_ITEMS)]
        if len(value) > MAX_ITEMS:
            items.append(f"... {len(value) - MAX_ITEMS} more")
        return items
    try:
        plain = to_plain(value)
    except Exception:  # a model whose model_dump fails: nothing of it is kept
        return f"<{type(value).__qualname__}>"
    if plain is not NOT_CONVERTED:
        return summarize(plain, _depth + 1)
    return f"<{type(value).__qualname__}>"


def _summarize_context(context: ErrorContext) -> ErrorContext:
    """A copy of ``context`` whose values are bounded, redacted and plain (:func:`summarize`)."""

    def text(value: str | None) -> str | None:
        return None if value is None else _cut(value, MAX_VALUE_CHARS)

    args = summarize(list(context.args))
    kwargs = summarize(dict(context.kwargs))
    extra = summarize(dict(context.extra))
    return ErrorContext(
        function=text(context.function),
        args=redact(args),
        kwargs=redact(kwargs),
        user_id=text(context.user_id),
        request_id=text(context.request_id),
        module=text(context.module),
        line=context.line if isinstance(context.line, int) else None,
        extra=redact(extra),
        timestamp=context.timestamp,
    )


def _message(exception: BaseException) -> str:
    try:
        text = str(exception)
    except Exception:  # a __str__ that fails: the type says enough
        return f"<unprintable {type(exception).__name__}>"
    return _cut(text, MAX_MESSAGE_CHARS)


def _details(exception: BaseException) -> Any:
    details = getattr(exception, "details", None)
    if details is None:
        return None
    try:
        return redact(summarize(details))
    except Exception:  # a details property that fails: nothing of it is kept
        return None


def _traceback_text(exception: BaseException) -> str:
    """The formatted traceback (causes included, no locals), scrubbed and cut from the start."""
    try:
        text = "".join(traceback.format_exception(exception))
    except Exception:  # formatting must never hide the report
        return ""
    return _cut_tail(text, MAX_TRACEBACK_CHARS)


@dataclass(frozen=True)
class ReportedError:
    """One entry of :class:`InMemoryReporter`: a redacted, size-bounded SUMMARY of an error.

    It never keeps the exception, its traceback, frames or anything they reference (the
    request, its parsed body): only the exception's class and plain strings and values, so a
    reporter's memory stays bounded by its capacity whatever the failing requests carried.
    """

    #: the exception's class
    exception_type: builtins.type[BaseException]
    #: ``str(exception)`` scrubbed of secrets, at most :data:`MAX_MESSAGE_CHARS` characters
    message: str
    #: the formatted traceback (no locals), scrubbed, its last :data:`MAX_TRACEBACK_CHARS`
    traceback: str
    #: the context with every value bounded and redacted (:func:`summarize`)
    context: ErrorContext
    #: the exception's ``status_code`` (500 when it has none)
    status_code: int = 500
    #: an ``AppException``'s error code (``INTERNAL_SERVER_ERROR`` for anything else)
    code: str = "INTERNAL_SERVER_ERROR"
    #: the exception's ``details`` (an ``AppException``'s), bounded and redacted; else ``None``
    details: Any = None

    @classmethod
    def from_exception(cls, exception: BaseException, context: ErrorContext) -> ReportedError:
        """Summarize ``exception`` and ``context`` (keeping no reference to either)."""
        status = getattr(exception, "status_code", 500)
        code = getattr(exception, "code_value", None)
        return cls(
            exception_type=type(exception),
            message=_message(exception),
            traceback=_traceback_text(exception),
            context=_summarize_context(context),
            status_code=status if isinstance(status, int) else 500,
            code=_cut(code, MAX_VALUE_CHARS) if isinstance(code, str) else "INTERNAL_SERVER_ERROR",
            details=_details(exception),
        )

    @property
    def type(self) -> str:
        """The exception's class name."""
        return self.exception_type.__name__


class InMemoryReporter:
    """Keeps summaries of the last ``capacity`` reported errors; read them with :meth:`recent`.

    Each entry is a :class:`ReportedError`: bounded, redacted, holding no exception, frame or
    request, so memory stays bounded by ``capacity`` whatever the failing requests carried.
    """

    def __init__(self, capacity: int = 100) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[ReportedError] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def report_sync(self, exception: BaseException, context: ErrorContext) -> None:
        """Remember a summary of ``exception`` with ``context`` (the oldest falls out when full)."""
        entry = ReportedError.from_exception(exception, context)
        with self._lock:
            self._items.append(entry)

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
