"""Configuration of crown-nexus logging: the logger class, the sink and ``configure_logging``.

``get_logger(name)`` returns a :class:`CrownLogger` (a structlog bound logger) whose processor
chain is the list configured here (also structlog's global chain, so ``structlog.get_logger()``
and ``structlog.testing.capture_logs`` see the same list). Logging configures itself once, on the
first ``get_logger``; ``configure_logging`` reconfigures explicitly, and loggers created earlier
follow (they share the chain list and the sink).

Output: ``ENVIRONMENT=development`` gives coloured console lines (structlog ``ConsoleRenderer``)
with file and line; ``production`` and ``test`` give one JSON line per event rendered by the
``log_render`` hot path. Each line is handed to the OS with ``os.write`` before the log call
returns, unless ``log_buffered`` is set.
"""

from __future__ import annotations

import atexit
import io
import os
import sys
import threading
from collections.abc import Iterable
from typing import IO, Any, Literal

import structlog
from structlog.exceptions import DropEvent

from crown_nexus.logging.processors import (
    LEVEL_NAMES,
    LEVEL_NUMBERS,
    JSONRenderer,
    Redactor,
    _orjson_render,
    add_core_fields,
    fallback_line,
    format_exception,
)

__all__ = [
    "CrownLogger",
    "LogSink",
    "build_processors",
    "configure_logging",
    "get_logger",
    "is_configured",
]

LogFormat = Literal["json", "console"]


class _State:
    __slots__ = ("configured", "log_format", "min_level", "redactor", "render_kind")

    def __init__(self) -> None:
        self.configured = False
        self.min_level = 20
        self.log_format: LogFormat = "json"
        self.render_kind: str | None = None
        self.redactor = Redactor()


_STATE = _State()
_CONFIG_LOCK = threading.RLock()
#: the processor chain shared by every logger (mutated in place on reconfiguration)
_PROCESSORS: list[Any] = []


class LogSink:
    """Where rendered lines go: a file descriptor (``os.write``) or a stream.

    ``write(line)`` accepts the chain's output (``bytes`` with its newline, ``str`` without, or
    a dict that no renderer turned into text) and never raises.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fd: int | None = None
        self.stream: IO[Any] | None = None
        self.text = False
        self.buffered = False

    def target(
        self, *, fd: int | None = None, stream: IO[Any] | None = None, buffered: bool = False
    ) -> None:
        """Point the sink at ``fd`` or ``stream`` (exactly one), buffered or not."""
        with self._lock:
            self._flush_locked()
            self.buffered = buffered
            if stream is None and fd is not None and buffered:
                stream = open(fd, "wb", buffering=64 * 1024, closefd=False)
                fd = None
            self.fd = fd
            self.stream = stream
            self.text = stream is not None and not isinstance(
                stream, (io.RawIOBase, io.BufferedIOBase)
            )

    def _flush_locked(self) -> None:
        if self.stream is not None:
            try:
                self.stream.flush()
            except Exception:  # noqa: S110 - a closed stream must not break logging
                pass

    def flush(self) -> None:
        """Flush a buffered stream (called at interpreter exit)."""
        with self._lock:
            self._flush_locked()

    def write(self, line: Any) -> None:
        """Write one rendered line; never raises."""
        try:
            if isinstance(line, str):
                data = (line + "\n").encode("utf-8", "replace")
            elif isinstance(line, (bytes, bytearray)):
                data = bytes(line)
            else:
                data = _orjson_render(line if isinstance(line, dict) else {"event": line})
            fd = self.fd
            if fd is not None:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                return
            stream = self.stream
            if stream is None:
                return
            with self._lock:
                if self.text:
                    stream.write(data.decode("utf-8", "replace"))
                else:
                    stream.write(data)
                if not self.buffered:
                    stream.flush()
        except Exception:  # noqa: S110 - a log call never raises
            pass

    # structlog calls the method named like the log method on the wrapped logger
    msg = debug = info = warning = warn = error = exception = critical = fatal = log = write


_SINK = LogSink()
atexit.register(_SINK.flush)


def _format_args(event: Any, args: tuple[Any, ...]) -> Any:
    try:
        return event % args
    except Exception:
        return f"{event} {args!r}"


class CrownLogger(structlog.BoundLoggerBase):
    """A structlog bound logger with the guide's methods; a log call never raises.

    ``logger.info("event", key=value)``; positional args are %-formatted into the event.
    Levels below the configured one return at once. ``exception(...)`` logs at ``error`` with
    ``exc_info=True``. ``bind(**kw)`` returns a logger carrying ``kw`` on every line.
    """

    def _emit(self, method: str, event: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        event_dict: Any = None
        try:
            if args:
                event = _format_args(event, args)
            event_dict = self._context.copy()
            if kw:
                event_dict.update(kw)
            if event is not None:
                event_dict["event"] = event
            for proc in self._processors:
                event_dict = proc(self._logger, method, event_dict)
            self._logger.write(event_dict)
        except DropEvent:
            return
        except Exception as exc:
            try:
                fallback = {
                    "level": LEVEL_NAMES.get(method, method),
                    "logger": self._context.get("logger"),
                    "event": event,
                }
                self._logger.write(fallback_line(fallback, exc))
            except Exception:  # noqa: S110 - never raise from a log call
                pass

    def is_enabled_for(self, level: int | str) -> bool:
        """Return True when a call at ``level`` (number or name) would be emitted."""
        if isinstance(level, str):
            level = LEVEL_NUMBERS.get(LEVEL_NAMES.get(level.lower(), level.lower()), 0)
        return level >= _STATE.min_level

    def debug(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at DEBUG."""
        if _STATE.min_level <= 10:
            self._emit("debug", event, args, kw)

    def info(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at INFO."""
        if _STATE.min_level <= 20:
            self._emit("info", event, args, kw)

    msg = info

    def warning(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at WARNING."""
        if _STATE.min_level <= 30:
            self._emit("warning", event, args, kw)

    warn = warning

    def error(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at ERROR."""
        if _STATE.min_level <= 40:
            self._emit("error", event, args, kw)

    def exception(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at ERROR with the current (or given ``exc_info``) exception as structured fields."""
        if _STATE.min_level <= 40:
            kw.setdefault("exc_info", True)
            self._emit("exception", event, args, kw)

    def critical(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at CRITICAL."""
        if _STATE.min_level <= 50:
            self._emit("critical", event, args, kw)

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
            self._emit(name, event, args, kw)

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


def _console_renderer() -> Any:
    colors = "NO_COLOR" not in os.environ
    return structlog.dev.ConsoleRenderer(
        colors=colors, exception_formatter=structlog.dev.plain_traceback
    )


def build_processors(
    log_format: LogFormat = "json",
    *,
    render_kind: str | None = None,
    redactor: Redactor | None = None,
) -> list[Any]:
    """Return a fresh processor chain for ``log_format``.

    json: ``add_core_fields, format_exception, Redactor, JSONRenderer(render_kind)``;
    console: ``add_core_fields, Redactor, ConsoleRenderer``. ``render_kind`` picks the
    ``log_render`` implementation (``"native"``/``"pure"``; default: accel's choice).
    """
    redactor = redactor or Redactor()
    if log_format == "console":
        return [add_core_fields, redactor, _console_renderer()]
    return [add_core_fields, format_exception, redactor, JSONRenderer(render_kind)]


def _level_number(level: Any) -> int:
    if isinstance(level, int):
        return level
    name = str(level).strip().lower()
    name = LEVEL_NAMES.get(name, name)
    if name not in LEVEL_NUMBERS:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(LEVEL_NUMBERS)}")
    return LEVEL_NUMBERS[name]


def configure_logging(
    settings: Any = None,
    *,
    stream: IO[Any] | None = None,
    log_format: LogFormat | None = None,
    level: int | str | None = None,
    render_kind: str | None = None,
    buffered: bool | None = None,
    redact_add: Iterable[str] = (),
    redact_remove: Iterable[str] = (),
) -> None:
    """Configure crown-nexus logging (and structlog's global chain) and return.

    Defaults come from ``settings`` (``crown_nexus.core.config.settings`` when ``None``):
    ``ENVIRONMENT`` (development → console, production/test → JSON), ``log_level``,
    ``log_buffered``. Keyword arguments override them: ``stream`` (a text or binary stream;
    default: the process's stdout file descriptor), ``log_format`` (``"json"``/``"console"``),
    ``level``, ``render_kind`` (``"native"``/``"pure"``), ``buffered``, and redaction keys to
    add or remove. Calling it again reconfigures; loggers created earlier follow.
    Raises ``ValueError`` for an unknown level and ``KeyError`` for an unavailable render kind.
    """
    if settings is None:
        from crown_nexus.settings import get_settings

        settings = get_settings()
    env = getattr(getattr(settings, "ENVIRONMENT", None), "value", "production")
    fmt: LogFormat = log_format or ("console" if env == "development" else "json")
    if fmt not in ("json", "console"):
        raise ValueError(f"log_format must be 'json' or 'console', not {fmt!r}")
    min_level = _level_number(
        level if level is not None else getattr(settings, "log_level", "INFO")
    )
    use_buffer = bool(getattr(settings, "log_buffered", False)) if buffered is None else buffered
    redactor = Redactor(add=redact_add, remove=redact_remove)
    chain = build_processors(fmt, render_kind=render_kind, redactor=redactor)

    with _CONFIG_LOCK:
        if stream is not None:
            _SINK.target(stream=stream, buffered=use_buffer)
        else:
            try:
                fd = sys.stdout.fileno()
            except (AttributeError, OSError, ValueError):
                _SINK.target(stream=sys.stdout, buffered=use_buffer)
            else:
                _SINK.target(fd=fd, buffered=use_buffer)
        _STATE.min_level = min_level
        _STATE.log_format = fmt
        _STATE.render_kind = render_kind
        _STATE.redactor = redactor
        _PROCESSORS[:] = chain
        structlog.configure(
            processors=_PROCESSORS,
            wrapper_class=CrownLogger,
            logger_factory=lambda *args, **kwargs: _SINK,
            cache_logger_on_first_use=False,
        )
        _STATE.configured = True


def is_configured() -> bool:
    """Return True once logging has been configured (explicitly or by the first ``get_logger``)."""
    return _STATE.configured


def get_logger(name: str | None = None, **initial_values: Any) -> CrownLogger:
    """Return a logger named ``name`` (default: the calling module's ``__name__``).

    Configures logging from the settings on first use. ``initial_values`` are bound to every
    line of this logger.
    """
    if not _STATE.configured:
        with _CONFIG_LOCK:
            if not _STATE.configured:
                configure_logging()
    if name is None:
        try:
            name = sys._getframe(1).f_globals.get("__name__")
        except ValueError:
            name = None
    context: dict[str, Any] = {"logger": name}
    if initial_values:
        context.update(initial_values)
    return CrownLogger(_SINK, _PROCESSORS, context)
