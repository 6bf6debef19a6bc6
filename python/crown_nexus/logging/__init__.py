"""Structured, context-aware logging (guide §1), built on structlog.

``get_logger(name)`` returns a logger whose lines carry ``request_id`` and ``user_id`` from the
request context, the caller's file, line and function, and redact secrets. Development writes
coloured console lines; production writes one JSON line per event (rendered by the
``log_render`` hot path, Rust or orjson, as the processor chain's last step). See
:func:`configure_logging`; :mod:`crown_nexus.logging.config` lists what each module owns.
"""

from __future__ import annotations

from crown_nexus.logging.config import (
    CrownLogger,
    LogSink,
    StdlibBridgeHandler,
    build_processors,
    configure_logging,
    configure_logging_for_app,
    get_logger,
    is_configured,
)
from crown_nexus.logging.context import (
    bind_log_context,
    clear_user_id,
    get_current_request_id,
    get_current_user_id,
    get_log_context,
    request_context,
    reset_log_context,
    set_request_id,
    set_user_id,
)
from crown_nexus.logging.redaction import DEFAULT_REDACT_KEYS, REDACTED, Redactor
from crown_nexus.logging.timing import log_execution_time, log_execution_time_async

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "REDACTED",
    "CrownLogger",
    "LogSink",
    "Redactor",
    "StdlibBridgeHandler",
    "bind_log_context",
    "build_processors",
    "clear_user_id",
    "configure_logging",
    "configure_logging_for_app",
    "get_current_request_id",
    "get_current_user_id",
    "get_log_context",
    "get_logger",
    "is_configured",
    "log_execution_time",
    "log_execution_time_async",
    "request_context",
    "reset_log_context",
    "set_request_id",
    "set_user_id",
]
