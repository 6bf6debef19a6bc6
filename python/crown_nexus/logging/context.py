"""Request context carried in :mod:`contextvars`.

Every log line includes ``request_id`` and ``user_id`` from here. The values follow the task
that set them: they survive ``await``, are copied into tasks created afterwards
(``asyncio.create_task`` copies the context) and into threads started with
``contextvars.copy_context().run(...)`` (or ``asyncio.to_thread``), and never leak between
concurrent requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

__all__ = [
    "bind_log_context",
    "clear_user_id",
    "get_current_request_id",
    "get_current_user_id",
    "get_log_context",
    "request_context",
    "reset_log_context",
    "set_request_id",
    "set_user_id",
]

_request_id: ContextVar[str | None] = ContextVar("crown_nexus_request_id", default=None)
_user_id: ContextVar[str | None] = ContextVar("crown_nexus_user_id", default=None)
#: extra fields (trace_id, span_id, ...) added to every log line; replaced, never mutated
_extra: ContextVar[Mapping[str, Any] | None] = ContextVar("crown_nexus_log_context", default=None)


#: set by ``crown_nexus.core.tracing`` once a tracer provider is configured: returns the
#: ``(trace_id, span_id)`` of the current OpenTelemetry span, or ``None``
_span_ids: Callable[[], tuple[str, str] | None] | None = None


def set_span_ids_source(source: Callable[[], tuple[str, str] | None] | None) -> None:
    """Make every log line carry ``trace_id``/``span_id`` from ``source()`` (the current
    OpenTelemetry span) when it returns ids; ``None`` turns that off."""
    global _span_ids
    _span_ids = source


def log_context_fields() -> Mapping[str, Any] | None:
    """The extra log fields of the current context (not a copy: do not mutate), with the
    current span's ``trace_id``/``span_id`` when tracing is on and a span is current."""
    extra = _extra.get()
    source = _span_ids
    if source is None:
        return extra
    ids = source()
    if ids is None:
        return extra
    trace_id, span_id = ids
    if extra is None:
        return {"trace_id": trace_id, "span_id": span_id}
    if extra.get("span_id") == span_id and extra.get("trace_id") == trace_id:
        return extra
    return {**extra, "trace_id": trace_id, "span_id": span_id}


def _as_id(value: Any) -> str | None:
    return None if value is None else str(value)


def get_current_request_id() -> str | None:
    """Return the request id of the current context, or ``None`` outside a request."""
    return _request_id.get()


def get_current_user_id() -> str | None:
    """Return the user id of the current context, or ``None`` when no user is set."""
    return _user_id.get()


def set_request_id(request_id: Any) -> Token[str | None]:
    """Set the request id (stored as ``str``) for the current context; return the reset token."""
    return _request_id.set(_as_id(request_id))


def set_user_id(user_id: Any) -> Token[str | None]:
    """Set the user id (stored as ``str``) for the current context; return the reset token."""
    return _user_id.set(_as_id(user_id))


def clear_user_id() -> None:
    """Remove the user id from the current context (later log lines carry ``user_id: null``)."""
    _user_id.set(None)


def get_log_context() -> dict[str, Any]:
    """Return a copy of the extra fields bound with :func:`bind_log_context`."""
    return dict(_extra.get() or {})


def bind_log_context(**fields: Any) -> Token[Mapping[str, Any] | None]:
    """Add ``fields`` to every log line of the current context; return a token for
    :func:`reset_log_context`. Existing keys are overwritten."""
    current = _extra.get()
    merged = {**current, **fields} if current else dict(fields)
    return _extra.set(merged)


def reset_log_context(token: Token[Mapping[str, Any] | None]) -> None:
    """Restore the extra log fields to what they were before ``bind_log_context``."""
    _extra.reset(token)


@contextmanager
def request_context(request_id: Any = None, user_id: Any = None, **fields: Any) -> Iterator[None]:
    """Run a block with ``request_id`` / ``user_id`` (and any extra ``fields``) in the log context.

    On exit the previous values are restored, also when the block raises. ``request_id=None``
    keeps the surrounding request id; ``user_id=None`` keeps the surrounding user id.
    """
    rid_token = _request_id.set(_as_id(request_id)) if request_id is not None else None
    uid_token = _user_id.set(_as_id(user_id)) if user_id is not None else None
    extra_token = bind_log_context(**fields) if fields else None
    try:
        yield
    finally:
        if extra_token is not None:
            _extra.reset(extra_token)
        if uid_token is not None:
            try:
                _user_id.reset(uid_token)
            except ValueError:  # token from another context (generator moved); best effort
                _user_id.set(None)
        if rid_token is not None:
            try:
                _request_id.reset(rid_token)
            except ValueError:
                _request_id.set(None)
