"""Redaction of secrets in error context and audit details: the same keys and string scrubbers
as log events (:mod:`crown_nexus._redaction`, shared), plus any key the logging configuration adds.

Used by :mod:`crown_nexus.core.error` (which re-exports :func:`redact`) and by
:mod:`crown_nexus.core.audit`, which sits below the error package and so cannot import it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crown_nexus._redaction import (
    NOT_CONVERTED,
    REDACTED,
    SENSITIVE_KEY_PATTERN,
    is_sensitive_key,
    scrub_text,
    to_plain,
)

__all__ = ["REDACTED", "SENSITIVE_KEY_PATTERN", "redact"]

_MAX_DEPTH = 8


def _logging_redactor() -> Any:
    """The redactor the logging system is configured with (for keys its configuration adds)."""
    try:
        from crown_nexus.logging import config
    except ImportError:
        return None
    return getattr(getattr(config, "_STATE", None), "redactor", None)


def redact(value: Any) -> Any:
    """A copy of ``value`` with secrets replaced by ``[REDACTED]``, like log events are.

    The sensitive keys are the ones logging uses (one list, :mod:`crown_nexus._redaction`:
    password, passphrase, pwd, token, secret, authorization, api_key, cookie, card numbers, ...
    and any key the logging configuration adds); strings lose URL passwords, API keys,
    bearer/basic credentials, JWTs, card numbers and ``key=value`` secrets. pydantic models,
    dataclasses and exceptions become dicts first, so their fields are redacted by key.
    Mappings, lists, tuples and sets are walked to a bounded depth (deeper: ``[REDACTED]``);
    other objects are returned as they are. The input is never modified.
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
        return scrub_text(str.__str__(value))
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if is_sensitive_key(k):
                out[k] = REDACTED
            else:
                out[k] = _redact(v, _depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = [_redact(v, _depth + 1) for v in value]
        if isinstance(value, list):
            return items
        if isinstance(value, tuple):
            return tuple(items)
        try:
            return type(value)(items)
        except TypeError:  # a converted member (a dict) is not hashable
            return items
    try:
        plain = to_plain(value)
    except Exception:  # a model whose model_dump fails: nothing of it is shown
        return REDACTED
    if plain is not NOT_CONVERTED:
        return _redact(plain, _depth + 1)
    return value
