"""Development output: coloured console lines (structlog ``ConsoleRenderer``).

Owns what the console chain adds after :class:`~crown_nexus.logging.processors.EventPreparer`:
the caller location folded into one readable ``at`` field, and tracebacks scrubbed of secrets.
``NO_COLOR`` in the environment turns colours off.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any

import structlog

from crown_nexus._redaction import scrub_text

__all__ = ["console_location", "console_renderer", "scrubbed_traceback"]


def console_location(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Console processor: fold ``filename``/``lineno``/``func_name`` into one readable
    ``at="path/relative/to/cwd.py:12 in func"`` field."""
    filename = event_dict.pop("filename", None)
    lineno = event_dict.pop("lineno", None)
    func = event_dict.pop("func_name", None)
    if filename is not None:
        try:
            rel = os.path.relpath(filename)
            shown = filename if rel.startswith("..") else rel
        except ValueError:  # another drive (Windows)
            shown = filename
        event_dict["at"] = f"{shown}:{lineno} in {func}"
    return event_dict


def scrubbed_traceback(sio: IO[str], exc_info: Any) -> None:
    """Console exception formatter: structlog's plain traceback with its text scrubbed
    (:func:`~crown_nexus.logging.processors.scrub_text`: a DSN password or token in an
    exception message never reaches the console)."""
    buffer = io.StringIO()
    structlog.dev.plain_traceback(buffer, exc_info)
    sio.write(scrub_text(buffer.getvalue()))


def console_renderer(colors: bool = True) -> Any:
    """structlog's ``ConsoleRenderer`` with scrubbed tracebacks (``colors=False``: plain text;
    :func:`~crown_nexus.logging.config.configure_logging` passes ``not settings.no_color``)."""
    return structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=scrubbed_traceback)
