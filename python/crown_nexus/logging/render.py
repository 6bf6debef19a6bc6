"""The JSON chain's last step: one event dict in, one JSON line (``bytes``) out.

Owns the renderer of production lines and the line written when anything fails. The renderer
is the ``log_render`` hot path's ``LineRenderer`` (Rust, or its pure twin, as
:mod:`crown_nexus.accel` chose), a structlog processor ``(logger, method_name, event_dict) ->
bytes``. Its definition is the general path built here: :class:`EventPreparer` then
``render`` (Python); the compiled renderer writes the same bytes without building the prepared
dict and hands every case it does not cover to that general path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import orjson

from crown_nexus import accel
from crown_nexus._pure import log_render as _pure_log_render
from crown_nexus._redaction import scrub_text
from crown_nexus.logging import context as _ctx
from crown_nexus.logging import processors as _processors
from crown_nexus.logging.processors import (
    _EVENT_CACHE,
    LEVEL_NAMES,
    SKIP_FILES,
    EventPreparer,
    now_iso,
    scrub_event,
    stamp_ms,
)
from crown_nexus.logging.redaction import Redactor, safe_str

__all__ = ["fallback_line", "json_renderer", "load_render", "log_render_module"]


def log_render_module(kind: str | None = None) -> ModuleType:
    """Return the ``log_render`` implementation for ``kind`` (``"native"``/``"pure"``; ``None``:
    the one :mod:`crown_nexus.accel` chose). Raises ``KeyError`` for a kind not available."""
    if kind is None:
        return accel.get("log_render")
    return accel.available("log_render")[kind]


def load_render(kind: str | None = None) -> Callable[[Mapping[str, Any]], bytes]:
    """Return the ``render(event_dict) -> bytes`` function of the ``log_render`` hot path for
    ``kind`` (see :func:`log_render_module`)."""
    return log_render_module(kind).render  # type: ignore[no-any-return]


def fallback_line(event_dict: Any, error: BaseException | None = None) -> bytes:
    """Return a minimal JSON line for an event that could not be processed or rendered.

    Keeps ``timestamp``, ``level``, ``logger``, ``event`` (as text) and the request/user ids, and
    names the failure in ``log_error``. Never raises.
    """
    try:
        get = event_dict.get if isinstance(event_dict, Mapping) else (lambda k, d=None: d)
        line: dict[str, Any] = {
            "timestamp": now_iso(),
            "level": safe_str(get("level", "error")),
            "logger": safe_str(get("logger", None)),
            "event": scrub_text(safe_str(get("event", None))),
            "request_id": _ctx._request_id.get(),
            "user_id": _ctx._user_id.get(),
        }
        if error is not None:
            line["log_error"] = type(error).__name__
        return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
    except Exception:
        return b'{"event":"<log event could not be rendered>","log_error":"fallback"}\n'


def _general_path(
    preparer: EventPreparer, render: Callable[[Any], bytes]
) -> Callable[[Any, Any, Any], bytes]:
    """The line's definition: ``render(preparer.prepare(...))`` of a copy of the event dict,
    the caller looked up from ``frame``. A non-mapping event raises (the logger then writes
    :func:`fallback_line`)."""

    def general(method_name: Any, event_dict: Any, frame: Any) -> bytes:
        fields = dict(event_dict)
        event = fields.pop("event", None)
        name = fields.pop("logger", None)
        return render(preparer.prepare(method_name, name, event, fields, frame))

    return general


def json_renderer(redactor: Redactor | None = None, kind: str | None = None) -> Any:
    """Return the JSON chain's renderer: the ``log_render`` ``LineRenderer`` of ``kind``.

    ``renderer(logger, method_name, event_dict) -> bytes`` writes what :class:`EventPreparer`
    (with ``redactor``) followed by ``render`` write for the event, as one line. Its
    ``redactor`` attribute is ``redactor``. A compiled module without ``LineRenderer`` (an older
    build) gives the pure one. Raises ``KeyError`` for a kind that is not available.
    """
    redactor = redactor or Redactor()
    module = log_render_module(kind)
    factory = getattr(module, "LineRenderer", None) or _pure_log_render.LineRenderer
    general = _general_path(EventPreparer(redactor), module.render)
    return factory(
        redactor,
        general=general,
        now=now_iso,
        clock=vars(_processors),
        stamp=stamp_ms,
        context_fields=_ctx.log_context_fields,
        context_hooks=vars(_ctx),
        extra_get=_ctx._extra.get,
        request_id=_ctx._request_id.get,
        user_id=_ctx._user_id.get,
        skip_files=SKIP_FILES,
        event_cache=_EVENT_CACHE,
        scrub_event=scrub_event,
        level_names=LEVEL_NAMES,
    )
