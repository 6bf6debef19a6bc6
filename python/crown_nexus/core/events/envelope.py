"""The event envelope: the dict handlers receive and its JSON, built and checked in one place.

Owns the handler shape ``{"id", "name", "data", "context", "timestamp"}`` (SPEC §6): event ids
(:func:`new_event_id`, also the default id of typed domain events), the millisecond UTC
timestamp, the context a publish adds (default context, the current ``request_id``, the W3C
``traceparent``), the one JSON encoder of events (:func:`encode`: orjson, dataclasses, pydantic
models and sets; nothing else) and the checks a published event passes (its name, a JSON-ready
payload and context, the size limit), raising :class:`EventPublishException`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from crown_nexus.core.events.exceptions import EventConfigurationException, EventPublishException
from crown_nexus.core.events.subscriptions import ALL_EVENTS
from crown_nexus.core.tracing import inject_context, tracing_enabled
from crown_nexus.logging import get_current_request_id

__all__ = [
    "MAX_EVENT_NAME_LENGTH",
    "build_event",
    "checked_context",
    "decode",
    "encode",
    "new_event_id",
    "utc_iso",
]

MAX_EVENT_NAME_LENGTH = 255


def new_event_id() -> str:
    """A fresh random event id (32 lowercase hex characters, 128 random bits)."""
    return os.urandom(16).hex()


_ts_cache: list[Any] = [-1, ""]


def utc_iso() -> str:
    """Now as ISO-8601 UTC with millisecond precision (``...T12:00:00.123+00:00``).

    The string is reused within one millisecond (a burst of events formats it once).
    """
    ms = time.time_ns() // 1_000_000
    if ms != _ts_cache[0]:
        _ts_cache[0] = ms
        _ts_cache[1] = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return str(_ts_cache[1])


def _default(obj: Any) -> Any:
    """orjson fallback: pydantic models and sets; anything else is not serializable."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def encode(obj: Any) -> bytes:
    """``obj`` as event JSON; ``TypeError`` for what JSON cannot carry."""
    return orjson.dumps(obj, default=_default)


def decode(data: bytes | str) -> Any:
    """Event JSON back to Python (what handlers receive)."""
    return orjson.loads(data)


def checked_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """``context`` as a dict, when it can travel in an event (a default context).

    Raises :class:`EventConfigurationException` for a non-mapping or a value JSON cannot carry.
    """
    if not isinstance(context, Mapping):
        raise EventConfigurationException("default context must be a mapping")
    try:
        encode(dict(context))
    except TypeError as exc:
        raise EventConfigurationException(
            f"default context is not JSON-serializable: {exc}"
        ) from exc
    return dict(context)


def _current_request_id() -> str | None:
    try:
        rid = get_current_request_id()
    except Exception:
        return None
    return str(rid) if rid else None


def build_event(
    event_name: str,
    payload: Any,
    context: Mapping[str, Any] | None,
    *,
    default_context: Mapping[str, Any],
    max_bytes: int,
) -> tuple[dict[str, Any], bytes]:
    """Validate and encode an event; return ``(event dict, its JSON)``.

    ``context`` is merged over ``default_context`` (its own keys win); the current request id
    and trace context are added when absent. The dict is decoded from the JSON, so it holds
    exactly what a handler will receive. Raises :class:`EventPublishException` for a bad name,
    a payload or context that is not JSON-serializable, or an event larger than ``max_bytes``.
    """
    if not isinstance(event_name, str) or not event_name or event_name == ALL_EVENTS:
        raise EventPublishException(
            "event_name must be a non-empty string (and not '*')",
            details={"event_name_type": type(event_name).__name__},
        )
    if len(event_name) > MAX_EVENT_NAME_LENGTH:
        raise EventPublishException(
            f"event_name longer than {MAX_EVENT_NAME_LENGTH} characters",
            event_name=event_name[:MAX_EVENT_NAME_LENGTH],
        )
    if context is not None and not isinstance(context, Mapping):
        raise EventPublishException(
            f"context must be a mapping, not {type(context).__name__}", event_name=event_name
        )
    if default_context:
        ctx = {**default_context, **(context or {})}
    else:
        ctx = dict(context) if context else {}
    if "request_id" not in ctx:
        rid = _current_request_id()
        if rid is not None:
            ctx["request_id"] = rid
    if "traceparent" not in ctx and tracing_enabled():
        inject_context(ctx)  # W3C trace context: handlers and workers resume the trace
    event = {
        "id": new_event_id(),
        "name": event_name,
        "data": payload,
        "context": ctx,
        "timestamp": utc_iso(),
    }
    try:
        encoded = encode(event)
    except TypeError as exc:
        raise EventPublishException(
            f"event payload or context is not JSON-serializable: {exc}",
            event_name=event_name,
            original_exception=exc,
        ) from None
    if len(encoded) > max_bytes:
        raise EventPublishException(
            f"event is {len(encoded)} bytes, larger than the {max_bytes} bytes allowed",
            event_name=event_name,
            details={"size": len(encoded), "max_bytes": max_bytes},
        )
    return decode(encoded), encoded
