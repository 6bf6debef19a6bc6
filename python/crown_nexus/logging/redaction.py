"""Redaction of log events: the :class:`Redactor` and the keys it treats as secret.

Owns the rule every log line follows: which keys are sensitive (the one list shared with error
reports, :mod:`crown_nexus._redaction`), how a value is made safe (strings scrubbed of
URL passwords, tokens, card numbers and ``key=value`` secrets; containers, models, dataclasses
and exceptions walked), and the short-value shortcut (a str of 12 characters or fewer without
``=`` or ``:`` cannot hold a secret the scrubbers find). :class:`Redactor` is also a structlog
processor over a whole event dict.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import enum
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from crown_nexus import _redaction as _R
from crown_nexus._redaction import (
    NOT_CONVERTED,
    REDACTED,
    SENSITIVE_KEY_FRAGMENTS,
    SENSITIVE_KEY_WORDS,
    scrub_text,
    to_plain,
)

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "DEFAULT_REDACT_WORDS",
    "REDACTED",
    "Redactor",
    "needs_scrub",
    "safe_str",
]

#: Key fragments whose values are redacted (matched ASCII case-insensitively anywhere in the key,
#: ``-`` read as ``_``: ``x-api-key``, ``new_password`` and ``csrf_token`` all match). The one list
#: shared with error reports (:mod:`crown_nexus._redaction`).
DEFAULT_REDACT_KEYS: Final[frozenset[str]] = SENSITIVE_KEY_FRAGMENTS
#: Short words whose values are redacted when they are a whole part of the key (``pwd``,
#: ``user_pin``; not ``company``).
DEFAULT_REDACT_WORDS: Final[frozenset[str]] = SENSITIVE_KEY_WORDS


def safe_str(value: Any) -> str:
    """``str(value)``, else ``repr(value)``, else ``<unprintable TypeName>``; never raises."""
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


def needs_scrub(value: str) -> bool:
    """True when :func:`scrub_text` may change the str ``value``: longer than 12 characters, or
    holding ``=`` or ``:`` (a shorter value can only hold a ``key=value`` or ``scheme:`` secret).
    The renderers redact exactly the str values this is true for."""
    return len(value) > 12 or "=" in value or ":" in value


_SCALARS: Final = (int, float, bool, type(None))
_MAX_DEPTH: Final = 16


#: values rendered as they are: their text is fixed by their type, never a secret
_PLAIN_ODD: Final = (int, float, _dt.date, _dt.time, _dt.timedelta, uuid.UUID, Decimal)


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
        name = key if isinstance(key, str) else safe_str(key)
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
            elif type(value) is str and not needs_scrub(value):
                continue
            else:
                event_dict[key] = redact(value)
        return event_dict


def _unprintable(value: Any) -> str:
    return f"<unprintable {type(value).__qualname__}>"
