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
import dataclasses
import io
import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from sys import _getframe
from types import SimpleNamespace
from typing import IO, Any, Literal

import structlog
from structlog.exceptions import DropEvent

from crown_nexus.logging import context as _log_ctx
from crown_nexus.logging import processors as _P
from crown_nexus.logging.context import _request_id, _user_id, log_context_fields
from crown_nexus.logging.processors import (
    _EVENT_CACHE,
    _SCALARS,
    LEVEL_NAMES,
    LEVEL_NUMBERS,
    REDACTED,
    SKIP_FILES,
    EventPreparer,
    JSONRenderer,
    Redactor,
    _orjson_render,
    fallback_line,
)

__all__ = [
    "CrownLogger",
    "LogSink",
    "StdlibBridgeHandler",
    "build_processors",
    "configure_logging",
    "configure_logging_for_app",
    "get_logger",
    "is_configured",
]

LogFormat = Literal["json", "console"]


class _State:
    __slots__ = (
        "automatic",
        "configured",
        "log_format",
        "min_level",
        "preparer",
        "redactor",
        "render_kind",
        "renderer",
    )

    def __init__(self) -> None:
        self.configured = False
        #: True while the configuration came from first use or an app's settings, not from an
        #: explicit ``configure_logging`` call (which ``configure_logging_for_app`` never overrides)
        self.automatic = False
        #: the JSON chain's two processors, for the logger's fast path (None: no fast path)
        self.preparer: Any = None
        self.renderer: Any = None
        self.min_level = 20
        self.log_format: LogFormat = "json"
        self.render_kind: str | None = None
        self.redactor = Redactor()


_STATE = _State()
_get_rid = _request_id.get
_get_uid = _user_id.get
_get_extra = log_context_fields  # + the current span's ids when tracing is on
#: without a span-id source (tracing off) the extra fields are the context variable itself:
#: the fast path reads it with the C-level ``ContextVar.get`` instead of calling
#: ``log_context_fields`` (same value; one Python call less per line)
_extra_get = _log_ctx._extra.get
_TS = _P._TS
_SKIP = SKIP_FILES
_CONFIG_LOCK = threading.RLock()
#: whether the logger's fast path uses the renderer's fused ``render_event`` for the common
#: case (no bound fields, no extra context); tests switch it off to compare with the dict path
FUSED: list[bool] = [True]
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
        #: lines that could not be written (closed stream, full disk): counted, never raised
        self.failures = 0

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
            except Exception:  # a closed stream must not break logging
                self.failures += 1

    def flush(self) -> None:
        """Flush a buffered stream (called at interpreter exit)."""
        with self._lock:
            self._flush_locked()

    def write(self, line: Any) -> None:
        """Write one rendered line; never raises."""
        fd = self.fd
        if fd is not None and type(line) is bytes:
            try:
                written = os.write(fd, line)
                if written != len(line):  # partial write (pipe full, signal): finish it
                    view = memoryview(line)[written:]
                    while view:
                        view = view[os.write(fd, view) :]
            except Exception:  # a log call never raises; the failure is counted
                self.failures += 1
            return
        try:
            if isinstance(line, str):
                data = (line + "\n").encode("utf-8", "replace")
            elif isinstance(line, (bytes, bytearray)):
                data = bytes(line)
            else:
                data = _orjson_render(line if isinstance(line, dict) else {"event": line})
            fd = self.fd
            if fd is not None:
                written = os.write(fd, data)
                if written != len(data):  # partial write (pipe full, signal): finish it
                    view = memoryview(data)[written:]
                    while view:
                        view = view[os.write(fd, view) :]
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
        except Exception:  # a log call never raises; the failure is counted
            self.failures += 1

    # structlog calls the method named like the log method on the wrapped logger
    msg = debug = info = warning = warn = error = exception = critical = fatal = log = write


_SINK = LogSink()
atexit.register(_SINK.flush)
#: descriptors opened for ``configure_logging(file=...)`` (kept open: loggers may still write)
_OPENED_FILES: list[int] = []


def _bound_is_clean(bound: dict[str, Any], redactor: Redactor) -> bool:
    """Return True when redaction leaves every bound field as it is: no sensitive key, and
    each value a scalar or a str that scrubbing does not change (both immutable)."""
    try:
        for key, value in bound.items():
            if redactor.is_sensitive_key(key):
                return False
            t = type(value)
            if t is str:
                if _P.scrub_text(value) != value:
                    return False
            elif t not in _SCALARS:
                return False
    except Exception:
        return False
    return True


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


def _format_args(event: Any, args: Any, redactor: Redactor | None = None) -> str:
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
    return _P.scrub_text(text)


def _write(sink: LogSink, line: Any) -> None:
    """Hand one rendered line to ``sink`` (``os.write`` for bytes to a descriptor); never raises."""
    fd = sink.fd
    if fd is not None and type(line) is bytes:
        try:
            written = os.write(fd, line)
        except Exception:  # a log call never raises; the failure is counted
            sink.failures += 1
            return
        if written != len(line):  # partial write: the sink finishes it
            sink.write(line[written:])
        return
    sink.write(line)


def _level_method(method: str, number: int) -> Any:
    """Build the logger method for ``method`` at level ``number``.

    The body is the hot path: below the level it returns at once; with the default JSON chain
    it prepares, renders and ``os.write``s the line itself (same output as the generic
    processor loop, which handles every other chain).
    """
    exception = method == "exception"
    level_name = LEVEL_NAMES[method]

    def log_method(self: CrownLogger, event: Any = None, *args: Any, **kw: Any) -> None:
        state = _STATE
        if state.min_level > number:
            return
        if exception:
            kw.setdefault("exc_info", True)
        chain: Any = self._processors
        preparer = state.preparer
        if args or len(chain) != 2 or chain[0] is not preparer or preparer is None:
            self._emit(method, event, args, kw)
            return
        try:
            bound = self._bound
            check = kw  # the fields whose keys and values redaction has to look at
            if bound:
                kw = {**bound, **kw}
            if "exc_info" in kw or type(event) is not str:
                out = preparer.prepare(method, self._name, event, kw, _getframe(1))
            else:
                # EventPreparer.prepare inlined for the common case (str event, no exception);
                # same bytes (tests/logging/test_fast_path.py checks it)
                scrubbed = _EVENT_CACHE.get(event)
                if scrubbed is None:
                    scrubbed = _P.scrub_text(event)
                    if len(_EVENT_CACHE) > 2048:
                        _EVENT_CACHE.clear()
                    _EVENT_CACHE[event] = scrubbed
                ms = _P._wall_ns() // 1_000_000
                extra = _extra_get() if _log_ctx._span_ids is None else _get_extra()
                frame: Any = _getframe(1)
                code = frame.f_code
                if code.co_filename in _SKIP:
                    while frame is not None and frame.f_code.co_filename in _SKIP:
                        frame = frame.f_back
                    code = frame.f_code if frame is not None else None
                redactor = preparer.redactor
                fused = chain[1].render_event
                if fused is not None and kw:
                    # the renderer hands only str values over 12 characters to the redactor;
                    # a shorter one with "=" or ":" may hold a key=value secret
                    for value in kw.values():
                        if (
                            type(value) is str
                            and ("=" in value or ":" in value)
                            and len(value) < 13
                        ):
                            fused = None
                            break
                if fused is not None and not extra and not bound and FUSED[0]:
                    # the common case in one call: same bytes as the dict path below
                    try:
                        line = fused(
                            _TS[1] if ms == _TS[0] else _P.stamp_ms(ms),
                            level_name,
                            self._name,
                            scrubbed,
                            _get_rid(),
                            _get_uid(),
                            kw,
                            frame,
                            code,
                            redactor._safe,
                            redactor,
                        )
                    except Exception as exc:
                        line = fallback_line(
                            {"level": level_name, "logger": self._name, "event": event}, exc
                        )
                    if line is not None:
                        sink = self._logger
                        fd = sink.fd
                        if fd is not None:
                            try:
                                written = os.write(fd, line)
                            except Exception:  # a log call never raises; the failure is counted
                                sink.failures += 1
                                return
                            if written != len(line):  # partial write: the sink finishes it
                                sink.write(line[written:])
                            return
                        sink.write(line)
                        return
                # one dict, built by a literal (BUILD_MAP + DICT_UPDATE: cheaper than .update)
                if extra:
                    out = {
                        "timestamp": _TS[1] if ms == _TS[0] else _P.stamp_ms(ms),
                        "level": level_name,
                        "logger": self._name,
                        "event": scrubbed,
                        "request_id": _get_rid(),
                        "user_id": _get_uid(),
                        **extra,
                        **kw,
                    }
                else:
                    out = {
                        "timestamp": _TS[1] if ms == _TS[0] else _P.stamp_ms(ms),
                        "level": level_name,
                        "logger": self._name,
                        "event": scrubbed,
                        "request_id": _get_rid(),
                        "user_id": _get_uid(),
                        **kw,
                    }
                if bound:
                    # bound values were checked once per (logger, redactor): when none needs
                    # redaction only the call's own fields are looked at
                    clean = self._clean
                    if clean is None or clean[0] is not redactor:
                        clean = self._clean = (redactor, _bound_is_clean(bound, redactor))
                    if not clean[1]:
                        check = kw
                if check:
                    kw = check
                    if redactor._safe.issuperset(kw):
                        # every key known safe (one C-level pass): only values are checked,
                        # first without their keys; a value that needs work takes the keyed loop
                        for value in kw.values():
                            t = type(value)
                            if t is str:
                                if len(value) > 12 or "=" in value or ":" in value:
                                    break
                            elif t not in _SCALARS:
                                break
                        else:
                            kw = None  # type: ignore[assignment]  # "nothing to redact" marker
                        if kw is not None:
                            for key, value in kw.items():
                                t = type(value)
                                if t is str:
                                    if len(value) > 12 or "=" in value or ":" in value:
                                        out[key] = _P.scrub_text(value)
                                elif t not in _SCALARS:
                                    out[key] = redactor.redact_value(value)
                    else:
                        safe = redactor._safe
                        for key, value in kw.items():
                            if key not in safe and redactor.is_sensitive_key(key):
                                out[key] = REDACTED
                                continue
                            t = type(value)
                            if t is str:
                                if len(value) > 12 or "=" in value or ":" in value:
                                    out[key] = _P.scrub_text(value)
                            elif t not in _SCALARS:
                                out[key] = redactor.redact_value(value)
                if frame is not None:
                    out["filename"] = code.co_filename
                    out["lineno"] = frame.f_lineno
                    out["func_name"] = code.co_name
            try:
                line = chain[1].render(out)
            except Exception as exc:
                line = fallback_line(out, exc)
        except Exception as exc:
            line = fallback_line(
                {"level": LEVEL_NAMES.get(method, method), "logger": self._name, "event": event},
                exc,
            )
        _write(self._logger, line)

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
        self._name = context.get("logger")
        self._bound = {k: v for k, v in context.items() if k != "logger"}
        #: (redactor, whether no bound value needs redaction under it), computed on first use
        self._clean: tuple[Any, bool] | None = None

    def _emit(self, method: str, event: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        event_dict: Any = None
        try:
            if args:
                first = next(iter(self._processors), None)
                event = _format_args(event, args, getattr(first, "redactor", None))
            event_dict = {**self._context, **kw}
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
            except Exception:  # never raise from a log call; count it
                _SINK.failures += 1

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


_STDLIB_METHODS = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}


class StdlibBridgeHandler(logging.Handler):
    """A stdlib ``logging`` handler that writes records through crown-nexus logging.

    Installed on the root logger by :func:`configure_logging` (``stdlib=True``), so libraries
    that log with ``logging.getLogger(...)`` produce the same lines (JSON or console, request
    ids, redaction) as ``get_logger``. The caller location is the code that called the stdlib
    logger. Never raises.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Forward ``record`` (message, level, exception) to ``get_logger(record.name)``."""
        try:
            number = record.levelno
            method = _STDLIB_METHODS.get(number)
            if method is None:
                method = "debug"
                for level, name in _STDLIB_METHODS.items():
                    if number >= level:
                        method = name
            kw: dict[str, Any] = {}
            if record.exc_info:
                kw["exc_info"] = record.exc_info
            # the message is formatted here with its arguments redacted, then scrubbed
            message = _format_args(record.msg, record.args) if record.args else str(record.msg)
            getattr(get_logger(record.name), method)(message, **kw)
        except Exception:  # logging must never raise; count it
            _SINK.failures += 1


def _install_stdlib_bridge(min_level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, StdlibBridgeHandler):
            root.removeHandler(handler)
    root.addHandler(StdlibBridgeHandler())
    if root.level > min_level or root.level == logging.NOTSET:
        root.setLevel(min_level)


def console_location(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Console processor: fold ``filename``/``lineno``/``func_name`` into one readable
    ``at="path/relative/to/cwd.py:12 in func"`` field."""
    filename = event_dict.pop("filename", None)
    lineno = event_dict.pop("lineno", None)
    func = event_dict.pop("func_name", None)
    if filename is not None:
        try:
            rel = os.path.relpath(filename)
            shown = filename if rel.startswith("..") else rel
        except ValueError:  # another drive (Windows)
            shown = filename
        event_dict["at"] = f"{shown}:{lineno} in {func}"
    return event_dict


def scrubbed_traceback(sio: IO[str], exc_info: Any) -> None:
    """Console exception formatter: structlog's plain traceback with its text scrubbed
    (:func:`~crown_nexus.logging.processors.scrub_text`: a DSN password or token in an
    exception message never reaches the console)."""
    buffer = io.StringIO()
    structlog.dev.plain_traceback(buffer, exc_info)
    sio.write(_P.scrub_text(buffer.getvalue()))


def _console_renderer() -> Any:
    colors = "NO_COLOR" not in os.environ
    return structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=scrubbed_traceback)


def build_processors(
    log_format: LogFormat = "json",
    *,
    render_kind: str | None = None,
    redactor: Redactor | None = None,
) -> list[Any]:
    """Return a fresh processor chain for ``log_format``.

    json: ``EventPreparer, JSONRenderer(render_kind)``; console: ``EventPreparer, ConsoleRenderer``
    (``EventPreparer`` = ``add_core_fields`` + ``format_exception`` + ``Redactor`` in one pass). ``render_kind`` picks the
    ``log_render`` implementation (``"native"``/``"pure"``; default: accel's choice).
    """
    redactor = redactor or Redactor()
    if log_format == "console":
        return [
            EventPreparer(redactor, structured_exceptions=False),
            console_location,
            _console_renderer(),
        ]
    return [EventPreparer(redactor), JSONRenderer(render_kind)]


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
    fd: int | None = None,
    file: str | os.PathLike[str] | None = None,
    log_format: LogFormat | None = None,
    level: int | str | None = None,
    render_kind: str | None = None,
    buffered: bool | None = None,
    redact_add: Iterable[str] = (),
    redact_remove: Iterable[str] = (),
    stdlib: bool = True,
) -> None:
    """Configure crown-nexus logging (and structlog's global chain) and return.

    Defaults come from ``settings`` (``crown_nexus.core.config.settings`` when ``None``):
    ``ENVIRONMENT`` (development → console, production/test → JSON), ``log_level``,
    ``log_buffered``. Keyword arguments override them: ``stream`` (a text or binary stream) or
    ``fd`` (a file descriptor written with ``os.write``; default: the process's stdout's) or
    ``file`` (a path opened for appending, default ``settings.log_file`` when that exists),
    ``log_format`` (``"json"``/``"console"``),
    ``level``, ``render_kind`` (``"native"``/``"pure"``), ``buffered``, and redaction keys to
    add or remove. With ``stdlib`` (default) records of the standard ``logging`` module go
    through the same pipeline (a :class:`StdlibBridgeHandler` on the root logger). Calling it
    again reconfigures; loggers created earlier follow.
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

    if file is None and stream is None and fd is None:
        file = getattr(settings, "log_file", None) or None
    if file is not None and stream is None and fd is None:
        fd = os.open(os.fspath(file), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        _OPENED_FILES.append(fd)

    with _CONFIG_LOCK:
        if stream is not None:
            _SINK.target(stream=stream, buffered=use_buffer)
        elif fd is not None:
            _SINK.target(fd=fd, buffered=use_buffer)
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
        json_chain = fmt == "json" and isinstance(chain[-1], JSONRenderer)
        _STATE.preparer = chain[0] if json_chain else None
        _STATE.renderer = chain[-1] if json_chain else None
        structlog.configure(
            processors=_PROCESSORS,
            wrapper_class=CrownLogger,
            logger_factory=lambda *args, **kwargs: _SINK,
            cache_logger_on_first_use=False,
        )
        _STATE.configured = True
        _STATE.automatic = False
        if stdlib:
            _install_stdlib_bridge(min_level)


def is_configured() -> bool:
    """Return True once logging has been configured (explicitly or by the first ``get_logger``)."""
    return _STATE.configured


def configure_logging_for_app(settings: Any) -> bool:
    """Configure logging from an app's ``settings`` unless it was configured explicitly.

    ``setup_app`` calls it, so an app built with ``Settings(ENVIRONMENT="production")`` writes
    JSON lines (``development``: console lines) at its ``log_level`` even when the settings loaded
    from the environment say otherwise. A process that called :func:`configure_logging` itself
    (its own set-up, tests) keeps that configuration. Returns whether logging was configured.
    """
    with _CONFIG_LOCK:
        if _STATE.configured and not _STATE.automatic:
            return False
    configure_logging(settings)
    _STATE.automatic = True
    return True


def _auto_configure() -> None:
    """First-use configuration; never raises (settings that fail to load fall back to the
    environment's ``ENVIRONMENT`` and INFO, so a logger is always available)."""
    try:
        configure_logging()
        _STATE.automatic = True
        return
    except Exception as exc:  # e.g. production settings refusing a default secret
        error = exc
    env = os.environ.get("ENVIRONMENT", "production").strip().lower()
    fallback = SimpleNamespace(
        ENVIRONMENT=SimpleNamespace(value=env), log_level="INFO", log_buffered=False
    )
    configure_logging(fallback)
    _STATE.automatic = True
    get_logger("crown_nexus.logging").warning(
        "Logging configured with defaults: settings could not be loaded",
        error=type(error).__name__,
    )


def get_logger(name: str | None = None, **initial_values: Any) -> CrownLogger:
    """Return a logger named ``name`` (default: the calling module's ``__name__``).

    Configures logging from the settings on first use. ``initial_values`` are bound to every
    line of this logger.
    """
    if not _STATE.configured:
        with _CONFIG_LOCK:
            if not _STATE.configured:
                _auto_configure()
    if name is None:
        try:
            name = sys._getframe(1).f_globals.get("__name__")
        except ValueError:
            name = None
    context: dict[str, Any] = {"logger": name}
    if initial_values:
        context.update(initial_values)
    return CrownLogger(_SINK, _PROCESSORS, context)
