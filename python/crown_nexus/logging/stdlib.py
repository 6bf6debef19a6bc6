"""Records of the standard ``logging`` module, written through crown-nexus logging.

Owns the bridge: :class:`StdlibBridgeHandler` on the root logger turns each ``LogRecord`` into a
call on a :class:`~crown_nexus.logging.logger.CrownLogger` named like the record's logger, so
libraries that log with ``logging.getLogger(...)`` produce the same lines (JSON or console,
request ids, redaction) as ``get_logger``.
"""

from __future__ import annotations

import logging
from typing import Any

from crown_nexus.logging.logger import CrownLogger, format_args
from crown_nexus.logging.sink import _SINK
from crown_nexus.logging.state import _PROCESSORS

__all__ = ["StdlibBridgeHandler", "install_stdlib_bridge"]


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
            message = format_args(record.msg, record.args) if record.args else str(record.msg)
            logger = CrownLogger(_SINK, _PROCESSORS, {"logger": record.name})
            getattr(logger, method)(message, **kw)
        except Exception:  # logging must never raise; count it
            _SINK.failures += 1


def install_stdlib_bridge(min_level: int) -> None:
    """Put one :class:`StdlibBridgeHandler` on the root logger (replacing an earlier one) and
    lower the root level to ``min_level`` when it is higher or unset."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, StdlibBridgeHandler):
            root.removeHandler(handler)
    root.addHandler(StdlibBridgeHandler())
    if root.level > min_level or root.level == logging.NOTSET:
        root.setLevel(min_level)
