"""The logger class: :class:`CrownLogger`, a structlog bound logger whose call path is the chain.

Owns what happens when code logs: the level check, ``%``-formatting of positional arguments
(each redacted first), the event dict (``{**bound context, **fields, "event": event}``, as
structlog builds it; without bound values, the call's own keyword dict plus ``logger`` and
``event``), the processor chain of :mod:`crown_nexus.logging.state` run over it, and
the line handed to the sink. There is one path: every line, JSON or console, goes through the
configured chain; a failure anywhere gives a minimal line instead (a log call never raises).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.exceptions import DropEvent

from crown_nexus._redaction import REDACTED, scrub_text
from crown_nexus.logging.processors import LEVEL_NAMES, LEVEL_NUMBERS
from crown_nexus.logging.redaction import Redactor
from crown_nexus.logging.render import fallback_line
from crown_nexus.logging.sink import LogSink, write_line
from crown_nexus.logging.state import _STATE

__all__ = ["CrownLogger", "format_args"]

#: marks a logger with bound values besides its name
_BOUND: Any = object()


#: argument types whose text may hold a secret that redaction can find by key or pattern
_REDACTED_ARG_TYPES = (str, bytes, bytearray, Mapping, list, tuple, set, frozenset, BaseException)


def _redact_arg(redactor: Redactor, arg: Any) -> Any:
    if (
        isinstance(arg, _REDACTED_ARG_TYPES)
        or callable(getattr(type(arg), "model_dump", None))
        or (dataclasses.is_dataclass(arg) and not isinstance(arg, type))
    ):
        return redactor.redact_value(arg)
    return arg  # numbers, dates and other objects keep their %-formatting; the text is scrubbed


def format_args(event: Any, args: Any, redactor: Redactor | None = None) -> str:
    """``event % args`` with each argument redacted first (a single mapping argument by key,
    as in ``"%(user)s" % {...}``; models and dataclasses as dicts) and the result scrubbed
    (:func:`~crown_nexus.logging.processors.scrub_text`), so a secret passed positionally
    inside a ``key=value`` text, a DSN, a model or a mapping never reaches the line."""
    redactor = redactor or _STATE.redactor
    if isinstance(args, Mapping):  # a stdlib LogRecord keeps a single mapping argument bare
        args = (args,)
    elif not isinstance(args, tuple):
        args = (args,)
    try:
        if len(args) == 1 and isinstance(args[0], Mapping):
            safe_args: Any = redactor.redact_value(args[0])
        else:
            safe_args = tuple(_redact_arg(redactor, a) for a in args)
    except Exception:
        safe_args = tuple(REDACTED for _ in args)
    try:
        text = str(event) % safe_args
    except Exception:
        text = f"{event} {safe_args!r}"
    return scrub_text(text)


def _level_method(method: str, number: int) -> Any:
    """Build the logger method for ``method`` at level ``number``: below the level it returns
    at once; otherwise it runs the chain over the event dict and writes the line."""
    exception = method == "exception"
    level_name = LEVEL_NAMES[method]
    _write = os.write

    # ``self`` and ``event`` are positional-only: CPython then binds the call's keyword
    # arguments straight into ``kw`` without comparing each name with the parameter names
    # (about a tenth of a log line's cost); ``event=`` as a keyword is still honoured below
    def log_method(self: CrownLogger, event: Any = None, /, *args: Any, **kw: Any) -> None:
        if _STATE.min_level > number:
            return
        sink = self._logger
        try:
            if event is None and "event" in kw:
                event = kw.pop("event")
            if exception:
                kw.setdefault("exc_info", True)
            if args:
                event = format_args(event, args)
            name = self._lone_name
            if name is _BOUND:
                event_dict: Any = {**self._context, **kw}
            else:  # no bound fields: the call's own (fresh) kw dict is the event dict
                event_dict = kw
                if "logger" not in kw:
                    kw["logger"] = name
            if event is not None:
                event_dict["event"] = event
            for proc in self._processors:
                event_dict = proc(sink, method, event_dict)
        except DropEvent:
            return
        except Exception as exc:
            event_dict = fallback_line(
                {"level": level_name, "logger": self._context.get("logger"), "event": event}, exc
            )
        if type(event_dict) is bytes and type(sink) is LogSink:
            fd = sink.fd
            if fd is not None:
                try:
                    written = _write(fd, event_dict)
                except Exception:  # a log call never raises; the failure is counted
                    sink.failures += 1
                    return
                if written != len(event_dict):  # partial write: the sink finishes it
                    sink.write(event_dict[written:])
                return
        write_line(sink, event_dict)

    log_method.__name__ = log_method.__qualname__ = method
    log_method.__doc__ = f"Log ``event`` with fields ``kw`` at {method.upper()}" + (
        " with the current (or given ``exc_info``) exception as structured fields."
        if exception
        else "."
    )
    return log_method


class CrownLogger(structlog.BoundLoggerBase):
    """A structlog bound logger with the guide's methods; a log call never raises.

    ``logger.info("event", key=value)``; positional args are %-formatted into the event.
    Levels below the configured one return at once. ``exception(...)`` logs at ``error`` with
    ``exc_info=True``. ``bind(**kw)`` returns a logger carrying ``kw`` on every line.
    """

    def __init__(self, logger: Any, processors: Any, context: Any) -> None:
        super().__init__(logger, processors, context)
        #: the logger name when it is the only bound value (the event dict is then the call's
        #: own keyword dict plus ``logger`` and ``event``), else ``_BOUND``
        self._lone_name: Any = (
            context.get("logger") if len(context) == 1 and "logger" in context else _BOUND
        )

    def is_enabled_for(self, level: int | str) -> bool:
        """Return True when a call at ``level`` (number or name) would be emitted."""
        if isinstance(level, str):
            level = LEVEL_NUMBERS.get(LEVEL_NAMES.get(level.lower(), level.lower()), 0)
        return level >= _STATE.min_level

    debug = _level_method("debug", 10)
    info = _level_method("info", 20)
    msg = info
    warning = _level_method("warning", 30)
    warn = warning
    error = _level_method("error", 40)
    exception = _level_method("exception", 40)
    critical = _level_method("critical", 50)
    fatal = critical

    def log(self, level: int | str, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at ``level`` (a number like ``logging.INFO`` or a name like ``"info"``)."""
        if isinstance(level, str):
            name = LEVEL_NAMES.get(level.lower(), "info")
        else:
            name = "debug"
            for candidate, number in LEVEL_NUMBERS.items():
                if level >= number:
                    name = candidate
        if LEVEL_NUMBERS[name] >= _STATE.min_level:
            getattr(self, name)(event, *args, **kw)

    async def adebug(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Async spelling of :meth:`debug` (writing is immediate; nothing is awaited)."""
        self.debug(event, *args, **kw)

    async def ainfo(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Async spelling of :meth:`info`."""
        self.info(event, *args, **kw)

    async def awarning(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Async spelling of :meth:`warning`."""
        self.warning(event, *args, **kw)

    async def aerror(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Async spelling of :meth:`error`."""
        self.error(event, *args, **kw)

    async def aexception(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Async spelling of :meth:`exception`."""
        self.exception(event, *args, **kw)

    async def acritical(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Async spelling of :meth:`critical`."""
        self.critical(event, *args, **kw)
