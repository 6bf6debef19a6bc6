"""Configuration of crown-nexus logging: ``configure_logging``, ``get_logger`` and the chains.

Owns the choices: which processor chain (``build_processors``), where lines go, at which level,
with which redaction keys, configured once on the first ``get_logger`` or explicitly by
``configure_logging`` (also structlog's global configuration, so ``structlog.get_logger()`` and
``structlog.testing.capture_logs`` see the same chain). Loggers created earlier follow a
reconfiguration: they share the chain list and the sink.

Output: ``ENVIRONMENT=development`` gives coloured console lines with file and line
(:mod:`crown_nexus.logging.console`); ``production`` and ``test`` give one JSON line per event,
rendered by the chain's last step, the ``log_render`` hot path's ``LineRenderer``
(:mod:`crown_nexus.logging.render`). Each line is handed to the OS with ``os.write`` before the
log call returns, unless ``log_buffered`` is set. The other modules of this package: ``logger``
(the call path), ``processors`` (what a line holds), ``redaction``, ``render``, ``sink``,
``stdlib`` (the bridge for the ``logging`` module), ``state`` (the live configuration),
``context`` (request ids), ``timing``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from types import SimpleNamespace
from typing import IO, Any

import structlog

from crown_nexus.logging.console import console_location, console_renderer
from crown_nexus.logging.logger import CrownLogger
from crown_nexus.logging.processors import LEVEL_NAMES, LEVEL_NUMBERS, EventPreparer
from crown_nexus.logging.redaction import Redactor
from crown_nexus.logging.render import json_renderer
from crown_nexus.logging.sink import _SINK, LogSink
from crown_nexus.logging.state import _CONFIG_LOCK, _PROCESSORS, _STATE, LogFormat
from crown_nexus.logging.stdlib import StdlibBridgeHandler, install_stdlib_bridge

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

#: descriptors opened for ``configure_logging(file=...)`` (kept open: loggers may still write)
_OPENED_FILES: list[int] = []


def build_processors(
    log_format: LogFormat = "json",
    *,
    render_kind: str | None = None,
    redactor: Redactor | None = None,
    colors: bool = True,
) -> list[Any]:
    """Return a fresh processor chain for ``log_format``.

    json: ``[LineRenderer]``, the ``log_render`` hot path's renderer, which writes what
    ``EventPreparer`` followed by ``render`` write (see :func:`~crown_nexus.logging.render.json_renderer`);
    console: ``EventPreparer, console_location, ConsoleRenderer``. ``EventPreparer`` is
    ``add_core_fields`` + ``format_exception`` + ``Redactor`` in one pass. ``render_kind`` picks
    the ``log_render`` implementation (``"native"``/``"pure"``; default: accel's choice);
    ``colors=False`` makes the console renderer write plain text.
    """
    redactor = redactor or Redactor()
    if log_format == "console":
        return [
            EventPreparer(redactor, structured_exceptions=False),
            console_location,
            console_renderer(colors),
        ]
    return [json_renderer(redactor, render_kind)]


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
    colors = not getattr(settings, "no_color", False)
    chain = build_processors(fmt, render_kind=render_kind, redactor=redactor, colors=colors)

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
        structlog.configure(
            processors=_PROCESSORS,
            wrapper_class=CrownLogger,
            logger_factory=lambda *args, **kwargs: _SINK,
            cache_logger_on_first_use=False,
        )
        _STATE.configured = True
        _STATE.automatic = False
        if stdlib:
            install_stdlib_bridge(min_level)


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
    # Read directly, not through Settings: this runs only because the settings failed to load.
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
