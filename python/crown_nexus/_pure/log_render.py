"""One structlog event dict -> one JSON line: the reference (pure Python, orjson) renderer.

``render(event_dict)`` writes any dict; :class:`LineRenderer` is the JSON log chain's last step
(see its docstring). The compiled twin ``crown_nexus_native.log_render`` produces the same bytes
for every input.

Canonical output
================

``render(event_dict)`` is exactly ``orjson.dumps(S(event_dict), option=orjson.OPT_APPEND_NEWLINE)``:
one compact JSON object, keys in insertion order, UTF-8 (non-ASCII is not escaped), followed by
``b"\\n"``. A non-dict argument is rendered as ``{"event": S(argument)}``. ``S`` (:func:`_sanitize`)
maps every value to plain JSON types and never raises:

=================================  ==========================================================
value                              rendered as
=================================  ==========================================================
str                                itself; each lone surrogate becomes U+FFFD
int in ``[-2**63, 2**64)``          the number
int outside that range             a string: ``str(v)``, or ``hex(v)`` past Python's digit
                                   limit
float                              orjson's shortest round-trip form; NaN and +-inf -> ``null``
bool, None                         ``true`` / ``false`` / ``null``
list, tuple, set, frozenset        an array (sets in iteration order)
dict                               an object; keys as below
datetime, date, time               ``v.isoformat()``
timedelta                          ``str(v)``
UUID                               ``str(v)``
Decimal                            ``str(v)``
Enum member                        ``S(v.value)``
bytes, bytearray, memoryview       UTF-8 decoded with ``backslashreplace``
BaseException                      ``{"type": qualname, "message": str(exc)}``
dataclass instance                 an object of its fields (``dataclasses.fields`` order)
pydantic model                     ``S(v.model_dump())``
subclass of str/int/float/list/    as its builtin base (``str.__str__(v)`` etc.)
tuple/dict
anything else                      ``str(v)``
=================================  ==========================================================

A container (array or object) that would be nested deeper than :data:`MAX_DEPTH` levels (the
top-level object is level 1) -- self-containing values included -- is replaced by the string
``"<max depth exceeded>"``. When converting a value raises (a broken ``__str__``, a property that
fails), it is rendered as ``"<unprintable {qualname}>"``.

Dict keys: a str stays itself (lone surrogates -> U+FFFD); ``None``, ``True``, ``False`` become
``"null"``, ``"true"``, ``"false"``; an int becomes its decimal string (hex past the digit limit);
a float ``repr(v)``; an Enum member the key of its value; anything else the string ``S`` gives it,
or ``str(v)`` when ``S`` gives a non-string.
When two keys of one dict give the same string, the later value wins, at the first key's
position (as in a Python dict).

When rendering fails anyway -- a conversion resizes a dict while it is being rendered, or the
interpreter runs out of recursion -- the line is ``{"event":"<unrenderable event>"}``.

The fast path hands the dict to orjson directly; anything orjson would render differently from
``S`` (datetimes, dataclasses, subclasses, big ints, non-str keys, surrogates, odd objects, too
deep) makes orjson raise, and the dict is then rendered through ``S``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import re
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import orjson

__all__ = ["MAX_DEPTH", "LineRenderer", "render"]

#: Deepest nesting of arrays/objects rendered (orjson's own limit; the top-level object is 1).
MAX_DEPTH: Final = 254

_DEPTH_MARKER: Final = "<max depth exceeded>"
_FAST_OPTIONS: Final = (
    orjson.OPT_APPEND_NEWLINE
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_INT_MIN: Final = -(2**63)
_INT_END: Final = 2**64
_SURROGATES: Final = re.compile("[\ud800-\udfff]")
_dumps = orjson.dumps


def _qualname(obj: Any) -> str:
    return type(obj).__qualname__


def _unprintable(obj: Any) -> str:
    return f"<unprintable {_qualname(obj)}>"


def _fix_str(value: str) -> str:
    """Return ``value`` with each lone surrogate replaced by U+FFFD (exact ``str``)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", value)
    return str.__str__(value)


def _safe_str(value: Any) -> str:
    try:
        text = str(value)
    except Exception:
        return _unprintable(value)
    if not isinstance(text, str):  # pragma: no cover - str() always returns a str
        return _unprintable(value)
    return _fix_str(text)


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # beyond sys.get_int_max_str_digits()
        return hex(value)


def _pydantic_base() -> Any:
    """Return ``pydantic.BaseModel`` if pydantic is imported (else None): no import here."""
    module = sys.modules.get("pydantic")
    return getattr(module, "BaseModel", None) if module is not None else None


def _key(key: Any) -> str:
    """Return the JSON object key for dict key ``key`` (see the module docstring)."""
    if type(key) is str:
        return _fix_str(key)
    if isinstance(key, enum.Enum):
        try:
            inner = key.value
        except Exception:
            return _unprintable(key)
        return _key(inner)
    if isinstance(key, str):
        return _fix_str(str.__str__(key))
    if key is None:
        return "null"
    if key is True:
        return "true"
    if key is False:
        return "false"
    if isinstance(key, int):
        return _int_text(int.__int__(key))
    if isinstance(key, float):
        return repr(float.__float__(key))
    converted = _sanitize(key, 0)
    if isinstance(converted, str):
        return converted
    return _safe_str(key)


def _convert(value: Any) -> Any:
    """Map an odd value to a plain one (not yet sanitized); may raise."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (_dt.timedelta, uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, BaseException):
        return {"type": _qualname(value), "message": _safe_str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    base = _pydantic_base()
    if base is not None and isinstance(value, base):
        return value.model_dump()
    return _safe_str(value)


def _sanitize(value: Any, depth: int) -> Any:
    """Return ``S(value)`` for a value enclosed by ``depth`` containers; never raises.

    The compiled twin calls this for every value that is not an exact str (without surrogates),
    int in range, float, bool, None, list, tuple or dict.
    """
    for _ in range(64):  # Enum values may chain; a bound keeps this total
        kind = type(value)
        if kind is str:
            return _fix_str(value)
        if kind is int:
            return value if _INT_MIN <= value < _INT_END else _int_text(value)
        if kind is float or kind is bool or value is None:
            return value
        if kind is list or kind is tuple:
            if depth >= MAX_DEPTH:
                return _DEPTH_MARKER
            inner = depth + 1
            return [_sanitize(v, inner) for v in value]
        if kind is dict:
            if depth >= MAX_DEPTH:
                return _DEPTH_MARKER
            inner = depth + 1
            return {_key(k): _sanitize(v, inner) for k, v in value.items()}
        try:
            value = _convert(value)
        except Exception:
            return _unprintable(value)
    return _safe_str(value)


def render(event_dict: dict[str, Any]) -> bytes:
    """Render one event dict as one compact JSON line ending in ``b"\\n"``; never raises.

    Byte-identical to the compiled twin for every input (see the module docstring for the
    canonical form of every odd value).
    """
    event: Any = event_dict
    if type(event) is dict:
        try:
            return _dumps(event, option=_FAST_OPTIONS)
        except orjson.JSONEncodeError:
            event = event_dict  # something orjson renders differently from S(): use S()
    elif not isinstance(event, dict):
        event = {"event": event}
    try:
        return _dumps(_sanitize(event, 0), option=orjson.OPT_APPEND_NEWLINE)
    except Exception:  # a dict resized while rendered, recursion exhausted
        return b'{"event":"<unrenderable event>"}\n'


class LineRenderer:
    """The log chain's last step: ``(logger, method_name, event_dict) -> bytes``, one JSON line.

    This reference implementation is the general path itself:
    ``general(method_name, event_dict, frame)`` with ``frame`` the calling frame (the logger
    method's), which ``crown_nexus.logging`` builds from its ``EventPreparer`` and
    :func:`render`. The compiled twin ``crown_nexus_native.log_render.LineRenderer`` takes the
    same collaborators and writes the same bytes without building the prepared dict:

    - core fields: the timestamp ``stamp(ms)`` of the epoch millisecond of
      ``clock["_wall_ns"]()`` (``now()`` when that clock gives no int), the level
      ``level_names.get(method_name, method_name)``, ``event_dict["logger"]``, the event text
      through ``event_cache``/``scrub_event``, ``request_id()``, ``user_id()``;
    - the context fields: ``extra_get()``, or ``context_fields()`` while
      ``context_hooks["_span_ids"]`` is set (tracing on);
    - the event's other fields redacted by ``redactor``: a key not in ``redactor._safe`` that
      ``redactor.is_sensitive_key`` calls sensitive gives ``"[REDACTED]"``; a str longer than
      12 characters or holding ``=`` or ``:``, or any value not an exact int/float/bool/None,
      goes through ``redactor.redact_value``;
    - the location of the first calling frame whose file is not in ``skip_files``.

    Whatever it does not cover (not a dict, ``exc_info``, a non-str, reserved or lone-surrogate
    key, a key the context also has, an event neither str nor None, context fields that are not
    a dict) it hands to ``general``. Exceptions of the collaborators propagate alike.
    """

    __slots__ = ("_general", "redactor")

    def __init__(
        self,
        redactor: Any,
        *,
        general: Callable[[Any, Any, Any], bytes],
        now: Callable[[], Any],
        clock: dict[str, Any],
        stamp: Callable[[int], Any],
        context_fields: Callable[[], Any],
        context_hooks: dict[str, Any],
        extra_get: Callable[[], Any],
        request_id: Callable[[], Any],
        user_id: Callable[[], Any],
        skip_files: Any,
        event_cache: dict[Any, Any],
        scrub_event: Callable[[Any], Any],
        level_names: dict[Any, Any],
    ) -> None:
        self.redactor = redactor
        self._general = general

    def __call__(self, logger: Any, method_name: Any, event_dict: Any) -> bytes:
        """Render ``event_dict`` as one JSON line (see the class)."""
        return self._general(method_name, event_dict, sys._getframe(1))
