"""What a log line holds: the level tables, the timestamp, the core fields, the caller's
location, structured exceptions and the event text, as structlog processors.

A processor is a callable ``(logger, method_name, event_dict) -> event_dict``. The one definition
of a line is :class:`EventPreparer` (``add_core_fields`` + ``format_exception`` + a
:class:`~crown_nexus.logging.redaction.Redactor`, fused into one pass) followed by the
``log_render`` renderer (:mod:`crown_nexus.logging.render`). A line is ordered ``timestamp,
level, logger, event, request_id, user_id, <context fields (trace ids)>, <event fields>,
filename, lineno, func_name[, exception]``. The console chain and ``crown_nexus.testing``'s
``capture_logs`` use the same :class:`EventPreparer`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from typing import Any, Final

from crown_nexus._redaction import REDACTED, luhn_valid, scrub_text
from crown_nexus.logging import context as _ctx
from crown_nexus.logging.redaction import (
    _SCALARS,
    DEFAULT_REDACT_KEYS,
    DEFAULT_REDACT_WORDS,
    Redactor,
    needs_scrub,
    safe_str,
)

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "DEFAULT_REDACT_WORDS",
    "LEVEL_NAMES",
    "LEVEL_NUMBERS",
    "REDACTED",
    "SKIP_FILES",
    "EventPreparer",
    "Redactor",
    "add_core_fields",
    "format_exception",
    "luhn_valid",
    "now_iso",
    "scrub_event",
    "scrub_text",
    "stamp_ms",
]

#: structlog method name -> level name written in the ``level`` field
LEVEL_NAMES: Final[dict[str, str]] = {
    "debug": "debug",
    "info": "info",
    "msg": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "exception": "error",
    "critical": "critical",
    "fatal": "critical",
}
LEVEL_NUMBERS: Final[dict[str, int]] = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "error": 40,
    "critical": 50,
}

# --------------------------------------------------------------------------- timestamps
#: wall clock of log timestamps in ns (``crown_nexus.testing.freeze_time`` replaces it)
_wall_ns = time.time_ns
_DIGITS3: Final = tuple(f"{i:03d}" for i in range(1000))
#: [millisecond of the cached stamp, the stamp, second of the cached prefix, the prefix]
_TS: list[Any] = [-1, "", -1, ""]


def stamp_ms(ms: int) -> str:
    """Return the ISO-8601 UTC stamp of epoch millisecond ``ms``: ``2026-01-02T03:04:05.123Z``
    (cached: the date part per second, the whole stamp per millisecond)."""
    ts = _TS
    if ms != ts[0]:
        sec = ms // 1000
        if sec != ts[2]:
            ts[3] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
            ts[2] = sec
        ts[1] = ts[3] + _DIGITS3[ms - sec * 1000] + "Z"
        ts[0] = ms
    return ts[1]  # type: ignore[no-any-return]


def now_iso() -> str:
    """Return the current time as ISO-8601 UTC with milliseconds: ``2026-01-02T03:04:05.123Z``
    (the log line's ``timestamp``; costs little more than ``time.time_ns()``)."""
    ms = _wall_ns() // 1_000_000
    ts = _TS
    return ts[1] if ms == ts[0] else stamp_ms(ms)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- core fields
_HERE = os.path.dirname(os.path.abspath(__file__))
#: frames in these files (every module of this package) are logging machinery, not the caller
SKIP_FILES: set[str] = {
    os.path.join(_HERE, name) for name in os.listdir(_HERE) if name.endswith(".py")
}
for _modname in ("structlog._base", "structlog._native", "structlog.testing", "logging"):
    # frames in structlog's and the stdlib's logging code are machinery too
    with contextlib.suppress(ImportError, AttributeError, TypeError):
        SKIP_FILES.add(importlib.import_module(_modname).__file__)  # type: ignore[arg-type]

_get_rid = _ctx._request_id.get
_get_uid = _ctx._user_id.get
_get_extra = _ctx.log_context_fields  # + the current span's ids when tracing is on
_getframe = sys._getframe


def add_core_fields(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Return a new event dict ordered ``timestamp, level, logger, event, request_id, user_id,
    <context fields>, <event fields>, filename, lineno, func_name``.

    ``request_id``/``user_id`` and extra context come from :mod:`crown_nexus.logging.context`;
    the caller location is the first frame outside the logging machinery (``sys._getframe``,
    no inspect/stack walk).
    """
    out: dict[str, Any] = {
        "timestamp": now_iso(),
        "level": LEVEL_NAMES.get(method_name, method_name),
        "logger": event_dict.pop("logger", None),
        "event": event_dict.pop("event", None),
        "request_id": _get_rid(),
        "user_id": _get_uid(),
    }
    extra = _get_extra()
    if extra:
        out.update(extra)
    if event_dict:
        out.update(event_dict)
    frame: Any = _getframe(1)
    skip = SKIP_FILES
    while frame is not None and frame.f_code.co_filename in skip:
        frame = frame.f_back
    if frame is not None:
        code = frame.f_code
        out["filename"] = code.co_filename
        out["lineno"] = frame.f_lineno
        out["func_name"] = code.co_name
    return out


# --------------------------------------------------------------------------- exceptions
def _exc_info_of(value: Any) -> tuple[Any, Any, Any] | None:
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3:
        return value if value[0] is not None else None
    if value:
        info = sys.exc_info()
        return info if info[0] is not None else None
    return None


def _frame_dict(frame: Any) -> dict[str, Any]:
    return {"filename": frame.filename, "lineno": frame.lineno, "name": frame.name}


def format_exception(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Replace ``exc_info`` (``True``, an exception or an exc_info tuple) by a structured
    ``exception`` field: ``{"type", "message", "frames": [{"filename", "lineno", "name"}...],
    "chain": [<causes as structlog dict tracebacks>]}``. Locals are never included."""
    if "exc_info" not in event_dict:
        return event_dict
    info = _exc_info_of(event_dict.pop("exc_info"))
    if info is None:
        return event_dict
    try:
        from structlog.tracebacks import extract

        trace = extract(*info, show_locals=False, use_rich=False)
        stacks = trace.stacks
        top = stacks[0]
        exc: dict[str, Any] = {
            "type": top.exc_type,
            "message": top.exc_value,
            "frames": [_frame_dict(f) for f in top.frames],
        }
        if len(stacks) > 1:
            exc["chain"] = [
                {
                    "type": s.exc_type,
                    "message": s.exc_value,
                    "is_cause": s.is_cause,
                    "frames": [_frame_dict(f) for f in s.frames],
                }
                for s in stacks[1:]
            ]
    except Exception:
        exc = {
            "type": getattr(info[0], "__name__", safe_str(info[0])),
            "message": safe_str(info[1]),
        }
    event_dict["exception"] = exc
    return event_dict


# --------------------------------------------------------------------------- the prepared event
class EventPreparer:
    """The default first processor: :func:`add_core_fields`, :func:`format_exception` and a
    :class:`Redactor` fused into one pass over the event (the log call's hot path).

    Produces exactly what those three would, in the same field order. With
    ``structured_exceptions=False`` (console output) ``exc_info`` is left for the renderer.
    """

    __slots__ = ("redactor", "structured_exceptions")

    def __init__(
        self, redactor: Redactor | None = None, *, structured_exceptions: bool = True
    ) -> None:
        self.redactor = redactor or Redactor()
        self.structured_exceptions = structured_exceptions

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        """Return the prepared (ordered, redacted) event dict."""
        event = event_dict.pop("event", None)
        name = event_dict.pop("logger", None)
        return self.prepare(method_name, name, event, event_dict, _getframe(1))

    def prepare(
        self,
        method_name: str,
        logger_name: Any,
        event: Any,
        fields: dict[str, Any],
        frame: Any,
    ) -> dict[str, Any]:
        """Build the ordered, redacted event from its parts; ``frame`` is where to start looking
        for the caller (frames of the logging machinery are skipped). ``fields`` is consumed."""
        redactor = self.redactor
        if type(event) is str:
            scrubbed = _EVENT_CACHE.get(event)
            if scrubbed is None:
                scrubbed = scrub_event(event)
        else:
            scrubbed = redactor.redact_value(event)
        out: dict[str, Any] = {
            "timestamp": now_iso(),
            "level": LEVEL_NAMES.get(method_name, method_name),
            "logger": logger_name,
            "event": scrubbed,
            "request_id": _get_rid(),
            "user_id": _get_uid(),
        }
        extra = _get_extra()
        if extra:
            out.update(extra)
        exc_info = fields.pop("exc_info", None) if "exc_info" in fields else None
        if fields:
            out.update(fields)
            safe = redactor._safe
            for key, value in fields.items():
                if key not in safe and redactor.is_sensitive_key(key):
                    out[key] = REDACTED
                    continue
                t = type(value)
                if t is str:
                    if needs_scrub(value):
                        out[key] = redactor.redact_value(value)  # scrub_text, for a str
                elif t not in _SCALARS:
                    out[key] = redactor.redact_value(value)
        skip = SKIP_FILES
        while frame is not None and frame.f_code.co_filename in skip:
            frame = frame.f_back
        if frame is not None:
            code = frame.f_code
            out["filename"] = code.co_filename
            out["lineno"] = frame.f_lineno
            out["func_name"] = code.co_name
        if exc_info is not None:
            if self.structured_exceptions:
                formatted = format_exception(None, method_name, {"exc_info": exc_info})
                if "exception" in formatted:
                    out["exception"] = redactor.redact_value(formatted["exception"])
            else:
                out["exc_info"] = exc_info
        return out


#: event message -> scrubbed message (messages are mostly constants; bounded)
_EVENT_CACHE: dict[str, str] = {}


def scrub_event(event: str) -> str:
    """Return the event text ``event`` scrubbed (:func:`scrub_text`), remembering it: a log
    message is nearly always a constant, so each is scrubbed once (up to 2048 kept)."""
    scrubbed = scrub_text(event)
    if len(_EVENT_CACHE) > 2048:
        _EVENT_CACHE.clear()
    _EVENT_CACHE[event] = scrubbed
    return scrubbed
