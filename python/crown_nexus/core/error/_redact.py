"""Redaction of secrets in error context (keys like password/token, card numbers in strings)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "SENSITIVE_KEY_PATTERN", "redact"]

REDACTED = "[REDACTED]"

#: Keys whose values are never reported: these words anywhere in the key (case-insensitive) ...
SENSITIVE_KEY_PATTERN = re.compile(
    r"pass(?:word|wd|phrase)|token|secret|authori[sz]ation|api[_-]?key|cookie|credential"
    r"|private[_-]?key|card[_-]?(?:number|no)|cvv"
    # ... and these short ones as a whole word (so "company" or "span" stay visible)
    r"|(?:^|[_\-.])(?:pwd|pass|pan|card|cvc|pin)(?:$|[_\-.])",
    re.IGNORECASE,
)

_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_MAX_DEPTH = 8


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _mask_cards(text: str) -> str:
    def sub(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            return REDACTED
        return match.group(0)

    return _CARD.sub(sub, text)


def _logging_redactor() -> Any:
    """The redactor the logging system is configured with (its keys, bearer tokens, JWTs)."""
    try:
        from crown_nexus.logging import config
    except ImportError:
        return None
    return getattr(getattr(config, "_STATE", None), "redactor", None)


def redact(value: Any) -> Any:
    """A copy of ``value`` with secrets replaced by ``[REDACTED]``, like log events are.

    Values under sensitive keys (password, token, secret, authorization, api_key, cookie, card
    numbers, ... and any key the logging configuration adds) and Luhn-valid card numbers, bearer
    tokens and JWTs inside strings are redacted. Mappings, lists, tuples and sets are walked to a
    bounded depth; other objects are returned as they are. The input is never modified.
    """
    out = _redact(value)
    logging_redactor = _logging_redactor()
    if logging_redactor is not None:
        try:
            out = logging_redactor.redact_value(out)
        except Exception:  # noqa: S110 - the local pass above already ran
            pass
    return out


def _redact(value: Any, _depth: int = 0) -> Any:
    if _depth > _MAX_DEPTH:
        return REDACTED
    if isinstance(value, str):
        return _mask_cards(value) if len(value) >= 13 else value
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and SENSITIVE_KEY_PATTERN.search(k):
                out[k] = REDACTED
            else:
                out[k] = _redact(v, _depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = [_redact(v, _depth + 1) for v in value]
        return items if isinstance(value, list) else type(value)(items)
    return value
