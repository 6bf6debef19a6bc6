"""The processors of crown-nexus's log chain (each a plain structlog processor).

A processor is a callable ``(logger, method_name, event_dict) -> event_dict``; the chain is a
list (see :func:`crown_nexus.logging.config.build_processors`). The JSON chain is::

    EventPreparer -> JSONRenderer

``EventPreparer`` is ``add_core_fields``, ``format_exception`` and ``Redactor`` (each also usable
alone) fused into one pass. A line is ordered ``timestamp, level, logger, event, request_id,
user_id, <context fields (trace ids)>, <event fields>, filename, lineno, func_name[, exception]``.
The final step is the hot path ``accel.get("log_render").render(event_dict) -> bytes`` (Rust or
orjson); it never raises, and a failure anywhere earlier in the chain is turned into a minimal
line (:func:`fallback_line`) by the logger itself. ``CrownLogger`` runs this exact chain inline
for the common case (same bytes; a test checks it).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import enum
import importlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import orjson

from crown_nexus import _redaction as _R
from crown_nexus._redaction import (
    NOT_CONVERTED,
    REDACTED,
    SENSITIVE_KEY_FRAGMENTS,
    SENSITIVE_KEY_WORDS,
    luhn_valid,
    scrub_text,
    to_plain,
)
from crown_nexus.logging import context as _ctx

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "DEFAULT_REDACT_WORDS",
    "LEVEL_NAMES",
    "LEVEL_NUMBERS",
    "REDACTED",
    "EventPreparer",
    "JSONRenderer",
    "Redactor",
    "add_core_fields",
    "fallback_line",
    "format_exception",
    "luhn_valid",
    "now_iso",
    "scrub_text",
]

#: Key fragments whose values are redacted (matched ASCII case-insensitively anywhere in the key,
#: ``-`` read as ``_``: ``x-api-key``, ``new_password`` and ``csrf_token`` all match). The one list
#: shared with error reports (:mod:`crown_nexus._redaction`).
DEFAULT_REDACT_KEYS: Final[frozenset[str]] = SENSITIVE_KEY_FRAGMENTS
#: Short words whose values are redacted when they are a whole part of the key (``pwd``,
#: ``user_pin``; not ``company``).
DEFAULT_REDACT_WORDS: Final[frozenset[str]] = SENSITIVE_KEY_WORDS

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
    return stamp_ms(_wall_ns() // 1_000_000)


# --------------------------------------------------------------------------- core fields
_HERE = os.path.dirname(os.path.abspath(__file__))
#: frames in these files are logging machinery, not the caller
SKIP_FILES: set[str] = {
    os.path.join(_HERE, "processors.py"),
    os.path.join(_HERE, "config.py"),
    os.path.join(_HERE, "timing.py"),
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


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


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
            "type": getattr(info[0], "__name__", _safe_str(info[0])),
            "message": _safe_str(info[1]),
        }
    event_dict["exception"] = exc
    return event_dict


# --------------------------------------------------------------------------- redaction
#: the string scrubbers live in :mod:`crown_nexus._redaction` (shared with error reports);
#: ``scrub_text`` and ``luhn_valid`` are re-exported here
_VALUE_PATTERN = _R.TEXT_PATTERN
_replace_match = _R.replace_match

_SCALARS: Final = (int, float, bool, type(None))
_MAX_DEPTH: Final = 16


#: values rendered as they are: their text is fixed by their type, never a secret
_PLAIN_ODD: Final = (int, float, _dt.date, _dt.time, _dt.timedelta, uuid.UUID, Decimal)


def _pair_scrubbed(value: str) -> bool:
    """True when a str of 12 characters or fewer may change under :func:`scrub_text`."""
    return "=" in value or ":" in value


class Redactor:
    """Processor that replaces secret values by ``"[REDACTED]"``, recursively.

    A value is redacted when its key contains one of ``keys`` or has one of ``words`` as a
    whole part (ASCII case-insensitive, ``-`` read as ``_``); strings anywhere go through
    :func:`scrub_text` (URL passwords, API keys, bearer/basic credentials, JWTs, card numbers,
    ``key=value`` pairs with a sensitive key). pydantic models, dataclasses and exceptions are
    turned into dicts first, so their fields are redacted by key. ``add``/``remove`` adjust the
    default lists. Containers are copied, never mutated.
    """

    __slots__ = ("_cache", "_fragments", "_pattern", "_safe", "_skip_top", "_words")

    def __init__(
        self,
        keys: Iterable[str] = DEFAULT_REDACT_KEYS,
        *,
        words: Iterable[str] = DEFAULT_REDACT_WORDS,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
    ) -> None:
        norm = {k.lower().replace("-", "_") for k in keys}
        norm |= {k.lower().replace("-", "_") for k in add}
        gone = {k.lower().replace("-", "_") for k in remove}
        norm -= gone
        short = {w.lower().replace("-", "_") for w in words} - gone
        self._fragments: tuple[str, ...] = tuple(sorted(norm))
        self._words: tuple[str, ...] = tuple(sorted(short))
        if norm == set(SENSITIVE_KEY_FRAGMENTS) and short == set(SENSITIVE_KEY_WORDS):
            self._pattern = _R.SENSITIVE_KEY_PATTERN
        else:
            self._pattern = _R.key_pattern(norm, short)
        self._cache: dict[Any, bool] = {}
        #: str keys known not to be sensitive (a set lookup on the hot path)
        self._safe: set[str] = set()
        # core fields the chain itself wrote: never treated as secrets by key
        self._skip_top = frozenset(
            {
                "timestamp",
                "level",
                "logger",
                "request_id",
                "user_id",
                "filename",
                "lineno",
                "func_name",
            }
        )

    @property
    def keys(self) -> tuple[str, ...]:
        """The normalized key fragments this redactor matches anywhere in a key."""
        return self._fragments

    @property
    def words(self) -> tuple[str, ...]:
        """The normalized short words this redactor matches as a whole part of a key."""
        return self._words

    def is_sensitive_key(self, key: Any) -> bool:
        """Return True when values under ``key`` are redacted."""
        cache = self._cache
        hit = cache.get(key)
        if hit is not None:
            return hit
        name = key if isinstance(key, str) else _safe_str(key)
        verdict = self._pattern.search(name.replace("-", "_")) is not None
        if len(cache) > 4096:
            cache.clear()
            self._safe.clear()
        if not verdict and type(key) is str:
            self._safe.add(key)
        with contextlib.suppress(TypeError):  # an unhashable key object is not cached
            cache[key] = verdict
        return verdict

    def redact_value(self, value: Any, depth: int = 0) -> Any:
        """Return ``value`` with secrets inside strings and containers redacted.

        Strings are scrubbed; mappings lose the values of sensitive keys; lists, tuples and
        sets become lists; pydantic models, dataclasses and exceptions become dicts (then
        redacted); bytes and other objects become their (scrubbed) text, as the renderer would
        write them. Numbers, dates, UUIDs and Decimals stay as they are. A value nested deeper
        than 16 levels is replaced by ``"[REDACTED]"`` (it is not inspected).
        """
        t = type(value)
        if t is str:
            return scrub_text(value)
        if t in _SCALARS:
            return value
        if depth >= _MAX_DEPTH:
            return REDACTED  # nested too deep to inspect: never shown unchecked
        if isinstance(value, Mapping):
            sensitive = self.is_sensitive_key
            try:
                items = list(value.items())
            except Exception:
                return value
            return {
                k: (REDACTED if sensitive(k) else self.redact_value(v, depth + 1)) for k, v in items
            }
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.redact_value(v, depth + 1) for v in value]
        if isinstance(value, enum.Enum):
            try:
                inner = value.value
            except Exception:
                return _unprintable(value)
            return self.redact_value(inner, depth + 1)
        if isinstance(value, str):
            return scrub_text(str.__str__(value))
        if isinstance(value, _PLAIN_ODD):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            try:
                return scrub_text(bytes(value).decode("utf-8", "backslashreplace"))
            except Exception:
                return _unprintable(value)
        try:
            plain = to_plain(value)
        except Exception:  # a model_dump that fails: its text, scrubbed
            plain = NOT_CONVERTED
        if plain is not NOT_CONVERTED:
            return self.redact_value(plain, depth + 1)
        try:
            return scrub_text(str(value))
        except Exception:
            return _unprintable(value)

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        """Redact ``event_dict`` in place (top level) and return it."""
        skip = self._skip_top
        sensitive = self.is_sensitive_key
        redact = self.redact_value
        for key, value in event_dict.items():
            if key in skip:
                continue
            if sensitive(key):
                event_dict[key] = REDACTED
            elif type(value) is str and len(value) < 13 and not _pair_scrubbed(value):
                continue
            else:
                event_dict[key] = redact(value)
        return event_dict


def _unprintable(value: Any) -> str:
    return f"<unprintable {type(value).__qualname__}>"


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
                scrubbed = scrub_text(event)
                if len(_EVENT_CACHE) > 2048:
                    _EVENT_CACHE.clear()
                _EVENT_CACHE[event] = scrubbed
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
                    if len(value) > 12 or "=" in value or ":" in value:
                        out[key] = scrub_text(value)
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


# --------------------------------------------------------------------------- rendering
def _fallback_default(obj: Any) -> Any:
    return _safe_str(obj)


def _orjson_render(event_dict: Mapping[str, Any]) -> bytes:
    """Used only while ``crown_nexus._pure.log_render`` is not installed."""
    try:
        return orjson.dumps(
            event_dict,
            default=_fallback_default,
            option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS,
        )
    except Exception as exc:
        return fallback_line(event_dict, exc)


def load_render(kind: str | None = None) -> Callable[[Mapping[str, Any]], bytes]:
    """Return the ``render`` function of the ``log_render`` hot path.

    ``kind`` (``"native"``/``"pure"``) picks a specific implementation; ``None`` takes the one
    :mod:`crown_nexus.accel` chose. Raises ``KeyError`` for a kind that is not available.
    """
    from crown_nexus import accel

    try:
        impls = accel.available("log_render")
    except ImportError:
        if kind in (None, "pure"):
            return _orjson_render
        raise KeyError(kind) from None
    if kind is None:
        return accel.get("log_render").render  # type: ignore[no-any-return]
    return impls[kind].render  # type: ignore[no-any-return]


def load_render_event(kind: str | None = None) -> Callable[..., bytes | None] | None:
    """Return the fused ``render_event`` of the ``log_render`` implementation that
    :func:`load_render` picks for ``kind`` (None when that implementation has none)."""
    from crown_nexus import accel

    try:
        impls = accel.available("log_render")
    except ImportError:
        return None
    module = accel.get("log_render") if kind is None else impls.get(kind)
    return getattr(module, "render_event", None)


def fallback_line(event_dict: Any, error: BaseException | None = None) -> bytes:
    """Return a minimal JSON line for an event that could not be processed or rendered.

    Keeps ``timestamp``, ``level``, ``logger``, ``event`` (as text) and the request/user ids, and
    names the failure in ``log_error``. Never raises.
    """
    try:
        get = event_dict.get if isinstance(event_dict, Mapping) else (lambda k, d=None: d)
        line: dict[str, Any] = {
            "timestamp": now_iso(),
            "level": _safe_str(get("level", "error")),
            "logger": _safe_str(get("logger", None)),
            "event": scrub_text(_safe_str(get("event", None))),
            "request_id": _get_rid(),
            "user_id": _get_uid(),
        }
        if error is not None:
            line["log_error"] = type(error).__name__
        return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
    except Exception:
        return b'{"event":"<log event could not be rendered>","log_error":"fallback"}\n'


class JSONRenderer:
    """Final processor: ``event_dict -> bytes`` (one JSON object and ``b"\\n"``) via the
    ``log_render`` hot path. Never raises: a renderer failure yields :func:`fallback_line`."""

    __slots__ = ("kind", "render", "render_event")

    def __init__(self, kind: str | None = None) -> None:
        self.render = load_render(kind)
        #: the same implementation's fused entry, used by the logger's fast path (or None)
        self.render_event = load_render_event(kind)
        self.kind = kind

    def __call__(self, logger: Any, method_name: str, event_dict: Mapping[str, Any]) -> bytes:
        """Render ``event_dict`` as one JSON line."""
        try:
            return self.render(event_dict)
        except Exception as exc:
            return fallback_line(event_dict, exc)
